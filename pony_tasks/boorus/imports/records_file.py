"""Tables of a site's API records (community mirrors: deepghs' danbooru2024 ``metadata.parquet``, e621 dumps as
JSON Lines): one post per row with the API's field names, nested fields possibly flattened as ``file.url`` /
``score.up`` columns. Each row is rebuilt as the API's record and goes through that site's adapter
(``to_unified``), so an import stores what a scrape of the same records stores, with one score snapshot at the
file's time. Parquet is read one row group at a time (pyarrow), JSON Lines line by line: memory follows a batch."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pony_tasks.boorus.adapters import adapter_for
from pony_tasks.boorus.imports import progress
from pony_tasks.boorus.imports.common import ImportReport, active_aliases, advance_cursor, aliased, export_time
from pony_tasks.boorus.records import RecordError, UnifiedPost, iso_z
from pony_tasks.boorus.store import QuarantinedRecord, append_snapshots, quarantine, stamp_deleted, upsert_posts
from pony_tasks.config import ConfigError, Settings, get_settings
from pony_tasks.db import connect
from pony_tasks.progress import progress_bar
from pony_tasks.runs import recorded_run

logger = logging.getLogger(__name__)
BATCH_ROWS = 5_000


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"file.url": u, "score.up": 3}`` → ``{"file": {"url": u}, "score": {"up": 3}}``; NaN (pandas' missing
    number) → None; a float that is a whole number → int (Parquet mirrors store nullable ids as double)."""
    record: dict[str, Any] = {}
    for key, value in flat.items():
        if isinstance(value, float):
            value = None if math.isnan(value) else int(value) if value.is_integer() else value
        parts = key.split(".") if isinstance(key, str) else [key]
        target = record
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise RecordError(f"column {key!r} nests under a value that is not an object")
        target[parts[-1]] = value
    return record


def with_aliases(post: UnifiedPost, aliases: dict[str, str]) -> UnifiedPost:
    """The post with its site's active aliases applied (a mirror taken before an alias was approved still carries
    the antecedent; the live site and a current export already carry the consequent)."""
    if not aliases or aliases.keys().isdisjoint(post.tags):
        return post
    post.tags = sorted(set(aliased(post.tags, aliases)))
    post.tag_groups = {group: aliased(names, aliases) for group, names in post.tag_groups.items()}
    return post


def _rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(row number from 1, record or the error reading it) for a .parquet or .jsonl/.ndjson file."""
    suffix = "".join(path.suffixes[-2:]).lower()
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        number = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS):
            for row in batch.to_pylist():
                number += 1
                yield number, nest(row)
        return
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json") or suffix in (".jsonl.gz", ".ndjson.gz"):
        import gzip

        opener = gzip.open if path.suffix.lower() == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except ValueError as exc:
                    yield number, RecordError(f"not JSON ({exc})")
                    continue
                yield number, nest(value) if isinstance(value, dict) else value
        return
    raise ConfigError(f"{path.name}: a records table must be .parquet, .jsonl, .ndjson or .jsonl.gz")


def import_records(
    site: str, path: Path, *, settings: Settings | None = None, exported_at: datetime | None = None,
    show_progress: bool | None = None, stop_after_rows: int | None = None,
) -> ImportReport:  # fmt: skip
    """Import a table of ``site``'s API records; safe to re-run and to kill (continues after the committed rows)."""
    settings = settings or get_settings()
    adapter = adapter_for(site, settings)  # a ConfigError for a site that is not configured
    when = export_time(path, exported_at)
    report = ImportReport(site, "records", path.name, exported_at=iso_z(when))
    started = datetime.now(UTC)
    digest = progress.file_sha256(path)
    parameters = {"site": site, "kind": "records", "file": path.name, "sha256": digest}
    with connect(settings) as conn, recorded_run(conn, "import", parameters) as run:
        state = progress.begin(conn, site, "records", digest, path.name, when)
        when = state.exported_at or when
        if state.finished:
            report.already_imported = True
            return report
        aliases = active_aliases(conn, site)
        bar = progress_bar(show_progress, desc=f"import {path.name}", unit="post", unit_scale=True)
        bounds: list[int] = []  # the lowest and highest post id stored (for the cursor)

        def store(posts: list[UnifiedPost], broken: list[QuarantinedRecord], last_number: int) -> None:
            if posts:
                result = upsert_posts(conn, posts)
                report.stored += result.inserted + result.updated
                report.unchanged += result.unchanged
                state.stored += result.inserted + result.updated
                append_snapshots(conn, posts, when)
                stamp_deleted(conn, site, [p.post_id for p in posts if p.deleted], when)
                ids = [p.post_id for p in posts]
                bounds[:] = [min(ids + bounds[:1]), max(ids + bounds[1:])]
            if broken:
                quarantine(conn, site, f"file:{path.name}", broken)
                report.quarantined += len(broken)
                state.quarantined += len(broken)
            state.rows_done = last_number
            progress.save(conn, state)
            conn.commit()
            bar.update(len(posts) + len(broken))

        complete, last_number = True, state.rows_done
        posts: list[UnifiedPost] = []
        broken: list[QuarantinedRecord] = []
        # stored on this thread: translating (Python) and storing (Python encoding, then the server) share one
        # core's worth of GIL, so a writer thread measured slower here (12,089 vs 14,967 posts/s at 1M)
        for number, record in _rows(path):
            if number <= state.rows_done:
                report.skipped_rows += 1
                continue
            report.rows += 1
            last_number = number
            try:
                if isinstance(record, Exception):
                    raise record
                posts.append(with_aliases(adapter.to_unified(record), aliases))
            except RecordError as exc:
                raw = record if not isinstance(record, Exception) else str(record)
                broken.append(QuarantinedRecord(json.loads(json.dumps(raw, default=str)),
                                                f"row {number}: record breaks the {site} schema: {exc}",
                                                adapter.record_id(record)))  # fmt: skip
            if len(posts) + len(broken) >= BATCH_ROWS:
                store(posts, broken, last_number)
                posts, broken = [], []
                if stop_after_rows is not None and report.rows >= stop_after_rows:
                    complete = False
                    break
        if complete:
            store(posts, broken, last_number)
            if bounds:
                advance_cursor(conn, site, bounds[1], bounds[0], backfill_done=False)
            progress.save(conn, state, finished=True)
            conn.commit()
        bar.close()
        report.seconds = (datetime.now(UTC) - started).total_seconds()
        run.summary = dict(report.__dict__)
    return report
