"""Image download against a fake booru: verification, quarantine reasons, content addressing, resumption."""

from __future__ import annotations

import hashlib

import pytest

from pony_tasks.boorus.engine import scrape
from pony_tasks.db import connect
from pony_tasks.fakes.server import FakeBooru, Faults
from pony_tasks.images.fetch import fetch_images
from pony_tasks.storage import open_store
from tests.helpers import fast_settings

SITE = "danbooru"
MAX_BYTES = 2 * 1024 * 1024


@pytest.fixture
def scraped(corpus, migrated):
    """The danbooru sample scraped into the test database; the fake server keeps serving its files."""
    with FakeBooru(SITE, corpus) as server:
        settings = fast_settings(migrated, {SITE: server}, image_max_bytes=MAX_BYTES)
        scrape(SITE, settings=settings, show_progress=False)
        yield settings, server


def _rows(settings, query: str, *args) -> list[tuple]:
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute(query, args)
        return cur.fetchall()


def test_fetch_stores_good_files_and_quarantines_each_kind_of_bad_one(corpus, scraped) -> None:
    posts = {p.post_id: p for p in corpus.by_site(SITE) if not p.broken_record and not p.deleted}
    settings, _ = scraped
    report = fetch_images(settings=settings, show_progress=False)
    bad = {pid: p.bad_file for pid, p in posts.items() if p.bad_file}
    assert report.stored == len(posts) - len(bad)
    expected_reason = {
        "corrupt": {"corrupt", "not_an_image"},
        "truncated": {"corrupt"},
        "wrong_hash": {"hash_mismatch"},
        "not_image": {"not_an_image"},
        "bomb": {"decompression_bomb"},
        "oversized": {"too_large"},
    }
    quarantined = dict(_rows(settings, "SELECT post_id, split_part(reason, ':', 1) FROM image_quarantine"))
    assert _rows(settings, "SELECT bool_and(permanent) FROM image_quarantine") == [(True,)]
    assert set(quarantined) == set(bad)
    for post_id, kind in bad.items():
        assert quarantined[post_id] in expected_reason[kind], (post_id, kind, quarantined[post_id])
    store = open_store(settings=settings)
    for sha256, key in _rows(settings, "SELECT sha256, storage_key FROM image"):
        data = store.get_bytes(key)
        assert hashlib.sha256(data).hexdigest() == sha256 and key.startswith(f"images/{sha256[:2]}/{sha256[2:4]}/")
    sizes = _rows(settings, "SELECT post_id, i.width, i.height FROM image i JOIN booru_post_image USING (sha256)")
    assert all((w, h) == (posts[pid].width, posts[pid].height) for pid, w, h in sizes)


def test_fetch_is_resumable_and_idempotent(corpus, scraped) -> None:
    settings, _ = scraped
    first = fetch_images(settings=settings, limit=100, show_progress=False)
    rest = fetch_images(settings=settings, show_progress=False)
    again = fetch_images(settings=settings, show_progress=False)
    retried = fetch_images(settings=settings, retry_failed=True, show_progress=False)
    assert first.candidates == 100
    assert first.stored + rest.stored == len(_rows(settings, "SELECT 1 FROM booru_post_image"))
    assert again.candidates == 0, "nothing is fetched twice"
    assert retried.candidates == len(_rows(settings, "SELECT 1 FROM image_quarantine"))
    assert retried.stored == 0
    ((attempts,),) = _rows(settings, "SELECT min(attempts) FROM image_quarantine")
    assert attempts == 2
    # every stored image got its perceptual hashes where it was validated
    assert _rows(settings, "SELECT count(*) FROM image WHERE phash IS NULL OR colour_thumb IS NULL") == [(0,)]


def test_corruption_in_flight_and_dropped_connections_do_not_lose_images(corpus, scraped) -> None:
    clean_count = sum(1 for p in corpus.by_site(SITE) if not p.bad_file and not p.broken_record and not p.deleted)
    settings, server = scraped
    server.set_faults(Faults(seed=11, corrupt_image=0.15, truncated=0.1, unavailable=0.1))
    patient = settings.replace(http_max_attempts=10)
    report = fetch_images(settings=patient, show_progress=False)
    injected = sum(1 for e in server.log if e.fault)
    # Damage in transit that outlasted every retry is quarantined as transient, so the next run tries again.
    second = fetch_images(settings=patient, show_progress=False)
    assert injected > 20
    assert report.stored + second.stored == clean_count


def test_files_are_only_fetched_from_the_sites_own_hosts(corpus, scraped) -> None:
    settings, server = scraped
    with FakeBooru(SITE, corpus) as elsewhere:
        with connect(settings) as conn, conn.cursor() as cur:
            cur.execute("UPDATE booru_post SET file_url = replace(file_url, %s, %s) WHERE post_id IN "
                        "(SELECT post_id FROM booru_post ORDER BY post_id LIMIT 5)",
                        (server.base_url, elsewhere.base_url))  # fmt: skip
        report = fetch_images(settings=settings, show_progress=False)
    assert report.failed["host_not_allowed"] == 5
    assert elsewhere.log == [], "no request may go to a host the site does not own"


def test_a_file_the_site_hash_names_is_never_downloaded_twice(corpus, scraped) -> None:
    """Posts whose site md5 names a stored file (a re-upload of the same bytes; two such posts in one batch) are
    linked to it without a download; a post with a wrong md5 is downloaded, checked and refused — never linked."""
    settings, server = scraped
    first = fetch_images(settings=settings, limit=40, show_progress=False)
    (sha, md5, url), = _rows(settings, """SELECT i.sha256, i.md5, p.file_url FROM image i
                                          JOIN booru_post_image b USING (sha256)
                                          JOIN booru_post p USING (site, post_id) ORDER BY p.post_id LIMIT 1""")
    assert md5 == hashlib.md5(open_store(settings=settings).get_bytes(
        _rows(settings, "SELECT storage_key FROM image WHERE sha256 = %s", sha)[0][0])).hexdigest()
    with connect(settings) as conn, conn.cursor() as cur:  # two more posts of that file (re-uploads)
        for post_id in (900_001, 900_002):
            cur.execute("""INSERT INTO booru_post (site, post_id, rating, tags, file_url, md5)
                           VALUES ('danbooru', %s, 'general', '{}', %s, upper(%s))""", (post_id, url, md5))
        cur.execute("""INSERT INTO booru_post (site, post_id, rating, tags, file_url, md5)
                       VALUES ('danbooru', 900_003, 'general', '{}', %s, %s)""", (url, "0" * 32))  # a wrong md5
    downloads = len([e for e in server.log if server._is_file_path(e.path)])
    rest = fetch_images(settings=settings, show_progress=False)
    fetched = len([e for e in server.log if server._is_file_path(e.path)]) - downloads
    assert rest.linked_by_hash >= 2 and first.linked_by_hash == 0
    assert _rows(settings, "SELECT post_id FROM booru_post_image WHERE sha256 = %s AND post_id > 900000 "
                 "ORDER BY 1", sha) == [(900_001,), (900_002,)]  # fmt: skip
    danbooru_left = rest.candidates - rest.linked_by_hash + 2  # rest.candidates counts the wrong-md5 post
    assert fetched <= danbooru_left * 4, "no download for the linked posts (retries only for hash mismatches)"
    assert _rows(settings, "SELECT split_part(reason, ':', 1) FROM image_quarantine WHERE post_id = 900003") == [
        ("hash_mismatch",)], "the wrong md5 was downloaded, checked and refused: never linked to the file"


def test_a_fetch_stopped_by_its_time_limit_carries_on_from_its_cursor(corpus, scraped, monkeypatch) -> None:
    """Listed in pages; the run stops starting downloads at ``max_minutes``; each site's cursor stands below every
    post it has not recorded, and the next run carries on from there and finishes (the cursor back at 0)."""
    import pony_tasks.images.fetch as fetch_module

    monkeypatch.setattr(fetch_module, "PAGE_POSTS", 10)
    settings, server = scraped
    slow = settings.replace(image_host_rate_limit=25.0, image_fetch_workers=2)
    first = fetch_images(settings=slow, max_minutes=0.02, show_progress=False)  # ~1.2 s of downloads
    assert 0 < first.left < first.candidates
    ((cursor,),) = _rows(settings, "SELECT after_post_id FROM image_fetch_cursor WHERE site = %s", SITE)
    assert cursor > 0
    unrecorded_below = _rows(settings, """SELECT p.post_id FROM booru_post p WHERE p.site = %s AND p.post_id <= %s
                                          AND NOT p.deleted AND p.file_url IS NOT NULL
                                          AND NOT EXISTS (SELECT 1 FROM booru_post_image i
                                                          WHERE (i.site, i.post_id) = (p.site, p.post_id))
                                          AND NOT EXISTS (SELECT 1 FROM image_quarantine q
                                                          WHERE (q.site, q.post_id) = (p.site, p.post_id))""",
                             SITE, cursor)  # fmt: skip
    assert unrecorded_below == [], "the cursor never passes a post that is not recorded"
    rest = fetch_images(settings=settings, show_progress=False)
    assert rest.left == 0 and rest.candidates == first.left
    assert _rows(settings, "SELECT after_post_id FROM image_fetch_cursor") == [(0,)], "a finished walk starts over"
    clean = sum(1 for p in corpus.by_site(SITE) if not p.bad_file and not p.broken_record and not p.deleted)
    assert first.stored + rest.stored == clean
    assert _rows(settings, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pony-rate-limit' "
                 "AND datname = current_database()") == [(0,)], "a finished run holds no connection open"  # fmt: skip


def test_every_site_is_fetched_at_once(corpus, migrated) -> None:
    """Each site's files come from its own hosts at their own rate, so one site's backlog never waits for
    another's: the second site's downloads start before the first site's end."""
    with FakeBooru("danbooru", corpus) as danbooru, FakeBooru("gelbooru", corpus) as gelbooru:
        settings = fast_settings(migrated, {"danbooru": danbooru, "gelbooru": gelbooru}, image_max_bytes=MAX_BYTES)
        for site in ("danbooru", "gelbooru"):
            scrape(site, settings=settings, show_progress=False)
        report = fetch_images(settings=settings.replace(image_host_rate_limit=100.0), show_progress=False)
        files = {name: [e.at for e in server.log if server._is_file_path(e.path)]
                 for name, server in (("danbooru", danbooru), ("gelbooru", gelbooru))}  # fmt: skip
    assert report.left == 0 and min(map(len, files.values())) > 20
    assert min(files["gelbooru"]) < max(files["danbooru"]) and min(files["danbooru"]) < max(files["gelbooru"])
