"""The one scraping engine: pages through a site by id cursor, rate-limited and retried, persisting page by page.

Each page commits together with the cursor that follows it, so a killed scrape resumes exactly where it stopped and
a retried page never doubles anything. Modes:

- ``new``: posts above the newest id stored (the first run starts from id 0 and walks up);
- ``backfill``: posts below the oldest id stored (the first run starts from the newest post and walks down);
- ``refresh``: re-fetch id ranges holding posts that reached a refresh age (``refresh_ages_days``) since they were
  last observed, because votes change scores without touching ``updated_at``. Refresh also finds deletions: it
  asks for deleted posts where the site can show them (Danbooru/e621 ``status:any``), looks up one by one the stored
  posts a complete range no longer shows (Derpibooru answers a deleted image with a stub; a 404 means gone), and
  walks Gelbooru's separate deletion list. Besides the due ranges it sweeps pages over all stored posts from where
  the last sweep stopped — enough (``sweep_pages``) that every stored post is seen within ``refresh_sweep_days``
  (30 days at 30M posts: 521 pages a day on e621 to 3,667 on Gelbooru) —, so deletions anywhere are found. Deleted posts
  keep their row and history, marked ``deleted``.

Before any request: the adapter's refusal (missing credentials, e621's placeholder contact) is a ``ConfigError``,
and a block the site put on us that has not ended (``booru_site_block``, shared by every process) stops the scrape.
A block detected mid-scrape (Philomena's anti-bot block) is recorded there and stops the scrape at once; pages
stored before it stay, with their cursor.

Every observation appends a score snapshot; a record that breaks its site's schema goes to ``booru_quarantine`` and
the rest of its page is stored; a page that never parses is quarantined and the scrape stops with the cursor before
it, so a later run retries it.
"""

from __future__ import annotations

import logging
import math
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
from pony_tasks.boorus.hosts import HostRules
from pony_tasks.boorus.records import RecordError, UnifiedPost
from pony_tasks.boorus.store import (
    QuarantinedRecord,
    active_block,
    append_snapshots,
    cached_tag_categories,
    live_ids_between,
    load_cursor,
    mark_deleted,
    quarantine,
    record_block,
    refresh_ranges,
    save_cursor,
    stamp_deleted,
    store_tag_categories,
    stored_id_bounds,
    stored_posts,
    upsert_posts,
)
from pony_tasks.config import ConfigError, Settings, get_settings
from pony_tasks.db import connect, database_url
from pony_tasks.errors import PermanentError
from pony_tasks.polite_http import HTTPFailure, MalformedBody, PoliteClient, SiteBlocked, redact_url, shared_limiter
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


class ScrapeBlocked(PermanentError, ScrapeError):
    """The site is blocking us; ``until`` is when the block ends (None when the site did not say)."""

    def __init__(self, message: str, until: datetime | None) -> None:
        super().__init__(message)
        self.until = until


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
    deleted: int = 0  # posts found deleted by this run
    lookups: int = 0  # single-post requests (refresh: stored posts a range no longer showed)
    retries: int = 0
    newest_post_id: int | None = None
    oldest_post_id: int | None = None
    refresh_ranges: list[tuple[int, int, int]] = field(default_factory=list)

    def add(self, other: ScrapeReport) -> None:
        """Accumulate another run's counts (the demo sums several scrapes of one site)."""
        for name in ("pages", "records", "inserted", "updated", "unchanged", "quarantined", "snapshots", "deleted",
                     "lookups", "retries"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def summary(self) -> str:
        due = ""
        if self.mode == "refresh":  # say why a refresh fetched little: how many posts were due at all
            due = f"{sum(n for _, _, n in self.refresh_ranges)} posts due in {len(self.refresh_ranges)} id ranges; "
        return (
            f"{self.site} ({self.mode}): {due}{self.pages} pages, {self.records} records — {self.inserted} new, "
            f"{self.updated} changed, {self.unchanged} unchanged, {self.quarantined} quarantined, "
            f"{self.deleted} found deleted, {self.snapshots} score snapshots, {self.retries} retries"
        )


def make_client(adapter: SiteAdapter, settings: Settings) -> PoliteClient:
    """A client for the site's API: its rate limit (shared by every client of the site in every process that uses
    this database), its defences, and every URL and redirect hop checked against the site's host rules."""
    rate = settings.booru_rate_limits.get(adapter.site, adapter.default_rate_per_second)
    return PoliteClient.from_settings(
        settings,
        shared_limiter(f"api:{adapter.site}:{adapter.base_url}", rate, database=database_url(settings),
                       site=(adapter.site, adapter.base_url)),
        secret_params=adapter.secret_params,
        credential_hint=adapter.credential_hint,
        defences=adapter.defences,
        url_guard=HostRules.from_settings(settings, {adapter.site: adapter.base_url}).guard(adapter.site),
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
        settings: Settings,
    ) -> None:
        self.conn, self.adapter, self.client, self.clock = conn, adapter, client, clock
        self.settings = settings
        self.side_client = make_client(adapter, settings)  # this thread's requests (tags, lookups), same limiter
        self.cut_short = False  # the last run() stopped at max_pages, not at the end of its walk
        self.observed: set[int] = set()  # posts with a snapshot from this scrape (a sweep may see them again)

    def get_json(self, request: PageRequest) -> Any:
        """One request of this thread's own (tags, single-post lookups), through the site's shared limiter."""
        url = self.adapter.base_url + request.path
        return self.side_client.get_json(url, request.params, auth=request.auth)[0]

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
        """Posts, snapshots and quarantined records of one page, in the caller's open transaction. Deletion stubs
        only mark the stored post deleted; tag categories the site keeps apart are filled in first."""
        stubs = [p.post_id for p in page.posts if p.is_deletion_stub]
        posts = [p for p in page.posts if not p.is_deletion_stub]
        if posts and self.adapter.has_tag_categories_api:
            self.fill_tag_categories(posts)
        if posts:
            result = upsert_posts(self.conn, posts)
            report.inserted += result.inserted
            report.updated += result.updated
            report.unchanged += result.unchanged
            fresh = [p for p in posts if p.post_id not in self.observed]
            report.snapshots += append_snapshots(self.conn, fresh, page.observed_at)
            self.observed.update(p.post_id for p in fresh)
            report.deleted += stamp_deleted(self.conn, self.adapter.site, [p.post_id for p in posts if p.deleted],
                                            page.observed_at)  # fmt: skip
        report.deleted += mark_deleted(self.conn, self.adapter.site, stubs, page.observed_at)
        if page.broken:
            quarantine(self.conn, self.adapter.site, page.url, page.broken)
            report.quarantined += len(page.broken)
            logger.warning("%s: %d records quarantined from %s", self.adapter.site, len(page.broken), page.url)
        report.records += page.records
        report.retries = self.client.retries

    def fill_tag_categories(self, posts: list[UnifiedPost]) -> None:
        """Categories of the posts' tags from the cache, the unknown (or stale) ones from the site's tags API in
        batches — rate-limited like every request — then each post's ``tag_groups``."""
        site = self.adapter.site
        wanted = sorted({i for p in posts for i in p.tag_ids})
        known = cached_tag_categories(self.conn, site, wanted, self.settings.tag_category_max_age_days)
        missing = [i for i in wanted if i not in known]
        for start in range(0, len(missing), self.adapter.tag_batch):
            batch = missing[start : start + self.adapter.tag_batch]
            body = self.get_json(self.adapter.tag_category_request(batch))
            try:
                found = self.adapter.tag_categories(body)
            except PageError as exc:
                raise ScrapeError(f"{site}: the tags API answered what we cannot read ({exc}); re-run to "
                                  "retry") from exc
            # Ids the site did not return (removed tags) are cached as uncategorised, so they are not asked again.
            fetched = {i: found.get(i, ("", None)) for i in batch}
            store_tag_categories(self.conn, site, fetched)
            known.update(fetched)
        for post in posts:
            self.adapter.apply_tag_categories(post, known)

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
        self.cut_short = False

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
                    self.cut_short = bool(page.ids) and not room
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
                report.pages += 1
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
    refusal = adapter.refusal(settings)
    if refusal:
        raise ConfigError(f"not scraping {site}: {refusal}")
    client = make_client(adapter, settings)
    report = ScrapeReport(site=site, mode=mode.value)
    parameters = {"site": site, "mode": mode.value, "base_url": adapter.base_url, "max_pages": max_pages,
                  "due_as_of": due_as_of.isoformat() if due_as_of else None}  # fmt: skip
    with connect(settings) as conn, recorded_run(conn, "scrape", parameters) as run:
        block = active_block(conn, site, adapter.base_url)
        if block is not None:
            until, reason = block
            raise ScrapeBlocked(f"{site} is blocking us until {until.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC "
                                f"({reason}); no request was sent — run the scrape again after that, it resumes "
                                "from the saved cursor", until)  # fmt: skip
        clock = (lambda: now) if now is not None else (lambda: datetime.now(UTC))
        pages = _PageScraper(conn, adapter, client, clock, settings)
        bar = progress_bar(show_progress, desc=f"scrape {site} ({mode.value})", unit="page")
        try:
            if mode is ScrapeMode.refresh:
                _refresh(conn, pages, report, settings, due_as_of or clock(), max_pages, bar)
            else:
                _walk(conn, pages, report, mode, max_pages, bar)
        except SiteBlocked as exc:
            raise _blocked(conn, adapter, exc) from exc
        finally:
            bar.close()
            report.retries = client.retries + pages.side_client.retries
            client.limiter.disconnect()
        run.summary = {k: v for k, v in asdict(report).items() if k != "refresh_ranges"}
    return report


def _blocked(conn: psycopg2.extensions.connection, adapter: SiteAdapter, exc: SiteBlocked) -> ScrapeBlocked:
    """Remember a block that says how long it lasts (other processes and the next try honour it) and say so."""
    conn.rollback()  # the page in progress; stored pages and their cursor were committed
    if exc.until is not None:
        record_block(conn, adapter.site, adapter.base_url, exc.until, str(exc).split(" — ", 1)[-1][:500], None)
        conn.commit()
        return ScrapeBlocked(f"{adapter.site} is blocking us until {exc.until:%Y-%m-%d %H:%M:%S} UTC: {exc}. "
                             "The scrape stopped at once and no request goes to the site before then (recorded in "
                             "booru_site_block); the cursor is kept, so the next run resumes", exc.until)  # fmt: skip
    return ScrapeBlocked(f"{adapter.site} is blocking us: {exc}. The scrape stopped; the cursor is kept. Check "
                         "scrape_contact (the User-Agent) and wait before trying again", None)  # fmt: skip


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
            return adapter.newer_than(max(ids), include_deleted=True) if max(ids) < last else None

        seen: set[int] = set()
        pages.run(adapter.newer_than(first - 1, include_deleted=True), following, seen.update, report, remaining,
                  bar)  # fmt: skip
        if not pages.cut_short:
            _confirm_missing(conn, pages, report, sorted(live_ids_between(conn, adapter.site, first, last) - seen))
    room = None if max_pages is None else max_pages - report.pages
    count = sweep_pages(stored_posts(conn, adapter.site), adapter.page_limit, settings)
    if count and (room is None or room > 0):
        logger.info("%s: sweeping %d pages over all stored posts (every post within %g days)", adapter.site, count,
                    settings.refresh_sweep_days)  # fmt: skip
        _sweep(conn, pages, report, min(count, room or count), bar)
    if adapter.deleted_feed(0) is not None and (max_pages is None or report.pages < max_pages):
        _walk_deleted_feed(conn, pages, report, max_pages)


def sweep_pages(stored: int, page_limit: int, settings: Settings, runs_per_day: float = 1.0) -> int:
    """Pages each refresh run sweeps so that ``stored`` posts are all checked within ``refresh_sweep_days`` (the
    refresh runs daily), at least ``refresh_sweep_pages``; 0 when the sweep is off."""
    if not settings.refresh_sweep_days:
        return 0
    return max(settings.refresh_sweep_pages, math.ceil(stored / page_limit / (settings.refresh_sweep_days
                                                                                * runs_per_day)))


def _sweep(conn: psycopg2.extensions.connection, pages: _PageScraper, report: ScrapeReport, count: int,
           bar: tqdm) -> None:  # fmt: skip
    """A few pages over every stored post, continuing where the last refresh's sweep stopped and wrapping at the
    newest stored id, so each post is checked for deletion (and its score observed) once per full cycle."""
    adapter = pages.adapter
    lowest, highest = stored_id_bounds(conn, adapter.site)
    if highest is None:
        return
    cursor = load_cursor(conn, adapter.site)
    start = cursor.sweep_cursor if cursor.sweep_cursor and cursor.sweep_cursor < highest else lowest - 1
    seen: set[int] = set()

    def following(ids: list[int]) -> PageRequest | None:
        return adapter.newer_than(max(ids), include_deleted=True) if max(ids) < highest else None

    pages.run(adapter.newer_than(start, include_deleted=True), following, seen.update, report, count, bar)
    reached = highest if not pages.cut_short or not seen else max(seen)
    _confirm_missing(conn, pages, report, sorted(live_ids_between(conn, adapter.site, start + 1, reached) - seen))
    cursor = load_cursor(conn, adapter.site)
    cursor.sweep_cursor = None if reached >= highest else reached
    save_cursor(conn, cursor)
    conn.commit()


def _confirm_missing(
    conn: psycopg2.extensions.connection, pages: _PageScraper, report: ScrapeReport, post_ids: list[int]
) -> None:
    """Stored posts a fully refreshed range no longer showed: ask the site for each. A deletion stub, a record
    flagged deleted, or no record at all (404) marks the post deleted; a live record is stored as usual."""
    adapter = pages.adapter
    for post_id in post_ids:
        request = adapter.post_lookup(post_id)
        report.lookups += 1
        try:
            body = pages.get_json(request)
            raw = adapter.lookup_record(body)
        except HTTPFailure as exc:
            if exc.status not in (404, 410):
                raise
            raw = None
        observed = pages.clock()
        post = None
        if raw is not None:
            try:
                post = adapter.to_unified(raw)
            except RecordError as exc:
                quarantine(conn, adapter.site, redact_url(adapter.base_url + request.path),
                           [QuarantinedRecord(raw, f"record breaks the {adapter.site} schema: {exc}", post_id)])
                report.quarantined += 1
                conn.commit()
                continue
        if post is None or post.is_deletion_stub:
            report.deleted += mark_deleted(conn, adapter.site, [post_id], observed)
        else:
            pages.store(_Page(redact_url(adapter.base_url + request.path), 1, [post], [], observed), report)
        conn.commit()


def _walk_deleted_feed(
    conn: psycopg2.extensions.connection, pages: _PageScraper, report: ScrapeReport, max_pages: int | None
) -> None:
    """Gelbooru lists deletions apart from posts: entries above the saved feed cursor, matched by md5."""
    adapter = pages.adapter
    cursor = load_cursor(conn, adapter.site)
    after = cursor.deleted_feed_cursor or 0
    while max_pages is None or report.pages < max_pages:
        request = adapter.deleted_feed(after)
        assert request is not None
        response = pages.side_client.get(adapter.base_url + request.path, request.params, auth=request.auth)
        try:
            entries = adapter.deleted_entries(response.content)
        except PageError as exc:
            raise ScrapeError(f"{adapter.site}: the deleted-posts list answered what we cannot read ({exc}); "
                              "re-run to retry") from exc  # fmt: skip
        report.pages += 1
        if not entries:
            break
        report.deleted += mark_deleted(conn, adapter.site, [md5 for _, md5 in entries], pages.clock(), by="md5")
        after = max(number for number, _ in entries)
        cursor.deleted_feed_cursor = after
        save_cursor(conn, cursor)
        conn.commit()
