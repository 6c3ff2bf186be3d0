"""Each adapter against its fake server over real HTTP, quirks included."""

from __future__ import annotations

import json
import logging

import pytest
import requests

from pony_tasks.boorus.adapters import ADAPTERS, PageError, adapter_for
from pony_tasks.boorus.engine import ScrapeError, scrape
from pony_tasks.boorus.export import iter_unified_records
from pony_tasks.boorus.records import EXPORT_KEYS
from pony_tasks.db import connect
from pony_tasks.fakes.server import FakeBooru, Faults
from pony_tasks.polite_http import AuthenticationRequired, user_agent
from tests.helpers import SITES, fast_settings

UA = {"User-Agent": user_agent("tests")}


def _get(server: FakeBooru, request) -> requests.Response:
    return requests.get(server.base_url + request.path, params=request.params, headers=UA, timeout=10)


@pytest.mark.parametrize("fake", ["danbooru", "e621"], indirect=True)
def test_danbooru_style_cursor_pages_come_back_descending(fake: FakeBooru) -> None:
    adapter = ADAPTERS[fake.site](fake.base_url)
    ids = [p.post_id for p in fake.posts if fake.site == "danbooru" or not p.is_deleted_at(fake.clock)]
    above = adapter.records(_get(fake, adapter.newer_than(ids[10])).json())
    got = [r["id"] for r in above]
    assert got == sorted(got, reverse=True)
    assert sorted(got) == ids[11 : 11 + adapter.page_limit]
    below = adapter.records(_get(fake, adapter.older_than(ids[5])).json())
    assert [r["id"] for r in below] == ids[:5][::-1]


def test_danbooru_page_limit_error_is_a_page_error(fake: FakeBooru) -> None:
    adapter = ADAPTERS["danbooru"](fake.base_url)
    body = requests.get(fake.base_url + "/posts.json", params={"page": "1001"}, timeout=10).json()
    assert body["error"] == "PaginationExtension::PaginationError"
    with pytest.raises(PageError, match="beyond page 1000"):
        adapter.records(body)


def test_danbooru_record_translation(fake: FakeBooru) -> None:
    adapter = ADAPTERS["danbooru"](fake.base_url)
    raw = next(r for r in adapter.records(_get(fake, adapter.newer_than(0)).json()) if r["rating"] != "x")
    post = adapter.to_unified(raw)
    assert raw["down_score"] <= 0 and post.down_votes == -raw["down_score"]
    assert post.score == raw["up_score"] + raw["down_score"]
    assert raw["created_at"].endswith("-04:00") and post.created_at.utcoffset().total_seconds() == 0
    assert post.tag_groups["artist"] == [raw["tag_string_artist"]]


@pytest.mark.parametrize("fake", ["e621"], indirect=True)
def test_e621_wants_a_descriptive_user_agent_and_hides_some_files(fake: FakeBooru) -> None:
    generic = requests.get(fake.base_url + "/posts.json", params={"limit": "5"}, timeout=10)
    assert generic.status_code == 403 and "User-Agent" in generic.text and generic.text.startswith("<html>")
    adapter = ADAPTERS["e621"](fake.base_url, file_base_url=fake.base_url)
    body = _get(fake, adapter.newer_than(0)).json()
    assert set(body) == {"posts"}
    hidden = [p.post_id for p in fake.posts if p.hidden]
    assert hidden, "the corpus should hold hidden e621 posts"
    records = {r["id"]: r for r in adapter.records(body)}
    shown = [i for i in hidden if i in records]
    assert shown
    for post_id in shown:
        raw = records[post_id]
        assert raw["file"]["url"] is None and raw["file"]["md5"]
        post = adapter.to_unified(raw)
        md5 = raw["file"]["md5"]
        assert post.file_url == f"{fake.base_url}/data/{md5[:2]}/{md5[2:4]}/{md5}.{raw['file']['ext']}"
        assert post.file_url_derived and requests.get(post.file_url, timeout=10).status_code == 200
    normal = adapter.to_unified(next(r for r in records.values() if r["file"]["url"]))
    assert not normal.file_url_derived


@pytest.mark.parametrize("fake", ["derpibooru"], indirect=True)
def test_derpibooru_rating_from_tags_deleted_stubs_and_default_filter(fake: FakeBooru) -> None:
    adapter = ADAPTERS["derpibooru"](fake.base_url)
    without_filter = requests.get(
        fake.base_url + "/api/v1/json/search/images", params={"q": "*", "per_page": "50"}, timeout=10
    ).json()
    assert all("explicit" not in image.get("tags", []) for image in without_filter["images"])
    deleted = next(p for p in fake.posts if p.is_deleted_at(fake.clock))
    raw = adapter.records(_get(fake, adapter.newer_than(deleted.post_id - 1)).json())
    assert deleted.post_id not in {r["id"] for r in raw}, "searches leave deleted images out"
    stub = adapter.lookup_record(_get(fake, adapter.post_lookup(deleted.post_id)).json())
    assert "rating" not in stub and stub["hidden_from_users"] is True and "tags" not in stub
    post = adapter.to_unified(stub)
    assert post.deleted and post.rating is None and post.score is None and post.is_deletion_stub
    rating_tags = ("safe", "suggestive", "questionable", "explicit")
    normal = adapter.to_unified(next(r for r in raw if any(t in r.get("tags", []) for t in rating_tags)))
    assert normal.rating in ("general", "sensitive", "questionable", "explicit")
    assert normal.sha512 and normal.md5 is None
    assert any(tag.startswith("artist:") for tag in normal.tags), "namespace prefixes are kept"


@pytest.mark.parametrize("fake", ["gelbooru"], indirect=True)
def test_gelbooru_quirks(fake: FakeBooru) -> None:
    unauthenticated = requests.get(fake.base_url + "/index.php", params={"page": "dapi", "s": "post", "q": "index",
                                                                        "json": "1"}, headers=UA, timeout=10)
    assert unauthenticated.status_code == 401 and unauthenticated.json() == []
    adapter = ADAPTERS["gelbooru"](fake.base_url, credentials="1234:key")
    last = fake.posts[-1].post_id
    empty = _get(fake, adapter.newer_than(last)).json()
    assert "post" not in empty and adapter.records(empty) == []
    single = _get(fake, adapter.newer_than(fake.posts[-2].post_id)).json()
    assert isinstance(single["post"], dict) and len(adapter.records(single)) == 1
    records = adapter.records(_get(fake, adapter.newer_than(0)).json())
    apostrophe = next(r for r in records if "&#039;" in r["tags"])
    assert "pinkie's_party" in adapter.to_unified(apostrophe).tags
    assert all(r["has_children"] == "false" for r in records)
    good = adapter.to_unified(next(r for r in records if r["created_at"] != "yesterday-ish"))
    assert good.up_votes is None and good.favorites is None and good.wilson_score is None


@pytest.mark.parametrize("site", SITES)
def test_full_scrape_of_each_site_stores_every_valid_post(site: str, corpus, migrated) -> None:
    with FakeBooru(site, corpus) as server:
        settings = fast_settings(migrated, {site: server})
        report = scrape(site, settings=settings, show_progress=False)
    broken = {p.post_id for p in corpus.by_site(site) if p.broken_record}
    # Only Danbooru shows deleted posts in searches; the other sites hide them (refresh finds them later).
    hidden = {p.post_id for p in corpus.by_site(site) if site != "danbooru" and p.is_deleted_at(corpus.reference_time)}
    expected = {p.post_id for p in corpus.by_site(site)} - broken - hidden
    assert report.quarantined == len(broken) == 3 and (site == "danbooru") == (not hidden)
    with connect(settings) as conn:
        records = list(iter_unified_records(conn, site))
        with conn.cursor() as cur:
            cur.execute("SELECT post_id, reason FROM booru_quarantine WHERE site = %s", (site,))
            quarantined = dict(cur.fetchall())
    assert {r["post_id"] for r in records} == expected
    assert set(quarantined) == broken and all("schema" in reason for reason in quarantined.values())
    assert all(tuple(r) == EXPORT_KEYS for r in records)
    assert [r["post_id"] for r in records] == sorted(r["post_id"] for r in records)
    sample = next(r for r in records if not r["deleted"])
    assert sample["created_at"].endswith("Z") and sample["observed_at"].endswith("Z")
    json.dumps(records)


@pytest.mark.parametrize("site", ["danbooru", "derpibooru"])
def test_missing_credentials_are_reported_clearly_and_given_ones_are_never_logged(
    site: str, corpus, migrated, caplog
) -> None:
    with FakeBooru(site, corpus, require_auth=True) as server:
        settings = fast_settings(migrated, {site: server})
        with pytest.raises(AuthenticationRequired, match="booru_credentials"):
            scrape(site, settings=settings, max_pages=1, show_progress=False)
        secret = "user42:Sup3rS3cretKey" if site != "derpibooru" else "Sup3rS3cretKey"
        settings = settings.replace(booru_credentials={})
        with_key = settings.replace(booru_credentials={site: secret})
        with caplog.at_level(logging.DEBUG):
            report = scrape(site, settings=with_key, max_pages=1, show_progress=False)
        assert report.pages == 1
    assert "Sup3rS3cretKey" not in caplog.text
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT parameters::text, coalesce(error, '') FROM pipeline_run")
        assert "Sup3rS3cretKey" not in str(cur.fetchall())


def test_a_page_that_never_parses_is_quarantined_and_the_cursor_kept(corpus, migrated) -> None:
    with FakeBooru("danbooru", corpus, Faults(seed=1, malformed=1.0)) as server:
        settings = fast_settings(migrated, {"danbooru": server}, http_max_attempts=3)
        with pytest.raises(ScrapeError, match="re-run"):
            scrape("danbooru", settings=settings, show_progress=False)
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT reason, raw FROM booru_quarantine")
        ((reason, raw),) = cur.fetchall()
        cur.execute("SELECT count(*) FROM booru_post")
        assert cur.fetchone()[0] == 0
        cur.execute("SELECT status FROM pipeline_run")
        assert cur.fetchone()[0] == "failed"
    assert "malformed page" in reason and "upstream error" in raw
    with FakeBooru("danbooru", corpus) as server:  # the site recovers: the next run resumes from the same cursor
        report = scrape("danbooru", settings=fast_settings(migrated, {"danbooru": server}), show_progress=False)
    assert report.inserted == 517


def test_unknown_site_is_a_config_error(settings) -> None:
    from pony_tasks.config import ConfigError

    with pytest.raises(ConfigError, match="unknown site"):
        adapter_for("pixiv", settings)
