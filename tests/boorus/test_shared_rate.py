"""One rate limit per site across processes (issue 29): request slots reserved on PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from pony_tasks.db import connect, database_url
from pony_tasks.fakes.server import max_in_window, min_gap
from pony_tasks.polite_http import RateLimiter, SiteBlocked
from pony_tasks.shared_rate import DatabaseSlots
from tests.helpers import PROJECT_ROOT, fast_settings


def test_limiters_on_separate_connections_share_one_spacing(migrated) -> None:
    url = database_url(migrated)
    rate = 10.0
    limiters = [RateLimiter(rate, slots=DatabaseSlots(url, "api:test:shared")) for _ in range(3)]
    starts: list[float] = []
    lock = threading.Lock()

    def run(limiter: RateLimiter) -> None:
        for _ in range(6):
            limiter.wait()
            with lock:
                starts.append(time.monotonic())

    threads = [threading.Thread(target=run, args=(limiter,)) for limiter in limiters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # each limiter alone would allow 10/s: together they still start at most 10 a second, ~1/10 s apart (the
    # bound on the gap leaves room for this machine's scheduling; without the shared slots gaps are ~0)
    assert len(starts) == 18
    assert max_in_window(starts, 1.0) <= rate + 1
    assert min_gap(starts) >= 0.5 / rate
    with connect(migrated) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM rate_limit WHERE name = 'api:test:shared'")
        assert cur.fetchone()[0] == 1


def test_a_quiet_period_and_a_recorded_block_reach_every_process(migrated) -> None:
    from datetime import UTC, datetime, timedelta

    from pony_tasks.boorus.store import record_block

    url = database_url(migrated)
    site = ("derpibooru", "http://127.0.0.1:9")
    first, second = (RateLimiter(5.0, slots=DatabaseSlots(url, "api:derpibooru:blocked", site)) for _ in range(2))
    first.wait()
    first.hold(0.6)  # a challenge seen by the first: the second's next start waits it out too
    started = time.monotonic()
    second.wait()
    assert time.monotonic() - started >= 0.5
    with connect(migrated) as conn:  # what the scrape that met the block records
        record_block(conn, *site, datetime.now(UTC) + timedelta(minutes=15), "Philomena's anti-bot block", None)
    with pytest.raises(SiteBlocked, match="recorded by another process: Philomena's anti-bot block"):
        second.wait()


@pytest.mark.slow
def test_two_scrapes_and_a_refresh_of_one_site_keep_its_rate_together(corpus, migrated) -> None:
    from datetime import UTC, datetime

    from pony_tasks.boorus.engine import ScrapeMode, scrape
    from pony_tasks.fakes.server import FakeBooru

    site, rate = "derpibooru", 2.0
    with FakeBooru(site, corpus) as server:
        # posts stored already, for the refresh to re-fetch and the new scrape to continue above
        scrape(site, ScrapeMode.new, settings=fast_settings(migrated, {site: server}), max_pages=3,
               show_progress=False)  # fmt: skip
        server.log.clear()
        env = {"PONY_DATABASE_URL": migrated.database_url.get_secret_value(), "PONY_HOME": str(migrated.home),
               "PONY_BOORU_RATE_LIMITS": f'{{"{site}": {rate}}}', "PATH": "/usr/bin:/bin"}  # fmt: skip
        command = [sys.executable, "-m", "pony_tasks", "scrape", site, "--base-url", server.base_url]
        runs = [command + ["--mode", "new", "--max-pages", "4"],
                command + ["--mode", "backfill", "--max-pages", "4"],
                command + ["--mode", "refresh", "--due-as-of", f"{datetime(2100, 1, 1, tzinfo=UTC):%Y-%m-%d}"]]
        children = [subprocess.Popen(args, env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True) for args in runs]  # fmt: skip
        outputs = [child.communicate(timeout=240)[0] for child in children]
        times = [entry.at for entry in server.api_requests()]
    assert all(child.returncode == 0 for child in children), "\n".join(outputs)
    assert len(times) >= 8, f"only {len(times)} requests: the processes did not overlap long enough to tell"
    # alone each process would send 2 a second; together they send 2 a second, ~0.5 s apart
    assert max_in_window(times, 1.0) <= int(rate) + 1
    assert min_gap(times) >= 0.5 / rate
    seconds_over = sum(1 for second in range(int(min(times)), int(max(times)) + 1)
                       if sum(second <= t < second + 1 for t in times) > rate + 1)  # fmt: skip
    assert seconds_over == 0
