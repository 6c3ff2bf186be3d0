"""e621's database export imported (issue 30): the same stored posts as a scrape of the same posts over the fake API,
both header layouts, quoted multi-line fields, deleted and malformed rows, resume, re-import, older exports, cursor."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pony_tasks.boorus.adapters import adapter_for
from pony_tasks.boorus.engine import scrape
from pony_tasks.boorus.imports import e621_export
from pony_tasks.boorus.imports.csv_files import ExportFormatError
from pony_tasks.boorus.store import load_cursor, upsert_posts
from pony_tasks.config import ConfigError
from pony_tasks.db import connect
from pony_tasks.fakes.e621_export import write_e621_export
from pony_tasks.fakes.render import render
from pony_tasks.fakes.server import FakeBooru
from tests.helpers import fast_settings

COMPARED = ("post_id", "created_at", "rating", "site_rating", "tags", "tag_groups", "score", "up_votes", "down_votes",
            "favorites", "wilson_score", "file_url", "md5", "sha512", "width", "height", "file_ext", "sources",
            "deleted")  # fmt: skip


def stored(settings) -> dict[int, dict]:
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(COMPARED)}, file_url_derived FROM booru_post WHERE site = 'e621'")
        return {row[0]: dict(zip((*COMPARED, "file_url_derived"), row, strict=True)) for row in cur.fetchall()}


def counts(settings) -> tuple[int, int, int]:
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT (SELECT count(*) FROM booru_post), (SELECT count(*) FROM booru_score_snapshot), "
                    "(SELECT count(*) FROM booru_quarantine)")  # fmt: skip
        return cur.fetchone()


def reset(settings) -> None:
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE booru_post, booru_score_snapshot, booru_quarantine, booru_cursor, booru_import, "
                    "booru_tag_category, booru_tag_relation CASCADE")  # fmt: skip


@pytest.fixture(scope="module")
def e621_fake(corpus):
    with FakeBooru("e621", corpus) as server:
        yield server


@pytest.mark.parametrize("layout", ["classic", "app"])
def test_an_import_stores_what_a_scrape_of_the_same_posts_stores(layout, corpus, migrated, e621_fake, tmp_path):
    settings = fast_settings(migrated, {"e621": e621_fake})
    scrape("e621", settings=settings, show_progress=False)
    scraped = stored(settings)
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT reason FROM booru_quarantine")
        scrape_quarantined = cur.fetchall()
    reset(settings)

    files = write_e621_export(tmp_path, corpus, layout=layout)
    reports = e621_export.import_export(files, settings=settings, show_progress=False)
    imported = stored(settings)
    posts_report = reports[-1]

    # Every post the API showed is stored identically, field by field (tag groups included); the export marks its
    # file URLs as rebuilt from md5 + ext (the file has none).
    assert scraped and set(scraped) <= set(imported)
    for post_id, record in scraped.items():
        got = imported[post_id]
        assert {k: got[k] for k in COMPARED} == {k: record[k] for k in COMPARED}, post_id
        assert got["file_url_derived"] == (got["file_url"] is not None)
    # The export also holds the deleted posts the search hides: stored deleted, as the API shows them by id.
    adapter = adapter_for("e621", settings)
    extra = set(imported) - set(scraped)
    now = corpus.reference_time
    deleted = {p.post_id: p for p in corpus.by_site("e621") if p.is_deleted_at(now) and p.created_at <= now}
    assert extra == set(deleted) and extra
    for post_id in extra:
        api = adapter.to_unified(render("e621", deleted[post_id], corpus.file(deleted[post_id]), "x", now))
        assert imported[post_id]["deleted"] and imported[post_id]["file_url"] is None
        assert imported[post_id]["tags"] == api.tags and imported[post_id]["tag_groups"] == api.tag_groups
    # Several sources in one quoted field (newline-separated) come back as a list.
    assert any(len(r["sources"]) == 2 for r in imported.values())
    # The corpus's broken records are quarantined by both paths, with the export's line number.
    assert len(scrape_quarantined) == posts_report.quarantined == len([p for p in corpus.by_site("e621")
                                                                       if p.broken_record]) > 0  # fmt: skip
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT reason, request_url FROM booru_quarantine LIMIT 1")
        reason, where = cur.fetchone()
        cur.execute("SELECT count(*), min(observed_at), max(observed_at) FROM booru_score_snapshot")
        snapshots, first, last = cur.fetchone()
    assert reason.startswith("line ") and where == f"file:{files['posts'].name}"
    assert snapshots == len(imported) and first == last  # one observation per post, at the export's time
    # tags, aliases and implications are in
    with connect(settings) as conn:
        groups = e621_export.tag_groups_by_name(conn)
        aliases = e621_export.active_aliases(conn, "e621")
    assert groups and set(groups.values()) <= set(e621_export.API_GROUPS) - {"general"}
    assert aliases == {"mlp": "my_little_pony", "twilight": "twilight_sparkle_(mlp)"}  # retired/pending left out


def test_resume_reimport_and_older_exports(corpus, migrated, tmp_path):
    files = write_e621_export(tmp_path / "new", corpus, malformed_row=True)
    e621_export.import_tags(files["tags"], settings=migrated, show_progress=False)
    # A run cut after 200 rows (a kill between chunks), then the same command again: continues, ends equal.
    first = e621_export.import_posts(files["posts"], settings=migrated, show_progress=False, stop_after_rows=200,
                                     chunk_rows=100)  # fmt: skip
    assert first.rows == 200
    second = e621_export.import_posts(files["posts"], settings=migrated, show_progress=False, chunk_rows=100)
    assert second.skipped_rows == 200 and second.rows > 0
    after_resume = stored(migrated)
    posts, snapshots, quarantined = counts(migrated)
    assert quarantined == 4  # the corpus's three broken records and the short row
    with connect(migrated) as conn, conn.cursor() as cur:
        cur.execute("SELECT reason FROM booru_quarantine ORDER BY reason")
        reasons = [r[0] for r in cur.fetchall()]
    assert any("fields where the header has 29" in r and r.startswith("line 3:") for r in reasons), reasons

    # The same file again: recognised, nothing stored; the same posts in another file of the same date: unchanged.
    again = e621_export.import_posts(files["posts"], settings=migrated, show_progress=False)
    assert again.already_imported
    other = write_e621_export(tmp_path / "app", corpus, layout="app")
    same = e621_export.import_posts(other["posts"], settings=migrated, show_progress=False,
                                    exported_at=e621_export.date_in_name(files["posts"]))  # fmt: skip
    assert same.stored == 0 and same.unchanged == posts
    assert counts(migrated) == (posts, snapshots, quarantined + 3)  # another file: its broken rows are logged too
    assert stored(migrated) == after_resume

    # An export a month older: its observations join the history, the newer rows stay.
    older = write_e621_export(tmp_path / "old", corpus, corpus.reference_time - timedelta(days=30))
    report = e621_export.import_posts(older["posts"], settings=migrated, show_progress=False)
    assert report.kept_newer > 0 and report.stored == 0
    assert stored(migrated) == after_resume
    assert counts(migrated)[1] > snapshots

    # The scrape cursor continues above the newest imported id; nothing is left for a backfill.
    with connect(migrated) as conn:
        cursor = load_cursor(conn, "e621")
    assert cursor.newest_post_id == max(after_resume) and cursor.backfill_done


def test_posts_need_the_tag_categories_and_the_right_file(corpus, migrated, tmp_path):
    files = write_e621_export(tmp_path, corpus)
    with pytest.raises(ConfigError, match="import the tags export first"):
        e621_export.import_posts(files["posts"], settings=migrated, show_progress=False)
    e621_export.import_tags(files["tags"], settings=migrated, show_progress=False)
    with pytest.raises(ExportFormatError, match="lacks the column"):
        e621_export.import_posts(files["implications"], settings=migrated, show_progress=False)
    assert counts(migrated)[0] == 0


def test_scrape_new_continues_after_an_import(corpus, migrated, e621_fake, tmp_path):
    settings = fast_settings(migrated, {"e621": e621_fake})
    files = write_e621_export(tmp_path, corpus, corpus.reference_time - timedelta(days=10))
    e621_export.import_export(files, settings=settings, show_progress=False)
    imported = stored(settings)
    report = scrape("e621", settings=settings, show_progress=False)
    assert report.inserted == len([p for p in corpus.by_site("e621") if p.created_at > corpus.reference_time -
                                   timedelta(days=10) and not p.is_deleted_at(corpus.reference_time)])  # fmt: skip
    assert report.inserted > 0 and set(imported) < set(stored(settings))


def test_upsert_of_a_scraped_page_after_an_import_keeps_one_row(corpus, migrated, tmp_path):
    files = write_e621_export(tmp_path, corpus)
    e621_export.import_export(files, settings=migrated, show_progress=False)
    adapter = adapter_for("e621", migrated)
    post = next(p for p in corpus.by_site("e621") if not p.broken_record and not p.deleted)
    with connect(migrated) as conn:
        upsert_posts(conn, [adapter.to_unified(render("e621", post, corpus.file(post), "https://e621.net",
                                                      corpus.reference_time))])  # fmt: skip
    assert counts(migrated)[0] == len(stored(migrated))


@pytest.mark.parametrize("layout", ["classic", "app"])
def test_the_fast_encoder_writes_what_the_adapter_path_writes(layout, corpus, migrated, tmp_path):
    """``PostRows.encoded`` (the import's hot path) gives, for every row, the line the API-shaped record gives through
    the adapter and ``encode_post_line`` — and refuses the same rows."""
    from pony_tasks.boorus.imports.csv_files import CsvRows, open_text
    from pony_tasks.boorus.records import RecordError
    from pony_tasks.boorus.store import encode_post_line

    files = write_e621_export(tmp_path, corpus, layout=layout, malformed_row=True)
    e621_export.import_tags(files["tags"], settings=migrated, show_progress=False)
    e621_export.import_relations(files["aliases"], "aliases", settings=migrated, show_progress=False)
    with connect(migrated) as conn:
        groups = e621_export.tag_groups_by_name(conn)
        aliases = e621_export.active_aliases(conn, "e621")
    adapter = adapter_for("e621", migrated)
    compared = refused = 0
    with open_text(files["posts"]) as handle:
        rows = CsvRows(handle, e621_export.POSTS_REQUIRED, "posts")
        builder = e621_export.PostRows(rows, groups, adapter, aliases)
        # entities decoded, as the adapter does; an old file's aliased tags (twilight, mlp) become the consequents
        extra = [["&amp;_entity&#39;s_tag", "tag&lt;3"], ["", ""], ["twilight", "rd", "mlp", "twilight_sparkle_(mlp)"]]
        for index, row in enumerate(rows):
            if index < len(extra) and len(row) == rows.width:
                row[builder.i_tags] += " " + " ".join(extra[index])
            try:
                expected = encode_post_line(adapter.to_unified(builder.record(row)))
            except RecordError:
                with pytest.raises(RecordError):
                    builder.encoded(row)
                refused += 1
                continue
            assert builder.encoded(row)[1] == expected
            if index == 2:
                assert '""twilight_sparkle_(mlp)""' in expected and '""rd""' in expected
                assert '""twilight""' not in expected and '""mlp""' not in expected
            compared += 1
    assert compared > 500 and refused == 4


@pytest.mark.parametrize("layout", ["index", "listing"])
def test_latest_downloads_politely_resumes_a_cut_transfer_and_imports(layout, corpus, migrated, tmp_path):
    """``--latest``: the index (e621ng since 2026-06, undated names, SHA-256 listed) or the dated directory listing;
    every transfer cut half way the first time resumes with a Range request; then the import runs as from files."""
    from pony_tasks.boorus.imports.download import download_latest

    written = write_e621_export(tmp_path / "site", corpus, layout="app" if layout == "index" else "classic")
    exports = {path.name: path.read_bytes() for path in written.values()}
    with FakeBooru("e621", corpus, exports=exports, export_layout=layout, cut_exports=True) as server:
        settings = fast_settings(migrated, {"e621": server})
        files = download_latest(tmp_path / "download", settings=settings)
        ranged = [e for e in server.log if e.path.startswith("/db_export/") and e.path != "/db_export/"]
    assert {kind: path.read_bytes() for kind, path in files.items()} == {
        kind: exports[path.name] for kind, path in written.items()}  # fmt: skip
    assert len(ranged) == 2 * len(exports), "each file: one cut transfer, one resumed"
    assert not list((tmp_path / "download").glob("*.partial"))
    reports = e621_export.import_export(files, settings=settings, show_progress=False)
    assert reports[-1].stored > 500


def test_the_import_commands(corpus, migrated, tmp_path):
    """``pony import e621-export`` and ``pony import records`` as a user runs them (a child process)."""
    import json as jsonlib

    from tests.helpers import run_pony

    files = write_e621_export(tmp_path / "x", corpus)
    env = {"PONY_HOME": str(tmp_path / "home"), "PONY_DATABASE_URL": migrated.database_url.get_secret_value(),
           "PONY_SCRAPE_CONTACT": "tester on e621"}  # fmt: skip
    nothing = run_pony("import", "e621-export", env=env)
    assert nothing.returncode != 0 and "nothing to import" in nothing.stderr
    done = run_pony("import", "e621-export", "--posts", str(files["posts"]), "--tags", str(files["tags"]),
                    "--aliases", str(files["aliases"]), env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "e621 tags:" in done.stdout and "e621 aliases: 4 rows read, 4 stored" in done.stdout
    assert "e621 posts: 520 rows read, 517 stored, 0 unchanged, 3 quarantined" in done.stdout
    again = run_pony("import", "e621-export", "--posts", str(files["posts"]), env=env)
    assert "was imported before" in again.stdout
    status = run_pony("import", "status", env=env)
    assert status.returncode == 0, status.stderr
    assert any(line.split()[:4] == ["e621", "posts", "520", "517"] and "finished" in line
               for line in status.stdout.splitlines()), status.stdout  # fmt: skip
    now = corpus.reference_time
    records = tmp_path / "danbooru-2026-11-01.jsonl"
    records.write_text("".join(jsonlib.dumps(render("danbooru", p, corpus.file(p), "https://danbooru.donmai.us",
                                                    now)) + "\n" for p in corpus.by_site("danbooru")[:50]))  # fmt: skip
    result = run_pony("import", "records", "danbooru", str(records), env=env)
    assert result.returncode == 0, result.stderr
    assert "danbooru records: 50 rows read" in result.stdout


def test_refresh_treats_imported_posts_like_scraped_ones(corpus, migrated, e621_fake, tmp_path):
    """Posts from a 60-day-old export are due for a score refresh by their age like scraped posts (their snapshot
    is the export's), and a post the site deleted since the export is found deleted."""
    settings = fast_settings(migrated, {"e621": e621_fake})
    then = corpus.reference_time - timedelta(days=60)
    files = write_e621_export(tmp_path, corpus, then)
    e621_export.import_export(files, settings=settings, show_progress=False)
    report = scrape("e621", "refresh", settings=settings, show_progress=False)
    assert sum(n for _, _, n in report.refresh_ranges) > 0 and report.snapshots > 0
    deleted_since = {p.post_id for p in corpus.by_site("e621")
                     if p.created_at <= then and p.is_deleted_at(corpus.reference_time) and not p.is_deleted_at(then)}
    assert deleted_since, "the corpus deletes some old posts in its last 60 days"
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT post_id FROM booru_post WHERE site = 'e621' AND deleted AND deleted_seen_at > %s",
                    (then,))  # fmt: skip
        found = {row[0] for row in cur.fetchall()}
    assert deleted_since <= found
