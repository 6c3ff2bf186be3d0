"""What every bulk import shares: its report, the file's export time, the cursor move after a whole file, and the
site's active tag aliases."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg2.extensions

from pony_tasks.boorus.imports.csv_files import date_in_name
from pony_tasks.boorus.records import iso_z
from pony_tasks.boorus.store import load_cursor, save_cursor

logger = logging.getLogger(__name__)


@dataclass
class ImportReport:
    site: str
    kind: str
    file: str
    rows: int = 0  # data rows read in this run
    stored: int = 0  # posts inserted or changed, tags or relations written
    unchanged: int = 0
    quarantined: int = 0
    kept_newer: int = 0  # posts observed after the export's date: left as they were
    skipped_rows: int = 0  # rows committed by an earlier, interrupted run of the same file
    already_imported: bool = False
    exported_at: str | None = None
    newest_post_id: int | None = None
    seconds: float = 0.0

    def summary(self) -> str:
        if self.already_imported:
            return f"{self.site} {self.kind}: {self.file} was imported before (same SHA-256); nothing to do"
        text = (f"{self.site} {self.kind}: {self.rows:,} rows read, {self.stored:,} stored, {self.unchanged:,} "
                f"unchanged, {self.quarantined:,} quarantined")  # fmt: skip
        if self.kept_newer:
            text += f", {self.kept_newer:,} kept (observed after the export)"
        if self.skipped_rows:
            text += f"; resumed after {self.skipped_rows:,} rows committed before"
        return text + f" in {self.seconds:.1f} s"


def export_time(path: Path, given: datetime | None) -> datetime:
    """When the site wrote the export: given, else the date in a dated name, else the file's modification time."""
    if given is not None:
        return given if given.tzinfo else given.replace(tzinfo=UTC)
    dated = date_in_name(path)
    if dated is not None:
        return dated
    modified = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    logger.info("%s has no date in its name; taking its modification time %s as the export's time (or pass "
                "--exported-at)", path.name, iso_z(modified))  # fmt: skip
    return modified


def advance_cursor(
    conn: psycopg2.extensions.connection, site: str, newest: int | None, oldest: int | None, *, backfill_done: bool
) -> None:
    """After a whole file: ``scrape --mode new`` continues above its newest id; a backfill continues below its
    oldest, or (``backfill_done``: an export holds every post, deleted ones included) has nothing left."""
    if newest is None:
        return
    cursor = load_cursor(conn, site)
    cursor.newest_post_id = max(newest, cursor.newest_post_id or 0)
    cursor.oldest_post_id = min(x for x in (oldest, cursor.oldest_post_id, newest) if x)
    cursor.backfill_done = cursor.backfill_done or backfill_done
    save_cursor(conn, cursor)


def active_aliases(conn: psycopg2.extensions.connection, site: str) -> dict[str, str]:
    """antecedent → consequent of the site's active aliases (a chain a → b → c resolved to c)."""
    with conn.cursor() as cur:
        cur.execute("SELECT antecedent, consequent FROM booru_tag_relation WHERE site = %s AND kind = 'alias' "
                    "AND status = 'active'", (site,))  # fmt: skip
        mapping = dict(cur.fetchall())
    for start in list(mapping):
        target, hops = mapping[start], 0
        while target in mapping and hops < 10:
            target, hops = mapping[target], hops + 1
        mapping[start] = target
    return mapping


def aliased(tags: list[str], aliases: dict[str, str]) -> list[str]:
    """``tags`` with the site's active aliases applied (antecedent → consequent, first occurrence kept, order
    otherwise as given). The site applies its aliases to posts itself, so a current export holds none; an older
    file or mirror may."""
    if not aliases or aliases.keys().isdisjoint(tags):
        return tags
    return list(dict.fromkeys(aliases.get(tag, tag) for tag in tags))
