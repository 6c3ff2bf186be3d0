"""The live sites' own rules, reproduced by the fakes: defences, credentials, hidden files, moved hosts, tag
categories, ratings, deletions, unsafe redirects and addresses. Each test names the real behaviour it stands for."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from pony_tasks.boorus.engine import ScrapeBlocked, ScrapeError, ScrapeMode, scrape
from pony_tasks.boorus.export import iter_unified_records
from pony_tasks.boorus.hosts import HostRules
from pony_tasks.boorus.records import RecordError, parse_iso
from pony_tasks.config import ConfigError, load_settings
from pony_tasks.db import connect
from pony_tasks.fakes.server import AntiBot, FakeBooru, Faults
from pony_tasks.images.fetch import fetch_images
from pony_tasks.polite_http import HTTPFailure
from tests.helpers import fast_settings, run_pony


def _records(settings, site: str) -> dict[int, dict]:
    with connect(settings) as conn:
        return {r["post_id"]: r for r in iter_unified_records(conn, site)}


def _cli_env(settings, **extra: str) -> dict[str, str]:
    return {"PONY_DATABASE_URL": settings.database_url.get_secret_value(), "PONY_HOME": str(settings.home), **extra}


# --- Philomena's anti-bot middleware ------------------------------------------------------------------------------
@pytest.mark.slow
def test_philomena_challenge_is_waited_out_and_a_block_stops_everything_until_it_ends(corpus, migrated) -> None:
    """openapi.yaml: 501 + HTML = challenge, wait ≥ 5 s; carrying on = 15-minute block, 500 + empty body, and every
    request during it restarts the block."""
    site = "derpibooru"
    with FakeBooru(site, corpus) as server:
        settings = fast_settings(migrated, {site: server})
        scrape(site, settings=settings, max_pages=1, show_progress=False)  # one page stored, with its cursor
        first_page = len(_records(settings, site))
        server.antibot = AntiBot(challenges=2)  # from now on: two challenges, then the block
        server.log.clear()
        with pytest.raises(ScrapeBlocked, match="blocking us until") as caught:
            scrape(site, settings=settings, show_progress=False)
        log = list(server.log)
        assert [e.status for e in log] == [501, 501, 500], "one request into the block, then silence"
        for challenge, following in zip(log[0:2], log[1:3], strict=True):
            assert following.at - challenge.at >= 5.0, "at least 5 s of silence after each challenge"
        until = caught.value.until
        assert until is not None and timedelta(minutes=14) < until - datetime.now(UTC) <= timedelta(minutes=15)
        with connect(settings) as conn, conn.cursor() as cur:
            cur.execute("SELECT blocked_until, reason FROM booru_site_block WHERE site = %s", (site,))
            ((stored_until, reason),) = cur.fetchall()
            cur.execute("SELECT newest_post_id FROM booru_cursor WHERE site = %s", (site,))
            cursor = cur.fetchone()[0]
        assert abs((stored_until - until).total_seconds()) < 1 and "anti-bot" in reason
        stored = _records(settings, site)
        assert len(stored) == first_page == 49 and cursor == max(stored), "the page before the block is kept"

        # Another process (here: the CLI, as the next Airflow try) honours the block: no request at all.
        result = run_pony("scrape", site, "--base-url", server.base_url, env=_cli_env(settings))
        assert result.returncode == 3 and "blocking us until" in result.stderr
        assert "no request was sent" in result.stderr
        assert len(server.log) == len(log)

        # Once the block is over the next run (a new process) resumes from the cursor and finishes.
        with connect(settings) as conn, conn.cursor() as cur:
            cur.execute("UPDATE booru_site_block SET blocked_until = now() - interval '1 second'")
        server.antibot = None
        result = run_pony("scrape", site, "--base-url", server.base_url, env=_cli_env(settings))
        assert result.returncode == 0, result.stderr
    total = len(_records(settings, site))
    assert total > 400 and f"— {total - 49} new, 0 changed, 0 unchanged" in result.stdout, "resumed at the cursor"


def test_one_page_never_costs_more_than_http_max_attempts_requests(corpus, migrated) -> None:
    """get_json used to retry around get, which retried too: up to 8×8 requests for one page."""
    for faults in (Faults(seed=1, malformed=1.0), Faults(seed=1, unavailable=1.0)):
        with FakeBooru("danbooru", corpus, faults) as server:
            settings = fast_settings(migrated, {"danbooru": server}, http_max_attempts=3)
            with pytest.raises((ScrapeError, HTTPFailure)):
                scrape("danbooru", settings=settings, show_progress=False)
            assert len(server.api_requests()) == 3, [e.fault for e in server.log]


# --- Credentials and contact ---------------------------------------------------------------------------------------
def test_gelbooru_without_credentials_sends_nothing_and_names_the_setting(corpus, migrated) -> None:
    """Gelbooru since 2025-06: every request without api_key and a numeric user_id gets 401 with body []."""
    with FakeBooru("gelbooru", corpus) as server:
        result = run_pony("scrape", "gelbooru", "--base-url", server.base_url, env=_cli_env(migrated))
        assert result.returncode == 2, result.stderr
        assert "booru_credentials" in result.stderr and "PONY_BOORU_CREDENTIALS" in result.stderr
        assert server.log == [], "not one request"
        bad = run_pony("scrape", "gelbooru",
                       env=_cli_env(migrated, PONY_BOORU_CREDENTIALS='{"gelbooru": "me:S3cr3tValue"}'))  # fmt: skip
        assert bad.returncode == 2 and "numeric user_id" in bad.stderr and "S3cr3tValue" not in bad.stderr
        assert server.log == []
    with pytest.raises(ConfigError, match="numeric user_id"):
        load_settings(booru_credentials={"gelbooru": "abc:key"})


def test_e621_refuses_the_placeholder_contact_and_reports_an_html_403_as_a_block(corpus, migrated) -> None:
    """e621 wants `project/version (by username on e621)`; a Cloudflare/User-Agent block is an HTML 403."""
    with FakeBooru("e621", corpus) as server:
        settings = fast_settings(migrated, {"e621": server}, scrape_contact="pony-pipeline-operator")
        with pytest.raises(ConfigError, match="e621 username"):
            scrape("e621", settings=settings, show_progress=False)
        assert server.log == []
    with FakeBooru("e621", corpus, cdn_block=True) as server:
        settings = fast_settings(migrated, {"e621": server})
        with pytest.raises(ScrapeBlocked, match="HTML page") as caught:
            scrape("e621", settings=settings, show_progress=False)
        assert "credentials" not in str(caught.value) and len(server.log) == 1


# --- Files -----------------------------------------------------------------------------------------------------------
def test_e621_hidden_file_urls_are_rebuilt_from_md5_and_verified(corpus, migrated) -> None:
    with FakeBooru("e621", corpus) as server:
        settings = fast_settings(migrated, {"e621": server})
        scrape("e621", settings=settings, show_progress=False)
        fetch_images(settings=settings, site="e621", show_progress=False)
    records = _records(settings, "e621")
    hidden = [p for p in corpus.by_site("e621")
              if p.hidden and p.post_id in records and not records[p.post_id]["deleted"]]  # fmt: skip
    assert hidden
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT post_id FROM booru_post_image WHERE site = 'e621'")
        fetched = {row[0] for row in cur.fetchall()}
    for post in hidden:
        record = records[post.post_id]
        md5 = corpus.file(post).md5
        assert record["file_url_derived"] is True
        assert record["file_url"].endswith(f"/data/{md5[:2]}/{md5[2:4]}/{md5}.{post.file_ext}")
        if not post.bad_file:
            assert post.post_id in fetched, "the derived URL downloads and its md5 checks out"
    assert not any(r["file_url_derived"] for r in records.values() if r["post_id"] not in {p.post_id for p in hidden})


def test_host_rules_are_domain_suffixes_from_settings() -> None:
    """Gelbooru moved img3/img4 → img2 and video-cdn3 → video-cdn4 and asked clients not to hard-code hosts."""
    public = lambda host, port, type=None: [(2, 1, 6, "", ("93.184.215.14", port))]  # noqa: E731
    settings = load_settings()
    rules = HostRules.from_settings(settings)
    rules = HostRules(rules.suffixes, rules.site_endpoints, resolve=public)
    for url in ("https://img2.gelbooru.com/images/9e/3b/x.jpg", "https://video-cdn4.gelbooru.com/images/a.mp4",
                "https://img3.gelbooru.com/images/x.jpg"):  # fmt: skip
        assert rules.refusal("gelbooru", url) is None, url
    assert "not a gelbooru host" in rules.refusal("gelbooru", "https://img2.gelbooru.com.evil.net/x.jpg")
    assert "not a e621 host" in rules.refusal("e621", "https://cdn.donmai.us/original/x.png")
    assert rules.refusal("e621", "https://static1.e621.net/data/x.png") is None
    moved = load_settings(booru_file_hosts={"gelbooru": ["gelbooru.com", "gelcdn.example"]})
    rules = HostRules(HostRules.from_settings(moved).suffixes, resolve=public)
    assert rules.refusal("gelbooru", "https://img1.gelcdn.example/x.jpg") is None
    assert rules.suffixes["danbooru"] == ("donmai.us",), "other sites keep their defaults"
    with pytest.raises(ConfigError, match="host name or domain suffix"):
        load_settings(booru_file_hosts={"gelbooru": ["https://gelbooru.com/"]})


def test_redirects_and_private_addresses_are_refused_and_the_target_gets_nothing(corpus, migrated) -> None:
    """requests follows redirects to any host; we follow them ourselves, checking every hop."""
    site = "danbooru"
    with FakeBooru(site, corpus) as server, FakeBooru(site, corpus) as foreign:
        settings = fast_settings(migrated, {site: server}, booru_file_hosts={site: ["donmai.us", "localhost"]})
        scrape(site, settings=settings, max_pages=1, show_progress=False)
        posts = [p for p in corpus.by_site(site) if not p.bad_file and not p.broken_record and not p.deleted][:2]
        redirected, private = posts
        from pony_tasks.fakes.render import file_path

        path = file_path(site, redirected, corpus.file(redirected))
        server.redirects[path] = foreign.base_url + path  # an allowed host redirects to a foreign one
        port = foreign.base_url.rsplit(":", 1)[1]
        private_url = f"http://localhost:{port}{file_path(site, private, corpus.file(private))}"
        with connect(settings) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM booru_post WHERE site = %s AND post_id NOT IN %s",
                        (site, (redirected.post_id, private.post_id)))  # fmt: skip
            cur.execute("UPDATE booru_post SET file_url = %s WHERE post_id = %s", (private_url, private.post_id))
        report = fetch_images(settings=settings, site=site, show_progress=False)
        assert report.failed == {"host_not_allowed": 2} and report.stored == 0
        assert foreign.log == [], "the foreign server received nothing"
        assert [e.status for e in server.log if e.path == path] == [302]
        with connect(settings) as conn, conn.cursor() as cur:
            cur.execute("SELECT post_id, reason, permanent FROM image_quarantine")
            reasons = {row[0]: (row[1], row[2]) for row in cur.fetchall()}
    assert "not a danbooru host" in reasons[redirected.post_id][0] and reasons[redirected.post_id][1]
    assert "resolves to 127.0.0.1, a loopback address" in reasons[private.post_id][0]


# --- Derpibooru's pages ----------------------------------------------------------------------------------------------
def test_derpibooru_tag_categories_come_from_the_tags_api_and_are_cached(corpus, migrated) -> None:
    site = "derpibooru"
    with FakeBooru(site, corpus) as server:
        settings = fast_settings(migrated, {site: server})
        scrape(site, settings=settings, show_progress=False)
        tag_requests = [e for e in server.log if e.path == "/api/v1/json/search/tags"]
        with connect(settings) as conn, conn.cursor() as cur:
            cur.execute("SELECT post_id, tag_groups FROM booru_post WHERE site = %s AND NOT deleted", (site,))
            groups = dict(cur.fetchall())
            cur.execute("SELECT count(*), count(category) FROM booru_tag_category WHERE site = %s", (site,))
            cached, categorised = cur.fetchone()
            cur.execute("UPDATE booru_cursor SET newest_post_id = 0")
        scrape(site, settings=settings, show_progress=False)  # everything again: categories come from the cache
        assert [e for e in server.log if e.path == "/api/v1/json/search/tags"] == tag_requests
    distinct = {name for post in corpus.by_site(site) for name in post.characters + post.species}
    assert 0 < len(tag_requests) <= cached // 50 + 4 and cached >= len(distinct) and categorised < cached
    by_id = {p.post_id: p for p in corpus.by_site(site)}
    for post_id, post_groups in groups.items():
        post = by_id[post_id]
        assert post_groups["artist"] == [f"artist:{post.artist}"]
        named = {c.replace("_", " ") for c in post.characters if c != "original_character"}
        assert set(post_groups.get("character", [])) >= named, post_groups
        assert set(post_groups["species"]) == {s.replace("_", " ") for s in post.species}
        assert "pony" not in post_groups.get("general", []) and len(post_groups["rating"]) == 1


def test_derpibooru_grimdark_ratings_and_zone_less_timestamps(corpus, migrated) -> None:
    site = "derpibooru"
    with FakeBooru(site, corpus) as server:
        scrape(site, settings=fast_settings(migrated, {site: server}), show_progress=False)
    records = _records(migrated, site)
    dark = [p for p in corpus.by_site(site) if p.post_id % 11 == 0 and p.rating != "general" and not p.broken_record
            and p.post_id in records]  # fmt: skip
    assert {records[p.post_id]["site_rating"] for p in dark} == {"semi-grimdark", "grimdark", "grotesque"}
    assert all(records[p.post_id]["rating"] == p.rating for p in dark), "kept, with the rating each stands for"
    old = next(p for p in corpus.by_site(site) if p.created_at.year < 2021 and p.post_id in records)
    assert records[old.post_id]["created_at"] == old.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    utc = datetime(2020, 4, 7, 17, 6, 38, tzinfo=UTC)
    assert parse_iso("2020-04-07T17:06:38", "created_at", naive_is_utc=True) == utc
    with pytest.raises(RecordError, match="has no time zone"):
        parse_iso("2020-04-07T17:06:38", "created_at")
    with pytest.raises(RecordError, match="not an ISO 8601 timestamp"):
        parse_iso("yesterday", "created_at")


# --- Deletions -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("site", ["danbooru", "e621", "derpibooru", "gelbooru"])
def test_refresh_finds_deletions_on_every_site_and_keeps_history(site, corpus, migrated) -> None:
    """e621 hides deleted posts without a status: tag, Derpibooru's search always (its image endpoint answers a
    stub), Gelbooru's search too (it lists them on deleted=show); Danbooru flags them."""
    # The first scrape 61 days before the reference time (the corpus deletes some old posts in the last 60 days);
    # refresh at the reference time with a refresh age for every day, so every stored post is due.
    earlier = corpus.reference_time - timedelta(days=61)
    with FakeBooru(site, corpus, now=earlier) as server:
        settings = fast_settings(migrated, {site: server}, refresh_ages_days=list(range(1, 5000)))
        scrape(site, settings=settings, now=earlier, show_progress=False)
        before = _records(settings, site)
        server.now = corpus.reference_time
        report = scrape(site, ScrapeMode.refresh, settings=settings, now=corpus.reference_time, show_progress=False)
    after = _records(settings, site)
    gone = {p.post_id for p in corpus.by_site(site) if p.post_id in before and not before[p.post_id]["deleted"]
            and p.is_deleted_at(corpus.reference_time)}  # fmt: skip
    covered = {i for i in gone if any(first <= i <= last for first, last, _ in report.refresh_ranges)}
    found = {i for i, r in after.items() if r["deleted"] and i in before and not before[i]["deleted"]}
    assert len(gone) >= 3 and covered, "the corpus deletes posts between the two scrapes"
    assert (gone if site == "gelbooru" else covered) <= found <= gone, (found, gone, covered)
    assert report.deleted >= len(found)  # plus posts first seen (already deleted) in the refreshed ranges
    for post_id in found:  # the row keeps what the site said before, marked deleted
        assert after[post_id]["tags"] == before[post_id]["tags"] and after[post_id]["deleted"] is True
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM booru_score_snapshot WHERE site = %s AND post_id = ANY(%s)",
                    (site, sorted(found)))  # fmt: skip
        assert cur.fetchone()[0] >= len(found), "score history kept"
        cur.execute("SELECT count(*) FROM booru_post WHERE site = %s AND deleted AND deleted_seen_at IS NULL "
                    "AND post_id = ANY(%s)", (site, sorted(found)))  # fmt: skip
        assert cur.fetchone()[0] == 0
    if site == "derpibooru":
        assert report.lookups >= len(found)


def test_gelbooru_deletion_list_is_read_as_json_or_as_the_documented_xml() -> None:
    from pony_tasks.boorus.adapters.gelbooru import GelbooruAdapter

    adapter = GelbooruAdapter(credentials="1234:key")
    request = adapter.deleted_feed(41)
    assert request.params["deleted"] == "show" and request.params["last_id"] == "41" and request.params["user_id"]
    md5 = "9e3bfd305e74bc084b488fde96c4fcf1"
    xml = (f'<?xml version="1.0"?><posts><post deleted="42" md5="{md5.upper()}"/>'
           f'<post md5="{md5}" deleted="43"/></posts>')
    assert adapter.deleted_entries(xml.encode()) == [(42, md5), (43, md5)]
    assert adapter.deleted_entries(json.dumps({"post": {"@deleted": "44", "@md5": md5}}).encode()) == [(44, md5)]
    assert adapter.deleted_entries(b"[]") == [] and adapter.deleted_entries(b'{"@attributes": {}}') == []
    from pony_tasks.boorus.adapters import PageError

    with pytest.raises(PageError):
        adapter.deleted_entries(b"upstream error")
