"""The one scraping engine: pages through a site by id cursor, rate-limited and retried, persisting page by page.

Each page commits together with the cursor that follows it, so a killed scrape resumes exactly where it stopped and
a retried page never doubles anything. Modes:

- ``new``: posts above the newest id stored (the first run starts from id 0 and walks up);
- ``backfill``: posts below the oldest id stored (the first run starts from the newest post and walks down);
- ``refresh``: re-fetch id ranges holding posts that reached a refresh age (``refresh_ages_days``) since they were
  last observed, because votes change scores without touching ``updated_at``.

Every observation appends a score snapshot; a record that breaks its site's schema goes to ``booru_quarantine`` and
the rest of its page is stored; a page that never parses is quarantined and the scrape stops with the cursor before
it, so a later run retries it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import psycopg2.extensions
import requests
from tqdm import tqdm

from pony_tasks.boorus.adapters import PageError, PageRequest, SiteAdapter, adapter_for
from pony_tasks.boorus.records import RecordError, UnifiedPost
from pony_tasks.boorus.store import (
    QuarantinedRecord,
    append_snapshots,
    load_cursor,
    quarantine,
    refresh_ranges,
    save_cursor,
    upsert_posts,
)
from pony_tasks.config import Settings, get_settings
from pony_tasks.db import connect
from pony_tasks.polite_http import MalformedBody, PoliteClient, redact_url, shared_limiter
from pony_tasks.progress import progress_bar
from pony_tasks.runs import recorded_run

logger = logging.getLogger(__name__)
PREFETCH_PAGES = 3  # pages downloaded ahead of the one being stored


class ScrapeMode(StrEnum):
    new = "new"
    backfill = "backfill"
    refresh = "refresh"


class ScrapeError(RuntimeError):
    """The scrape stopped early; what was stored before stays, and re-running resumes from the saved cursor."""


@dataclass
class ScrapeReport:
    site: str
    mode: str
    pages: int = 0
    records: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0
    snapshots: int = 0
    retries: int = 0
    newest_post_id: int | None = None
    oldest_post_id: int | None = None
    refresh_ranges: list[tuple[int, int, int]] = field(default_factory=list)

    def add(self, other: ScrapeReport) -> None:
        """Accumulate another run's counts (the demo sums several scrapes of one site)."""
        for name in ("pages", "records", "inserted", "updated", "unchanged", "quarantined", "snapshots", "retries"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def summary(self) -> str:
        return (
            f"{self.site} ({self.mode}): {self.pages} pages, {self.records} records — {self.inserted} new, "
            f"{self.updated} changed, {self.unchanged} unchanged, {self.quarantined} quarantined, "
            f"{self.snapshots} score snapshots, {self.retries} retries"
        )


def make_client(adapter: SiteAdapter, settings: Settings) -> PoliteClient:
    rate = settings.booru_rate_limits.get(adapter.site, adapter.default_rate_per_second)
    return PoliteClient.from_settings(
        settings,
        shared_limiter(f"api:{adapter.site}:{adapter.base_url}", rate),
        secret_params=adapter.secret_params,
        credential_hint=adapter.credential_hint,
    )


@dataclass
class _Page:
    """One downloaded and translated page, not yet stored."""

    url: str  # credentials redacted
    records: int
    posts: list[UnifiedPost]
    broken: list[QuarantinedRecord]
    observed_at: datetime

    @property
    def ids(self) -> list[int]:
        return [p.post_id for p in self.posts] + [b.post_id for b in self.broken if b.post_id is not None]


class _UnusablePage(Exception):
    """A page we cannot read at all; the main thread quarantines it and stops the scrape."""

    def __init__(self, url: str, reason: str, raw: Any) -> None:
        super().__init__(reason)
        self.url, self.reason, self.raw = url, reason, raw


class _PageScraper:
    """Downloads pages (on a background thread, one ahead) and stores them (on the caller's thread)."""

    def __init__(
        self,
        conn: psycopg2.extensions.connection,
        adapter: SiteAdapter,
        client: PoliteClient,
        clock: Callable[[], datetime],
    ) -> None:
        self.conn, self.adapter, self.client, self.clock = conn, adapter, client, clock

    def download(self, request: PageRequest) -> _Page:
        """HTTP, JSON and record translation; no database work, so it can run while the previous page is stored."""
        url = self.adapter.base_url + request.path
        shown = redact_url(requests.Request("GET", url, params=request.params).prepare().url or url,
                           self.adapter.secret_params)  # fmt: skip
        try:
            body, shown = self.client.get_json(url, request.params, auth=request.auth)
        except MalformedBody as exc:
            raise _UnusablePage(shown, f"malformed page: {exc}", exc.raw) from exc
        try:
            raw_records = self.adapter.records(body)
        except PageError as exc:
            raise _UnusablePage(shown, f"{self.adapter.site}: {exc}", body) from exc
        posts: list[UnifiedPost] = []
        broken: list[QuarantinedRecord] = []
        for raw in raw_records:
            try:
                posts.append(self.adapter.to_unified(raw))
            except RecordError as exc:
                broken.append(QuarantinedRecord(raw, f"record breaks the {self.adapter.site} schema: {exc}",
                                                self.adapter.record_id(raw)))  # fmt: skip
        return _Page(shown, len(raw_records), posts, broken, self.clock())

    def store(self, page: _Page, report: ScrapeReport) -> None:
        """Posts, snapshots and quarantined records of one page, in the caller's open transaction."""
        if page.posts:
            result = upsert_posts(self.conn, page.posts)
            report.inserted += result.inserted
            report.updated += result.updated
            report.unchanged += result.unchanged
            report.snapshots += append_snapshots(self.conn, page.posts, page.observed_at)
        if page.broken:
            quarantine(self.conn, self.adapter.site, page.url, page.broken)
            report.quarantined += len(page.broken)
            logger.warning("%s: %d records quarantined from %s", self.adapter.site, len(page.broken), page.url)
        report.records += page.records
        report.pages += 1
        report.retries = self.client.retries

    def run(
        self,
        first: PageRequest,
        following: Callable[[list[int]], PageRequest | None],
        after_store: Callable[[list[int]], None],
        report: ScrapeReport,
        max_pages: int | None,
        bar: tqdm,
    ) -> None:
        """Walk pages. A download thread fetches pages back to back, as fast as the rate limit allows, into a short
        queue; this thread stores and commits each with its cursor. ``following`` gives the request after a page's
        ids (None: stop); ``after_store`` runs before each commit. Pages downloaded but not stored when the process
        dies are simply fetched again on the next run."""
        pipeline: queue.Queue[_Page | BaseException | None] = queue.Queue(maxsize=PREFETCH_PAGES)
        stop = threading.Event()

        def put(item: _Page | BaseException | None) -> bool:
            while not stop.is_set():
                try:
                    pipeline.put(item, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            request: PageRequest | None = first
            fetched = 0
            try:
                while request is not None and not stop.is_set():
                    page = self.download(request)
                    fetched += 1
                    if not put(page):
                        return
                    room = max_pages is None or fetched < max_pages
                    request = following(page.ids) if page.ids and room else None
            except BaseException as exc:  # handed to the storing thread, which reports it
                put(exc)
                return
            put(None)

        producer = threading.Thread(target=produce, name=f"scrape-{self.adapter.site}", daemon=True)
        producer.start()
        try:
            while (item := pipeline.get()) is not None:
                page = self._result(item, report)
                self.store(page, report)
                after_store(page.ids)
                self.conn.commit()  # the page and the cursor after it, together
                bar.update(1)
                bar.set_postfix(posts=report.records, new=report.inserted)
        finally:
            stop.set()
            producer.join()
            report.retries = self.client.retries

    def _result(self, item: _Page | BaseException, report: ScrapeReport) -> _Page:
        if isinstance(item, _Page):
            return item
        try:
            raise item
        except _UnusablePage as exc:
            self.conn.rollback()
            quarantine(self.conn, self.adapter.site, exc.url, [QuarantinedRecord(exc.raw, exc.reason, None)])
            self.conn.commit()
            report.quarantined += 1
            report.retries = self.client.retries
            raise ScrapeError(f"{exc.reason}; the page was quarantined and the cursor kept — re-run to retry") from exc


def scrape(
    site: str,
    mode: ScrapeMode | str = ScrapeMode.new,
    *,
    settings: Settings | None = None,
    base_url: str | None = None,
    max_pages: int | None = None,
    now: datetime | None = None,
    due_as_of: datetime | None = None,
    show_progress: bool | None = None,
) -> ScrapeReport:
    """Scrape one site in one mode; returns what happened. Safe to re-run and to kill at any point.

    ``now`` is the time of this scrape (default: the real time): refresh decides which posts are due by it, and
    snapshots are stamped with it. Setting it replays history against a fake booru whose clock matches.
    ``due_as_of`` (refresh only) decides which posts are due as of another time (an Airflow run's data-interval
    end, so a backfill re-evaluates each interval) while snapshots keep the real observation time.
    """
    settings = settings or get_settings()
    mode = ScrapeMode(mode)
    adapter = adapter_for(site, settings, base_url)
    client = make_client(adapter, settings)
    report = ScrapeReport(site=site, mode=mode.value)
    parameters = {"site": site, "mode": mode.value, "base_url": adapter.base_url, "max_pages": max_pages,
                  "due_as_of": due_as_of.isoformat() if due_as_of else None}  # fmt: skip
    with connect(settings) as conn, recorded_run(conn, "scrape", parameters) as run:
        clock = (lambda: now) if now is not None else (lambda: datetime.now(UTC))
        pages = _PageScraper(conn, adapter, client, clock)
        bar = progress_bar(show_progress, desc=f"scrape {site} ({mode.value})", unit="page")
        try:
            if mode is ScrapeMode.refresh:
                _refresh(conn, pages, report, settings, due_as_of or clock(), max_pages, bar)
            else:
                _walk(conn, pages, report, mode, max_pages, bar)
        finally:
            bar.close()
        run.summary = {k: v for k, v in asdict(report).items() if k != "refresh_ranges"}
    return report


def _walk(
    conn: psycopg2.extensions.connection,
    pages: _PageScraper,
    report: ScrapeReport,
    mode: ScrapeMode,
    max_pages: int | None,
    bar: tqdm,
) -> None:
    cursor = load_cursor(conn, pages.adapter.site)
    cursor.base_url = pages.adapter.base_url
    adapter = pages.adapter

    def advance(ids: list[int]) -> None:
        if ids:
            cursor.newest_post_id = max(ids + [cursor.newest_post_id or 0])
            cursor.oldest_post_id = min(ids + ([cursor.oldest_post_id] if cursor.oldest_post_id else []))
        elif mode is ScrapeMode.backfill:
            cursor.backfill_done = True
        save_cursor(conn, cursor)

    if mode is ScrapeMode.new:
        pages.run(adapter.newer_than(cursor.newest_post_id or 0), lambda ids: adapter.newer_than(max(ids)),
                  advance, report, max_pages, bar)  # fmt: skip
    elif not cursor.backfill_done:
        pages.run(adapter.older_than(cursor.oldest_post_id), lambda ids: adapter.older_than(min(ids)),
                  advance, report, max_pages, bar)  # fmt: skip
    report.newest_post_id, report.oldest_post_id = cursor.newest_post_id, cursor.oldest_post_id


def _refresh(
    conn: psycopg2.extensions.connection,
    pages: _PageScraper,
    report: ScrapeReport,
    settings: Settings,
    now: datetime,
    max_pages: int | None,
    bar: tqdm,
) -> None:
    adapter = pages.adapter
    ranges = refresh_ranges(conn, adapter.site, settings.refresh_ages_days, now, adapter.page_limit)
    conn.commit()
    report.refresh_ranges = ranges
    for first, last, _due in ranges:
        remaining = None if max_pages is None else max_pages - report.pages
        if remaining is not None and remaining <= 0:
            break

        def following(ids: list[int], last: int = last) -> PageRequest | None:
            return adapter.newer_than(max(ids)) if max(ids) < last else None

        pages.run(adapter.newer_than(first - 1), following, lambda ids: None, report, remaining, bar)
