"""``pony images fetch``: download files for posts that have none yet.

Concurrent downloads, rate-limited per host, only from hosts that belong to the post's site (``booru_file_hosts``
domain suffixes, the site's base URL and the base URL last scraped; see ``pony_tasks.boorus.hosts``), under a size
cap. Redirects are followed by ``PoliteClient`` itself and every hop is checked the same way, including the
private-address rule, so an allowed host cannot redirect us into a foreign or internal one. Each file is checked
against the site's md5/sha512 (e621's md5 also for URLs rebuilt from it),
fully decoded under a decompression-bomb limit, and stored content-addressed (``images/ab/cd/<sha256>.<ext>``).
A post whose site md5/sha512 names a file already stored (another post's, on any site) is linked to it and not
downloaded again (``link_known_files``; at most one download per hash in a batch). Failures go to
``image_quarantine`` with a reason and never stop the batch. Results are committed in small batches,
so a killed fetch resumes where it stopped; permanent failures are not retried unless asked.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
from collections import Counter
from collections.abc import Iterator
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
COMMIT_EVERY = 50


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
    already_stored: bool = False  # for successes: the same bytes were in the store already
    md5: str | None = None  # for successes: of the bytes
    sha512: str | None = None


@dataclass
class FetchReport:
    candidates: int = 0
    stored: int = 0
    deduplicated: int = 0  # same bytes already in the store (another post, or an earlier run)
    linked_by_hash: int = 0  # posts whose site md5/sha512 named a stored file: linked, not downloaded
    failed: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        failures = ", ".join(f"{n} {reason}" for reason, n in sorted(self.failed.items())) or "none"
        return (
            f"images: {self.candidates} to fetch, {self.stored} stored, {self.deduplicated} already stored, "
            f"{self.linked_by_hash} linked to a stored file by the site's hash (not downloaded), "
            f"quarantined: {failures}"
        )


def image_key(image: DecodedImage) -> str:
    return f"images/{image.sha256[:2]}/{image.sha256[2:4]}/{image.sha256}.{image.extension}"


class _Downloader:
    def __init__(self, settings: Settings, store: ObjectStore, hosts: HostRules) -> None:
        self.settings, self.store, self.hosts = settings, store, hosts
        self._local = threading.local()

    def _client(self, site: str, host: str) -> PoliteClient:
        clients = self._local.__dict__.setdefault("clients", {})
        if (site, host) not in clients:
            limiter = shared_limiter(f"files:{host}", self.settings.image_host_rate_limit,
                                     database=database_url(self.settings))  # fmt: skip
            clients[site, host] = PoliteClient.from_settings(self.settings, limiter, url_guard=self.hosts.guard(site))
        return clients[site, host]

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
            existed = self.store.exists(key)
            if not existed:
                self.store.put_bytes(key, data)
            return FetchOutcome(task, image=image, storage_key=key, byte_size=len(data), already_stored=existed,
                                md5=hashlib.md5(data).hexdigest(), sha512=hashlib.sha512(data).hexdigest())
        assert last is not None
        # The same wrong bytes every time: the site's hash or file is wrong. Different bytes each time: damage in
        # transit — worth another try on the next run.
        return FetchOutcome(task, reason=last.reason, detail=str(last), permanent=len(seen_digests) == 1)


def _candidates(
    conn: psycopg2.extensions.connection, site: str | None, limit: int | None, retry_failed: bool
) -> tuple[list[FetchTask], dict[FetchTask, list[FetchTask]]]:
    """(posts to download, the posts each stands for): at most one download per site hash (md5 or sha512); the
    others with that hash are linked to the stored file once it is there (:func:`link_known_files`), or share its
    failure."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT p.site, p.post_id, p.file_url, p.md5, p.sha512
               FROM booru_post p
               LEFT JOIN booru_post_image i USING (site, post_id)
               LEFT JOIN image_quarantine q USING (site, post_id)
               WHERE i.post_id IS NULL AND p.file_url IS NOT NULL AND NOT p.deleted
                 AND (%(site)s::text IS NULL OR p.site = %(site)s)
                 AND (q.post_id IS NULL OR NOT q.permanent OR %(retry)s)
               ORDER BY p.site, p.post_id
               LIMIT %(limit)s""",
            {"site": site, "limit": limit, "retry": retry_failed},
        )
        tasks: list[FetchTask] = []
        first_with: dict[str, FetchTask] = {}
        same_file: dict[FetchTask, list[FetchTask]] = {}
        for task in (FetchTask(*row) for row in cur.fetchall()):
            hashes = [h for h in (f"md5:{(task.md5 or '').lower()}", f"sha512:{(task.sha512 or '').lower()}")
                      if not h.endswith(":")]  # fmt: skip
            earlier = next((first_with[h] for h in hashes if h in first_with), None)
            if earlier is not None:  # the same file as an earlier task: it follows that one
                same_file.setdefault(earlier, []).append(task)
                continue
            first_with.update((h, task) for h in hashes)
            tasks.append(task)
        return tasks, same_file


def _still_without_file(conn: psycopg2.extensions.connection, tasks: list[FetchTask], bar,  # noqa: ANN001 - tqdm
                        same_file: dict[FetchTask, list[FetchTask]]) -> list[FetchTask]:  # fmt: skip
    """``tasks`` less those whose post was just linked to a stored file (counted as done on ``bar``)."""
    with conn.cursor() as cur:
        cur.execute("""SELECT site, post_id FROM booru_post_image
                       WHERE (site, post_id) IN (SELECT * FROM unnest(%s::text[], %s::bigint[]))""",
                    ([t.site for t in tasks], [t.post_id for t in tasks]))  # fmt: skip
        done = set(cur.fetchall())
    left = [t for t in tasks if (t.site, t.post_id) not in done]
    bar.update(sum(1 + len(same_file.get(t, [])) for t in tasks if (t.site, t.post_id) in done))
    return left


def link_known_files(conn: psycopg2.extensions.connection, site: str | None = None) -> int:
    """Link posts without a file to a stored image whose bytes have the md5 or sha512 the site gives for the post
    (the same file re-posted, or a post whose file another post already brought in): no download. The stored
    image's hashes are of its bytes, so a site's wrong hash links nothing. Returns how many posts were linked."""
    with conn.cursor() as cur:
        cur.execute(
            """INSERT INTO booru_post_image (site, post_id, sha256)
               SELECT DISTINCT ON (p.site, p.post_id) p.site, p.post_id, im.sha256
               FROM booru_post p
               JOIN image im ON (p.md5 IS NOT NULL AND im.md5 = lower(p.md5))
                             OR (p.sha512 IS NOT NULL AND im.sha512 = lower(p.sha512))
               WHERE NOT p.deleted AND (%(site)s::text IS NULL OR p.site = %(site)s)
                 AND NOT EXISTS (SELECT 1 FROM booru_post_image i WHERE i.site = p.site AND i.post_id = p.post_id)
               ORDER BY p.site, p.post_id, im.sha256
               ON CONFLICT (site, post_id) DO NOTHING""",
            {"site": site},
        )
        linked = cur.rowcount
        cur.execute("""DELETE FROM image_quarantine q USING booru_post_image i
                       WHERE i.site = q.site AND i.post_id = q.post_id""")  # fmt: skip
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
    SET {", ".join(f"{c} = coalesce(image.{c}, EXCLUDED.{c})" for c in ("md5", "sha512", *SIGNATURE_COLUMNS))}"""


def _record(conn: psycopg2.extensions.connection, outcome: FetchOutcome, report: FetchReport) -> None:
    task = outcome.task
    with conn.cursor() as cur:
        if outcome.image is not None:
            image = outcome.image
            signatures = image.signatures.columns() if image.signatures else (None,) * len(SIGNATURE_COLUMNS)
            cur.execute(STORE_IMAGE, (image.sha256, outcome.storage_key, outcome.byte_size, image.width, image.height,
                                      image.format, outcome.md5, outcome.sha512, *signatures))  # fmt: skip
            cur.execute(
                """INSERT INTO booru_post_image (site, post_id, sha256) VALUES (%s, %s, %s)
                   ON CONFLICT (site, post_id) DO UPDATE SET sha256 = EXCLUDED.sha256, fetched_at = now()""",
                (task.site, task.post_id, image.sha256),
            )
            cur.execute("DELETE FROM image_quarantine WHERE site = %s AND post_id = %s", (task.site, task.post_id))
            if outcome.already_stored:
                report.deduplicated += 1
            else:
                report.stored += 1
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


def _bounded(executor: ThreadPoolExecutor, worker, tasks: list[FetchTask], window: int) -> Iterator[FetchOutcome]:
    """Results as they finish, with at most ``window`` downloads queued at once."""
    pending = set()
    queue = iter(tasks)
    for task in queue:
        pending.add(executor.submit(worker, task))
        if len(pending) >= window:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            yield from (future.result() for future in done)
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        yield from (future.result() for future in done)


def fetch_images(
    *,
    settings: Settings | None = None,
    site: str | None = None,
    limit: int | None = None,
    retry_failed: bool = False,
    show_progress: bool | None = None,
) -> FetchReport:
    """Download, verify and store images for posts that have none; returns counts by outcome."""
    settings = settings or get_settings()
    store = open_store(settings=settings)
    report = FetchReport()
    parameters = {"site": site, "limit": limit, "retry_failed": retry_failed}
    with connect(settings) as conn, recorded_run(conn, "images_fetch", parameters) as run:
        report.linked_by_hash = link_known_files(conn, site)
        tasks, same_file = _candidates(conn, site, limit, retry_failed)
        downloader = _Downloader(settings, store, _host_rules(conn, settings))
        conn.commit()
        report.candidates = len(tasks) + sum(map(len, same_file.values()))
        workers = settings.image_fetch_workers
        by_site: dict[str, list[FetchTask]] = {}
        for task in tasks:
            by_site.setdefault(task.site, []).append(task)
        count = 0
        with (
            ThreadPoolExecutor(workers, thread_name_prefix="image-fetch") as executor,
            progress_bar(show_progress, total=report.candidates, desc="fetch images", unit="img") as bar,
        ):
            for index, (task_site, site_tasks) in enumerate(by_site.items()):
                if index:  # a file an earlier site's post brought in (md5 here, sha512 there) is not fetched again
                    conn.commit()
                    linked = link_known_files(conn, task_site)
                    if linked:
                        report.linked_by_hash += linked
                        site_tasks = _still_without_file(conn, site_tasks, bar, same_file)
                for outcome in _bounded(executor, downloader, site_tasks, workers * 4):
                    count += 1
                    _record(conn, outcome, report)
                    if outcome.image is None:  # the posts with the same file fail the same way, not downloaded
                        for other in same_file.get(outcome.task, []):
                            _record(conn, dataclasses.replace(outcome, task=other, detail=(
                                f"the same file as {outcome.task.site} post {outcome.task.post_id}: "
                                f"{outcome.detail}")), report)  # fmt: skip
                    if count % COMMIT_EVERY == 0:
                        conn.commit()
                    bar.update(1 + len(same_file.get(outcome.task, [])))
        report.linked_by_hash += link_known_files(conn, site)  # posts that share a file with one just stored
        run.summary = {
            "candidates": report.candidates,
            "stored": report.stored,
            "deduplicated": report.deduplicated,
            "linked_by_hash": report.linked_by_hash,
            "failed": dict(report.failed),
        }
    return report
