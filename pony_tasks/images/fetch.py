"""``pony images fetch``: download files for posts that have none yet.

Concurrent downloads, rate-limited per host, only from hosts that belong to the post's site (``booru_file_hosts``
domain suffixes, the site's base URL and the base URL last scraped; see ``pony_tasks.boorus.hosts``), under a size
cap. Redirects are followed by ``PoliteClient`` itself and every hop is checked the same way, including the
private-address rule, so an allowed host cannot redirect us into a foreign or internal one. Each file is checked
against the site's md5/sha512 (e621's md5 also for URLs rebuilt from it),
fully decoded under a decompression-bomb limit, and stored content-addressed (``images/ab/cd/<sha256>.<ext>``).
A post whose site md5/sha512 names a file already stored (another post's, on any site) is linked to it and not
downloaded again (``link_known_files``; at most one download per hash at a time). Failures go to
``image_quarantine`` with a reason and never stop the batch. Permanent failures are not retried unless asked.

Every site is fetched at once, each from its own hosts at their rate (shared by every process through
``rate_limit``). A site's posts without a file are listed in keyset pages of ``PAGE_POSTS`` post ids — memory stays
flat whatever the backlog (28M images at the real size) — and each outcome is committed as it is recorded, with each
site's cursor (``image_fetch_cursor``), so a fetch that is killed or stops at ``max_minutes`` resumes where it stood
without listing again what it recorded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import psycopg2.extensions

from pony_tasks.boorus.hosts import HostRules
from pony_tasks.config import Settings, get_settings
from pony_tasks.db import connect, database_url
from pony_tasks.images.validate import SIGNATURE_COLUMNS, DecodedImage, ImageRejected, check_hashes, decode
from pony_tasks.polite_http import BodyTooLarge, HTTPFailure, PoliteClient, SiteBlocked, UnsafeURL, shared_limiter
from pony_tasks.progress import progress_bar
from pony_tasks.runs import recorded_run
from pony_tasks.storage import ObjectStore, open_store

logger = logging.getLogger(__name__)
HASH_RETRIES = 4  # a hash mismatch can be corruption in flight: download again before calling it permanent


@dataclass(frozen=True)
class FetchTask:
    site: str
    post_id: int
    url: str
    md5: str | None
    sha512: str | None


@dataclass(frozen=True)
class FetchOutcome:
    task: FetchTask
    image: DecodedImage | None = None
    storage_key: str | None = None
    byte_size: int = 0
    reason: str | None = None
    detail: str = ""
    permanent: bool = True  # for failures: do not retry without --retry-failed
    md5: str | None = None  # for successes: of the bytes
    sha512: str | None = None


@dataclass
class FetchReport:
    candidates: int = 0
    stored: int = 0
    deduplicated: int = 0  # same bytes already in the store (another post, or an earlier run)
    linked_by_hash: int = 0  # posts whose site md5/sha512 named a stored file: linked, not downloaded
    failed: Counter = field(default_factory=Counter)
    left: int = 0  # posts still without a file when the run stopped (its limit or time was reached)

    def summary(self) -> str:
        failures = ", ".join(f"{n} {reason}" for reason, n in sorted(self.failed.items())) or "none"
        return (
            f"images: {self.candidates} to fetch, {self.stored} stored, {self.deduplicated} already stored, "
            f"{self.linked_by_hash} linked to a stored file by the site's hash (not downloaded), "
            f"quarantined: {failures}" + (f"; {self.left} left for the next run" if self.left else "")
        )


def image_key(image: DecodedImage) -> str:
    return f"images/{image.sha256[:2]}/{image.sha256[2:4]}/{image.sha256}.{image.extension}"


class _Downloader:
    def __init__(self, settings: Settings, store: ObjectStore, hosts: HostRules) -> None:
        self.settings, self.store, self.hosts = settings, store, hosts
        self._local = threading.local()
        self._limiters: dict = {}  # every host's limiter this run used

    def _client(self, site: str, host: str) -> PoliteClient:
        clients = self._local.__dict__.setdefault("clients", {})
        if (site, host) not in clients:
            limiter = shared_limiter(f"files:{host}", self.settings.image_host_rate_limit,
                                     database=database_url(self.settings))  # fmt: skip
            self._limiters[host] = limiter
            clients[site, host] = PoliteClient.from_settings(self.settings, limiter, url_guard=self.hosts.guard(site))
        return clients[site, host]

    def disconnect(self) -> None:
        """The run is over: its limiters' shared-slot connections are closed."""
        for limiter in list(self._limiters.values()):
            limiter.disconnect()

    def __call__(self, task: FetchTask) -> FetchOutcome:
        refusal = self.hosts.refusal(task.site, task.url)
        if refusal:
            return FetchOutcome(task, reason="host_not_allowed", detail=refusal)
        host = urlsplit(task.url).netloc
        last: ImageRejected | None = None
        seen_digests: set[str] = set()
        for _ in range(HASH_RETRIES):
            try:
                data = self._client(task.site, host).get(task.url, max_bytes=self.settings.image_max_bytes).content
            except UnsafeURL as exc:  # a redirect to a host that does not serve the site, or to a private address
                return FetchOutcome(task, reason="host_not_allowed", detail=str(exc))
            except BodyTooLarge as exc:
                return FetchOutcome(task, reason="too_large", detail=str(exc))
            except HTTPFailure as exc:
                # A block page (HTML 403) says nothing about the file: try again on a later run.
                permanent = exc.status is not None and 400 <= exc.status < 500 and not isinstance(exc, SiteBlocked)
                return FetchOutcome(task, reason="download_failed", detail=str(exc), permanent=permanent)
            try:
                check_hashes(data, task.md5, task.sha512)
                image = decode(data, self.settings.image_max_pixels)
            except ImageRejected as exc:
                last = exc
                if exc.reason == "hash_mismatch":
                    seen_digests.add(hashlib.sha256(data).hexdigest())
                    continue
                return FetchOutcome(task, reason=exc.reason, detail=str(exc))
            key = image_key(image)
            if not self.store.exists(key):  # whether it counts as stored is decided by its image row (_record)
                self.store.put_bytes(key, data)
            return FetchOutcome(task, image=image, storage_key=key, byte_size=len(data),
                                md5=hashlib.md5(data).hexdigest(), sha512=hashlib.sha512(data).hexdigest())
        assert last is not None
        # The same wrong bytes every time: the site's hash or file is wrong. Different bytes each time: damage in
        # transit — worth another try on the next run.
        return FetchOutcome(task, reason=last.reason, detail=str(last), permanent=len(seen_digests) == 1)


PENDING = """NOT p.deleted AND p.file_url IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM booru_post_image i WHERE i.site = p.site AND i.post_id = p.post_id)
             AND NOT EXISTS (SELECT 1 FROM image_quarantine q WHERE q.site = p.site AND q.post_id = p.post_id
                             AND q.permanent AND NOT %(retry)s)"""  # a post still without a file


def _pending_by_site(conn: psycopg2.extensions.connection, site: str | None, retry_failed: bool) -> dict[str, int]:
    with conn.cursor() as cur:
        cur.execute(f"""SELECT p.site, count(*) FROM booru_post p
                        WHERE {PENDING} AND (%(site)s::text IS NULL OR p.site = %(site)s)
                        GROUP BY p.site ORDER BY p.site""", {"site": site, "retry": retry_failed})  # fmt: skip
        return dict(cur.fetchall())


def link_known_files(conn: psycopg2.extensions.connection, site: str,
                     post_ids: list[int]) -> set[tuple[str, int]]:  # fmt: skip
    """Link posts without a file to a stored image whose bytes have the md5 or sha512 the site gives for the post
    (the same file re-posted, or a post whose file another post already brought in): no download. The stored
    image's hashes are of its bytes, so a site's wrong hash links nothing. Only ``post_ids`` of ``site`` (one listed
    page: the returned set is bounded by it). Returns the (site, post_id) linked."""
    with conn.cursor() as cur:
        cur.execute(
            """INSERT INTO booru_post_image (site, post_id, sha256)
               SELECT DISTINCT ON (p.site, p.post_id) p.site, p.post_id, im.sha256
               FROM booru_post p
               JOIN image im ON (p.md5 IS NOT NULL AND im.md5 = lower(p.md5))
                             OR (p.sha512 IS NOT NULL AND im.sha512 = lower(p.sha512))
               WHERE NOT p.deleted AND p.site = %(site)s AND p.post_id = ANY(%(ids)s::bigint[])
                 AND NOT EXISTS (SELECT 1 FROM booru_post_image i WHERE i.site = p.site AND i.post_id = p.post_id)
               ORDER BY p.site, p.post_id, im.sha256
               ON CONFLICT (site, post_id) DO NOTHING
               RETURNING site, post_id""",
            {"site": site, "ids": post_ids},
        )
        linked = set(cur.fetchall())
        if linked:
            cur.execute("""DELETE FROM image_quarantine q USING booru_post_image i
                           WHERE i.site = q.site AND i.post_id = q.post_id
                             AND q.site = %(site)s AND q.post_id = ANY(%(ids)s::bigint[])""",
                        {"site": site, "ids": post_ids})  # fmt: skip
    return linked


def _host_rules(conn: psycopg2.extensions.connection, settings: Settings) -> HostRules:
    with conn.cursor() as cur:
        cur.execute("SELECT site, base_url FROM booru_cursor WHERE base_url IS NOT NULL")
        scraped_from = dict(cur.fetchall())
    return HostRules.from_settings(settings, scraped_from)


# A stored image keeps the signatures it has; missing ones are filled in (another post of the same bytes).
STORE_IMAGE = f"""
    INSERT INTO image (sha256, storage_key, byte_size, width, height, format, md5, sha512,
                       {", ".join(SIGNATURE_COLUMNS)})
    VALUES ({", ".join(["%s"] * (8 + len(SIGNATURE_COLUMNS)))}) ON CONFLICT (sha256) DO UPDATE
    SET {", ".join(f"{c} = coalesce(image.{c}, EXCLUDED.{c})" for c in ("md5", "sha512", *SIGNATURE_COLUMNS))}
    RETURNING (xmax = 0)"""  # true: a new image row (the row decides "stored", not the store's race-prone exists())


def _record(conn: psycopg2.extensions.connection, outcome: FetchOutcome, report: FetchReport) -> None:
    task = outcome.task
    with conn.cursor() as cur:
        if outcome.image is not None:
            image = outcome.image
            signatures = image.signatures.columns() if image.signatures else (None,) * len(SIGNATURE_COLUMNS)
            cur.execute(STORE_IMAGE, (image.sha256, outcome.storage_key, outcome.byte_size, image.width, image.height,
                                      image.format, outcome.md5, outcome.sha512, *signatures))  # fmt: skip
            (new_row,) = cur.fetchone()
            cur.execute(
                """INSERT INTO booru_post_image (site, post_id, sha256) VALUES (%s, %s, %s)
                   ON CONFLICT (site, post_id) DO UPDATE SET sha256 = EXCLUDED.sha256, fetched_at = now()""",
                (task.site, task.post_id, image.sha256),
            )
            cur.execute("DELETE FROM image_quarantine WHERE site = %s AND post_id = %s", (task.site, task.post_id))
            # Two sites' posts of one file, downloaded at once (their site hashes differ), both find the store
            # without it: the image row, written here one outcome at a time, says which one stored it.
            if new_row:
                report.stored += 1
            else:
                report.deduplicated += 1
        else:
            cur.execute(
                """INSERT INTO image_quarantine (site, post_id, url, reason, permanent)
                   VALUES (%s, %s, %s, %s, %s)
                   ON CONFLICT (site, post_id) DO UPDATE SET reason = EXCLUDED.reason, url = EXCLUDED.url,
                       permanent = EXCLUDED.permanent, attempts = image_quarantine.attempts + 1,
                       last_attempt = now()""",
                (task.site, task.post_id, task.url, f"{outcome.reason}: {outcome.detail}"[:2000], outcome.permanent),
            )
            report.failed[outcome.reason] += 1
            logger.info("%s %s quarantined: %s", task.site, task.post_id, outcome.detail)


PAGE_POSTS = 1_000  # posts listed per site at a time (keyset on post_id): memory stays flat at any backlog


@dataclass
class _Page:
    last: int  # the page's highest post id
    outstanding: int  # its posts not yet recorded


@dataclass
class _Lane:
    """One site's walk through its posts without a file: keyset pages, a queue of listed posts, its downloads in
    flight, and the cursor — the post id below which every listed post is recorded (``image_fetch_cursor``)."""

    site: str
    after: int  # listed up to here
    queue: deque = field(default_factory=deque)
    pages: deque = field(default_factory=deque)
    futures: set = field(default_factory=set)
    exhausted: bool = False


class _Fetch:
    """One run: every site's lane at once (each host keeps its own rate limit, shared across processes), outcomes
    recorded on one connection and each committed at once with its site's cursor (``synchronous_commit`` off: a
    killed process loses nothing committed, only a crash of the database server could lose the last instants), so
    a killed run re-downloads only what was in flight and resumes where the cursor stands without listing anything
    twice."""

    def __init__(self, conn: psycopg2.extensions.connection, report: FetchReport, bar, retry_failed: bool) -> None:  # noqa: ANN001
        self.conn, self.report, self.bar = conn, report, bar
        self.retry_failed = retry_failed
        self.page_of: dict[FetchTask, _Page] = {}
        self.lane_of: dict[FetchTask, _Lane] = {}
        self.leader_of: dict[str, FetchTask] = {}  # site hash → the task downloading that file now
        self.followers: dict[FetchTask, list[FetchTask]] = {}
        self.recorded = 0  # posts recorded after a download (with the posts that followed it)
        self.linked_on_listing = 0  # posts linked to a file already stored when their page was listed

    def lanes(self, sites: list[str]) -> list[_Lane]:
        with self.conn.cursor() as cur:
            cur.execute("SELECT site, after_post_id FROM image_fetch_cursor WHERE site = ANY(%s)", (sites,))
            cursors = dict(cur.fetchall())
        return [_Lane(site, cursors.get(site, 0)) for site in sites]

    def list_page(self, lane: _Lane) -> None:
        with self.conn.cursor() as cur:
            cur.execute(f"""SELECT p.site, p.post_id, p.file_url, p.md5, p.sha512 FROM booru_post p
                            WHERE p.site = %(site)s AND p.post_id > %(after)s AND {PENDING}
                            ORDER BY p.post_id LIMIT %(page)s""",
                        {"site": lane.site, "after": lane.after, "retry": self.retry_failed, "page": PAGE_POSTS})
            tasks = [FetchTask(*row) for row in cur.fetchall()]  # fmt: skip
        if not tasks:
            lane.exhausted = True
            self._advance(lane)
            self.conn.commit()
            return
        lane.after = tasks[-1].post_id
        linked = link_known_files(self.conn, lane.site, [t.post_id for t in tasks])  # a file stored already
        self.report.linked_by_hash += len(linked)
        self.linked_on_listing += len(linked)
        self.bar.update(len(linked))
        page = _Page(lane.after, 0)
        lane.pages.append(page)
        for task in tasks:
            if (task.site, task.post_id) not in linked:
                page.outstanding += 1
                self.page_of[task], self.lane_of[task] = page, lane
                lane.queue.append(task)
        self._advance(lane)
        self.conn.commit()

    def next_task(self, lane: _Lane) -> FetchTask | None:
        """The lane's next post to download; a post whose file another download in flight brings follows that
        one (linked, or failed the same way, when it finishes)."""
        while lane.queue:
            task = lane.queue.popleft()
            hashes = _hashes(task)
            leader = next((self.leader_of[h] for h in hashes if h in self.leader_of), None)
            if leader is None:
                self.leader_of.update((h, task) for h in hashes)
                return task
            self.followers.setdefault(leader, []).append(task)
        return None

    def record(self, outcome: FetchOutcome) -> None:
        task = outcome.task
        for h in _hashes(task):
            if self.leader_of.get(h) is task:
                del self.leader_of[h]
        _record(self.conn, outcome, self.report)
        followers = self.followers.pop(task, [])
        for other in followers:
            if outcome.image is not None:  # the same site hash, checked against these bytes: the same file
                with self.conn.cursor() as cur:
                    cur.execute("""INSERT INTO booru_post_image (site, post_id, sha256) VALUES (%s, %s, %s)
                                   ON CONFLICT (site, post_id) DO NOTHING""",
                                (other.site, other.post_id, outcome.image.sha256))  # fmt: skip
                    cur.execute("DELETE FROM image_quarantine WHERE site = %s AND post_id = %s",
                                (other.site, other.post_id))  # fmt: skip
                self.report.linked_by_hash += 1
            else:  # the posts with the same file fail the same way, not downloaded
                _record(self.conn, dataclasses.replace(outcome, task=other, detail=(
                    f"the same file as {task.site} post {task.post_id}: {outcome.detail}")), self.report)  # fmt: skip
        for done in (task, *followers):
            self.page_of.pop(done).outstanding -= 1
            self._advance(self.lane_of.pop(done))
        self.recorded += 1 + len(followers)
        self.bar.update(1 + len(followers))
        self.conn.commit()

    def _advance(self, lane: _Lane) -> None:
        """Move the lane's cursor past its fully recorded pages; a finished walk starts again from 0 next run (for
        posts that failed transiently, and older posts a backfill adds)."""
        moved = False
        while lane.pages and lane.pages[0].outstanding == 0:
            after = lane.pages.popleft().last
            moved = True
        if lane.exhausted and not lane.pages:
            after, moved = 0, True
        if moved:
            with self.conn.cursor() as cur:
                cur.execute("""INSERT INTO image_fetch_cursor (site, after_post_id) VALUES (%s, %s)
                               ON CONFLICT (site) DO UPDATE SET after_post_id = EXCLUDED.after_post_id,
                                   updated_at = now()""", (lane.site, after))  # fmt: skip


def _hashes(task: FetchTask) -> list[str]:
    return [h for h in (f"md5:{(task.md5 or '').lower()}", f"sha512:{(task.sha512 or '').lower()}")
            if not h.endswith(":")]  # fmt: skip


def fetch_images(
    *,
    settings: Settings | None = None,
    site: str | None = None,
    limit: int | None = None,
    retry_failed: bool = False,
    show_progress: bool | None = None,
    max_minutes: float | None = None,
) -> FetchReport:
    """Download, verify and store images for posts that have none; returns counts by outcome. Every site at
    once, each host within its rate limit; ``limit`` posts at most, and no new download after ``max_minutes``
    (the downloads in flight finish): the rest is left for the next run, which starts where this one stopped."""
    settings = settings or get_settings()
    store = open_store(settings=settings)
    report = FetchReport()
    parameters = {"site": site, "limit": limit, "retry_failed": retry_failed, "max_minutes": max_minutes}
    deadline = time.monotonic() + max_minutes * 60 if max_minutes is not None else None
    with connect(settings) as conn, recorded_run(conn, "images_fetch", parameters) as run:
        pending = _pending_by_site(conn, site, retry_failed)
        report.candidates = min(sum(pending.values()), limit if limit is not None else sum(pending.values()))
        downloader = _Downloader(settings, store, _host_rules(conn, settings))
        with conn.cursor() as cur:  # a commit per outcome, not a disk flush per outcome (see _Fetch)
            cur.execute("SET synchronous_commit = off")
        conn.commit()
        try:
            _run(conn, settings, downloader, report, pending, retry_failed, limit, deadline, show_progress)
        finally:
            downloader.disconnect()
        run.summary = {
            "candidates": report.candidates,
            "stored": report.stored,
            "deduplicated": report.deduplicated,
            "linked_by_hash": report.linked_by_hash,
            "failed": dict(report.failed),
            "left": report.left,
        }
    return report


def _run(conn: psycopg2.extensions.connection, settings: Settings, downloader: _Downloader, report: FetchReport,
         pending: dict[str, int], retry_failed: bool, limit: int | None, deadline: float | None,
         show_progress: bool | None) -> None:  # fmt: skip
    """Every site's lane at once until each is walked, ``limit`` posts are taken or the deadline passes."""
    workers = settings.image_fetch_workers
    taken = 0  # posts taken from the lanes' queues (downloads and the posts that follow them)
    with (
        ThreadPoolExecutor(workers * max(1, len(pending)), thread_name_prefix="image-fetch") as executor,
        progress_bar(show_progress, total=report.candidates, desc="fetch images", unit="img") as bar,
    ):
        fetch = _Fetch(conn, report, bar, retry_failed)
        lanes = fetch.lanes(sorted(pending))
        future_of: dict = {}
        while True:
            stopping = (deadline is not None and time.monotonic() > deadline) or (
                limit is not None and taken >= limit)  # fmt: skip
            for lane in lanes if not stopping else []:
                while len(lane.futures) < workers * 2 and (limit is None or taken < limit):
                    if not lane.queue:
                        if lane.exhausted:
                            break
                        fetch.list_page(lane)
                        continue
                    before = len(lane.queue)
                    task = fetch.next_task(lane)
                    taken += before - len(lane.queue)
                    if task is not None:
                        future = executor.submit(downloader, task)
                        future_of[future] = lane
                        lane.futures.add(future)
            running = set(future_of)
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                future_of.pop(future).futures.discard(future)
                fetch.record(future.result())
        report.left = sum(pending.values()) - fetch.recorded - fetch.linked_on_listing
