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
from pony_tasks.polite_http import MalformedBody, PoliteClient, RateLimiter, redact_url
from pony_tasks.progress import progress_bar
from pony_tasks.runs import recorded_run

logger = logging.getLogger(__name__)


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

    def summary(self) -> str:
        return (
            f"{self.site} ({self.mode}): {self.pages} pages, {self.records} records — {self.inserted} new, "
            f"{self.updated} changed, {self.unchanged} unchanged, {self.quarantined} quarantined, "
            f"{self.snapshots} score snapshots, {self.retries} retries"
        )


def make_client(adapter: SiteAdapter, settings: Settings) -> PoliteClient:
    rate = settings.booru_rate_limits.get(adapter.site, adapter.default_rate_per_second)
    return PoliteClient(
        limiter=RateLimiter(rate),
        contact=settings.scrape_contact,
        timeout=settings.http_timeout_seconds,
        max_attempts=settings.http_max_attempts,
        backoff_seconds=settings.http_backoff_seconds,
        secret_params=adapter.secret_params,
        credential_hint=adapter.credential_hint,
    )


class _PageScraper:
    """Fetch, translate and persist one page at a time for one site."""

    def __init__(self, conn: psycopg2.extensions.connection, adapter: SiteAdapter, client: PoliteClient) -> None:
        self.conn, self.adapter, self.client = conn, adapter, client

    def fetch(self, request: PageRequest, report: ScrapeReport) -> tuple[list[int], str]:
        """Store one page; returns the ids it held (empty at the end) and the redacted URL."""
        url = self.adapter.base_url + request.path
        try:
            body, shown_url = self.client.get_json(url, request.params, auth=request.auth)
        except MalformedBody as exc:
            self._quarantine_page(url, request, f"malformed page: {exc}", exc.raw, report)
            raise ScrapeError(f"{exc}; the page was quarantined and the cursor kept — re-run to retry") from exc
        try:
            raw_records = self.adapter.records(body)
        except PageError as exc:
            self._quarantine_page(url, request, str(exc), body, report)
            raise ScrapeError(f"{self.adapter.site}: {exc}; page quarantined, cursor kept") from exc
        posts: list[UnifiedPost] = []
        broken: list[QuarantinedRecord] = []
        for raw in raw_records:
            try:
                posts.append(self.adapter.to_unified(raw))
            except RecordError as exc:
                broken.append(QuarantinedRecord(raw, f"record breaks the {self.adapter.site} schema: {exc}",
                                                self.adapter.record_id(raw)))  # fmt: skip
        ids = [p.post_id for p in posts] + [b.post_id for b in broken if b.post_id is not None]
        observed_at = datetime.now(UTC)
        if posts:
            result = upsert_posts(self.conn, posts)
            report.inserted += result.inserted
            report.updated += result.updated
            report.unchanged += result.unchanged
            report.snapshots += append_snapshots(self.conn, posts, observed_at)
        if broken:
            quarantine(self.conn, self.adapter.site, shown_url, broken)
            report.quarantined += len(broken)
            logger.warning("%s: %d records quarantined from %s", self.adapter.site, len(broken), shown_url)
        report.records += len(raw_records)
        report.pages += 1
        report.retries = self.client.retries
        return ids, shown_url

    def _quarantine_page(self, url: str, request: PageRequest, reason: str, raw: Any, report: ScrapeReport) -> None:
        self.conn.rollback()
        full_url = requests.Request("GET", url, params=request.params).prepare().url or url
        shown_url = redact_url(full_url, self.adapter.secret_params)
        quarantine(self.conn, self.adapter.site, shown_url, [QuarantinedRecord(raw, reason, None)])
        self.conn.commit()
        report.quarantined += 1


def scrape(
    site: str,
    mode: ScrapeMode | str = ScrapeMode.new,
    *,
    settings: Settings | None = None,
    base_url: str | None = None,
    max_pages: int | None = None,
    now: datetime | None = None,
    show_progress: bool | None = None,
) -> ScrapeReport:
    """Scrape one site in one mode; returns what happened. Safe to re-run and to kill at any point."""
    settings = settings or get_settings()
    mode = ScrapeMode(mode)
    adapter = adapter_for(site, settings, base_url)
    client = make_client(adapter, settings)
    report = ScrapeReport(site=site, mode=mode.value)
    parameters = {"site": site, "mode": mode.value, "base_url": adapter.base_url, "max_pages": max_pages}
    with connect(settings) as conn, recorded_run(conn, "scrape", parameters) as run:
        pages = _PageScraper(conn, adapter, client)
        bar = progress_bar(show_progress, desc=f"scrape {site} ({mode.value})", unit="page")
        try:
            if mode is ScrapeMode.refresh:
                _refresh(conn, pages, report, settings, now or datetime.now(UTC), max_pages, bar)
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
    while max_pages is None or report.pages < max_pages:
        if mode is ScrapeMode.new:
            request = pages.adapter.newer_than(cursor.newest_post_id or 0)
        else:
            if cursor.backfill_done:
                break
            request = pages.adapter.older_than(cursor.oldest_post_id)
        ids, _ = pages.fetch(request, report)
        if ids:
            cursor.newest_post_id = max(ids + [cursor.newest_post_id or 0])
            cursor.oldest_post_id = min(ids + ([cursor.oldest_post_id] if cursor.oldest_post_id else []))
        elif mode is ScrapeMode.backfill:
            cursor.backfill_done = True
        save_cursor(conn, cursor)
        conn.commit()  # the page and the cursor after it, together
        bar.update(1)
        bar.set_postfix(posts=report.records, new=report.inserted)
        if not ids:
            break
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
    ranges = refresh_ranges(conn, pages.adapter.site, settings.refresh_ages_days, now, pages.adapter.page_limit)
    conn.commit()
    report.refresh_ranges = ranges
    for first, last, _due in ranges:
        after = first - 1
        while after < last and (max_pages is None or report.pages < max_pages):
            ids, _ = pages.fetch(pages.adapter.newer_than(after), report)
            conn.commit()
            bar.update(1)
            if not ids:
                break
            after = max(ids)
