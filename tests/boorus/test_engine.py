"""The scraping engine end to end against fake boorus: faults, kills, rate limits, modes, history."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from pony_tasks.boorus.engine import ScrapeMode, scrape
from pony_tasks.boorus.export import iter_unified_records
from pony_tasks.db import connect
from pony_tasks.fakes.server import FakeBooru, Faults
from tests.helpers import SITES, fast_settings


def _posts(settings, site: str) -> list[dict]:
    """Export records without observed_at (which differs between runs by design)."""
    with connect(settings) as conn:
        return [{k: v for k, v in r.items() if k != "observed_at"} for r in iter_unified_records(conn, site)]


def _reset(settings) -> None:
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE booru_post, booru_score_snapshot, booru_quarantine, booru_cursor CASCADE")


def _stable(records: list[dict], base_url: str) -> list[dict]:
    """file_url carries the fake server's port; compare the path only."""
    return [{**r, "file_url": r["file_url"] and r["file_url"].replace(base_url, "")} for r in records]


@pytest.mark.slow
@pytest.mark.parametrize("site", SITES)
def test_heavy_faults_give_exactly_the_clean_result_and_never_exceed_the_rate(site, corpus, migrated) -> None:
    with FakeBooru(site, corpus) as clean:
        scrape(site, settings=fast_settings(migrated, {site: clean}), show_progress=False)
        expected = _stable(_posts(migrated, site), clean.base_url)
    _reset(migrated)
    # e621's fake answers 503 to a third request within one second (server-stamped arrivals). At 1.9/s three requests
    # spanned 1.05 s and one late stamp on a loaded CI machine failed the run; 1.5/s leaves 0.33 s for the stamping, the
    # tolerance rate_respected allows below (production default: 1/s).
    rate = 1.5 if site == "e621" else 15.0
    # About half of all answers are faults.
    faults = Faults(seed=3, too_many_requests=0.08, unavailable=0.12, slow=0.08, truncated=0.12, malformed=0.12,
                    retry_after="1", slow_seconds=1.5)  # fmt: skip
    with FakeBooru(site, corpus, faults) as faulty:
        settings = fast_settings(migrated, {site: faulty}, rate=rate, http_max_attempts=12)
        report = scrape(site, settings=settings, show_progress=False)
        got = _stable(_posts(migrated, site), faulty.base_url)
        injected = [e.fault for e in faulty.log if e.fault]
        # arrival times are stamped by the server's threads: on a loaded machine one late arrival shortens the next
        # gap (seen: 0.054 s at 15/s) though the client spaced them; the per-second count is the hard limit
        respected = faulty.rate_respected(rate, tolerance=0.3)
        burst, gap = faulty.max_requests_in_window(), faulty.min_gap()
    assert got == expected, "faults must not lose or double anything"
    assert len(injected) >= 2 and "rate-limited" not in injected, injected
    assert report.retries == len(injected), "every injected fault costs exactly one retry"
    assert respected, f"{burst} requests within a second, {gap:.3f} s minimum gap at a configured {rate}/s"
    with connect(migrated) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*), count(DISTINCT post_id) FROM booru_score_snapshot WHERE site = %s", (site,))
        snapshots, posts = cur.fetchone()
    assert snapshots == posts == len(expected), "one observation per post: retried pages are never stored twice"


@pytest.mark.slow
def test_a_scrape_killed_half_way_resumes_to_the_same_result(corpus, migrated) -> None:
    site = "derpibooru"  # 50 posts a page: many pages to kill in between
    with FakeBooru(site, corpus) as clean:
        scrape(site, settings=fast_settings(migrated, {site: clean}), show_progress=False)
        expected = _stable(_posts(migrated, site), clean.base_url)
    _reset(migrated)
    with FakeBooru(site, corpus) as server:
        env = {
            "PONY_DATABASE_URL": migrated.database_url.get_secret_value(),
            "PONY_HOME": str(migrated.home),
            "PONY_BOORU_RATE_LIMITS": '{"derpibooru": 4}',
        }
        child = subprocess.Popen(
            [sys.executable, "-m", "pony_tasks", "scrape", site, "--base-url", server.base_url],
            env={**env, "PATH": "/usr/bin:/bin"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while len(server.api_requests()) < 5:
            assert time.monotonic() < deadline and child.poll() is None, "the scrape never got going"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait()
        partial = _posts(migrated, site)
        assert 0 < len(partial) < len(expected), "the kill should land half-way"
        report = scrape(site, settings=fast_settings(migrated, {site: server}), show_progress=False)
        got = _stable(_posts(migrated, site), server.base_url)
    assert got == expected
    assert report.inserted == len(expected) - len(partial)
    with connect(migrated) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) = count(DISTINCT post_id) FROM booru_score_snapshot")
        assert cur.fetchone()[0], "no post observed twice"


def test_backfill_walks_down_then_new_finds_nothing(corpus, migrated) -> None:
    site = "gelbooru"
    with FakeBooru(site, corpus) as server:
        settings = fast_settings(migrated, {site: server})
        first = scrape(site, ScrapeMode.backfill, settings=settings, max_pages=2, show_progress=False)
        assert first.pages == 2 and first.newest_post_id == corpus.by_site(site)[-1].post_id
        rest = scrape(site, ScrapeMode.backfill, settings=settings, show_progress=False)
        assert rest.oldest_post_id == corpus.by_site(site)[0].post_id
        again = scrape(site, ScrapeMode.backfill, settings=settings, show_progress=False)
        assert again.pages == 0, "backfill remembers it reached the bottom"
        new = scrape(site, ScrapeMode.new, settings=settings, show_progress=False)
        assert (new.pages, new.records) == (1, 0)
    deleted = sum(p.is_deleted_at(corpus.reference_time) for p in corpus.by_site(site))
    assert deleted and len(_posts(migrated, site)) == 520 - 3 - deleted, "Gelbooru's search hides deleted posts"


def test_rescraping_unchanged_posts_rewrites_nothing_but_appends_history(corpus, migrated) -> None:
    site = "danbooru"
    with FakeBooru(site, corpus) as server:
        settings = fast_settings(migrated, {site: server})
        scrape(site, settings=settings, show_progress=False)
        with connect(migrated) as conn, conn.cursor() as cur:
            cur.execute("SELECT post_id, xmin::text FROM booru_post")
            before = dict(cur.fetchall())
            cur.execute("UPDATE booru_cursor SET newest_post_id = 0")
        report = scrape(site, settings=settings, show_progress=False)
    assert (report.inserted, report.updated, report.unchanged) == (0, 0, 517)
    with connect(migrated) as conn, conn.cursor() as cur:
        cur.execute("SELECT post_id, xmin::text FROM booru_post")
        assert dict(cur.fetchall()) == before
        cur.execute("SELECT count(*) FROM booru_score_snapshot")
        assert cur.fetchone()[0] == 2 * 517


def test_refresh_refetches_posts_that_reached_an_age_and_keeps_history(corpus, migrated) -> None:
    site = "e621"
    young = [p for p in corpus.by_site(site) if (corpus.reference_time - p.created_at).days < 6]
    assert young, "the corpus has posts younger than a week"
    with FakeBooru(site, corpus, now=corpus.reference_time) as server:
        settings = fast_settings(migrated, {site: server})
        scrape(site, settings=settings, show_progress=False)
        # First observation happened 'now' in real time; pretend it happened at the corpus reference time.
        with connect(migrated) as conn, conn.cursor() as cur:
            cur.execute("UPDATE booru_score_snapshot SET observed_at = %s", (corpus.reference_time,))
        nothing = scrape(site, ScrapeMode.refresh, settings=settings, now=corpus.reference_time, show_progress=False)
        assert nothing.refresh_ranges == []
        later = corpus.reference_time + timedelta(days=8)
        server.now = later  # votes keep coming in
        report = scrape(site, ScrapeMode.refresh, settings=settings, now=later, show_progress=False)
    due = sum(count for _, _, count in report.refresh_ranges)
    assert due >= len([p for p in young if not p.broken_record and not p.deleted])
    assert report.updated > 0, "grown scores are written"
    with connect(migrated) as conn, conn.cursor() as cur:
        probe = next(p for p in young if not p.broken_record and not p.deleted and p.popularity > 1)
        cur.execute(
            "SELECT up_votes FROM booru_score_snapshot WHERE site = %s AND post_id = %s ORDER BY observed_at",
            (site, probe.post_id),
        )
        history = [row[0] for row in cur.fetchall()]
    assert len(history) == 2 and history[1] > history[0], history


def test_the_deletion_sweep_covers_every_stored_post_within_the_period() -> None:
    """Pages per daily refresh from the stored posts, the site's page size and ``refresh_sweep_days``: at the real
    size every site is covered in 30 days, within a fraction of a day's requests at its rate."""
    from pony_tasks.boorus.adapters import ADAPTERS
    from pony_tasks.boorus.engine import sweep_pages
    from pony_tasks.config import load_settings

    settings = load_settings()
    real = {"danbooru": 9_000_000, "gelbooru": 11_000_000, "e621": 5_000_000, "derpibooru": 3_500_000}
    for site, stored in real.items():
        adapter = ADAPTERS[site]
        pages = sweep_pages(stored, adapter.page_limit, settings)
        assert pages * adapter.page_limit * settings.refresh_sweep_days >= stored  # covered within the period
        assert pages / adapter.default_rate_per_second < 86_400 / 8, "under 3 hours of the site's rate a day"
    assert sweep_pages(11_000_000, 100, settings) == 3_667
    assert sweep_pages(300, 200, settings) == settings.refresh_sweep_pages  # a small site: the floor
    assert sweep_pages(11_000_000, 100, settings.replace(refresh_sweep_days=0)) == 0  # off
