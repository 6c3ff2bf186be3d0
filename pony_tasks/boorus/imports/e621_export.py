"""e621's database export (``https://e621.net/db_export/``): ``posts``, ``tags``, ``tag_aliases`` and
``tag_implications`` as gzipped CSV with a header row (PostgreSQL ``COPY … TO STDOUT WITH CSV HEADER``).

Facts the reader relies on (e621ng's export and the tools that read it):

- Columns are read by header name; extra columns are accepted (the in-app export of 2026 appends ``bg_color,
  last_noted_at,last_commented_at`` to the 29 long-standing posts columns; newer tags and relation files add columns).
- Booleans are ``t``/``f``, NULL is an empty field, timestamps carry no zone (UTC), ``tag_string`` is
  space-separated, ``source`` holds several URLs separated by newlines inside the quoted field, ``down_score`` is
  ≤ 0 (as the API's ``score.down``), ``rating`` is ``s``/``q``/``e``. Deleted posts are in the file with
  ``is_deleted = t``.
- There is no file URL: it is rebuilt from md5 + ext as the adapter does for hidden URLs (``file_url_derived``).
- Tag categories are not in the posts file: they come from ``tags`` (0 general, 1 artist, 2 contributor,
  3 copyright, 4 character, 5 species, 6 invalid, 7 meta, 8 lore), so import tags first.

Each post row is written as the API's post JSON (``/posts.json``) and goes through the e621 adapter's
``to_unified``: an import stores exactly what a scrape of the same posts stores (the tests compare every field),
with one score snapshot observed at the export's date.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2.extensions
from psycopg2 import sql

from pony_tasks.boorus.adapters import adapter_for
from pony_tasks.boorus.adapters.e621 import MD5, E621Adapter
from pony_tasks.boorus.imports import progress
from pony_tasks.boorus.imports.common import ImportReport, active_aliases, advance_cursor, aliased, export_time
from pony_tasks.boorus.imports.csv_files import CsvRows, ExportFormatError, date_in_name, open_text, parse_naive_utc
from pony_tasks.boorus.records import RecordError, clean_tags, iso_z, wilson_lower_bound
from pony_tasks.boorus.store import (
    POST_COLUMNS,
    QuarantinedRecord,
    csv_array,
    csv_number,
    csv_text,
    quarantine,
)
from pony_tasks.config import ConfigError, Settings, get_settings
from pony_tasks.db import connect
from pony_tasks.db.bulk import NULL_MARKER, copy_lines, copy_rows
from pony_tasks.progress import progress_bar
from pony_tasks.runs import recorded_run

logger = logging.getLogger(__name__)

SITE = "e621"
CHUNK_ROWS = 20_000  # rows per transaction: the unit a killed import repeats at most
CATEGORIES = {0: "general", 1: "artist", 2: "contributor", 3: "copyright", 4: "character", 5: "species",
              6: "invalid", 7: "meta", 8: "lore"}  # fmt: skip
API_GROUPS = tuple(CATEGORIES.values())
POSTS_REQUIRED = ("id", "created_at", "md5", "source", "rating", "image_width", "image_height", "tag_string",
                  "fav_count", "file_ext", "is_deleted", "score", "up_score", "down_score")  # fmt: skip
TAGS_REQUIRED = ("id", "name", "category")
RELATIONS_REQUIRED = ("id", "antecedent_name", "consequent_name", "status")
KINDS = ("posts", "tags", "aliases", "implications")


# Posts ------------------------------------------------------------------------------------------------------------
class PostRows:
    """Turns rows of the posts file into e621 API post records (``/posts.json`` shape)."""

    def __init__(
        self, rows: CsvRows, groups_by_name: dict[str, str], adapter: E621Adapter,
        aliases: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        self.groups = groups_by_name  # tag → category name, for every tag that is not general
        self.special = frozenset(groups_by_name)
        self.adapter = adapter
        self.aliases = aliases or {}  # the site's active aliases: an older file's antecedents become consequents
        get = rows.positions.__getitem__
        self.i_id, self.i_created, self.i_md5, self.i_source = get("id"), get("created_at"), get("md5"), get("source")
        self.i_rating, self.i_width, self.i_height = get("rating"), get("image_width"), get("image_height")
        self.i_tags, self.i_favs, self.i_ext = get("tag_string"), get("fav_count"), get("file_ext")
        self.i_deleted, self.i_score = get("is_deleted"), get("score")
        self.i_up, self.i_down = get("up_score"), get("down_score")
        self.width = rows.width

    def record(self, row: list[str]) -> dict[str, Any]:
        """The API record for one row; raises :class:`RecordError` for a row that cannot be one."""
        if len(row) < self.width:
            raise RecordError(f"{len(row)} fields where the header has {self.width}")
        groups: dict[str, list[str]] = {name: [] for name in API_GROUPS}
        lookup = self.groups.get
        for tag in aliased(row[self.i_tags].split(), self.aliases):
            groups[lookup(tag, "general")].append(tag)
        try:
            created = iso_z(parse_naive_utc(row[self.i_created]))
        except ValueError as exc:
            raise RecordError(f"created_at {row[self.i_created]!r} is not a timestamp ({exc})") from None
        return {
            "id": _int(row[self.i_id], "id"),
            "created_at": created,
            "file": {
                "width": _int(row[self.i_width], "image_width"),
                "height": _int(row[self.i_height], "image_height"),
                "ext": row[self.i_ext] or None,
                "md5": row[self.i_md5] or None,
                "url": None,  # not in the export: rebuilt from md5 + ext by the adapter
            },
            "score": {"up": _int(row[self.i_up], "up_score"), "down": _int(row[self.i_down], "down_score"),
                      "total": _int(row[self.i_score], "score")},  # fmt: skip
            "tags": groups,
            "rating": row[self.i_rating],
            "fav_count": _int(row[self.i_favs], "fav_count"),
            "sources": [s.strip() for s in row[self.i_source].splitlines() if s.strip()],
            "flags": {"deleted": _bool(row[self.i_deleted], "is_deleted")},
        }

    def encoded(self, row: list[str]) -> tuple[int, str]:
        """(post id, the booru_post COPY line) — what ``record`` → the adapter's
        ``to_unified`` → ``store.encode_post_line`` give, without the intermediate objects: the hot path of an
        import, ~5× faster. A test checks both give the same line for every row of the sample export."""
        if len(row) < self.width:
            raise RecordError(f"{len(row)} fields where the header has {self.width}")
        post_id = _int(row[self.i_id], "id")
        if post_id is None or post_id <= 0:
            raise RecordError(f"post id must be a positive integer, got {row[self.i_id]!r}")
        site_rating = row[self.i_rating]
        rating = _RATINGS.get(site_rating)
        if rating is None:
            raise RecordError(f"rating {site_rating!r} is not one of s/q/e")
        try:
            created = parse_naive_utc(row[self.i_created]).isoformat()
        except ValueError as exc:
            raise RecordError(f"created_at {row[self.i_created]!r} is not a timestamp ({exc})") from None
        tag_string = row[self.i_tags]
        listed = aliased(tag_string.split(), self.aliases)
        ordered = sorted(set(listed))
        if ordered == listed and "&" not in tag_string:
            # e621 writes tag_string sorted and unique: group with set operations (C loops), general by default
            special = self.special.intersection(listed)
            found = {}
            if special:
                for tag in sorted(special):
                    found.setdefault(self.groups[tag], []).append(tag)
                general = [tag for tag in listed if tag not in special]
            else:
                general = listed
            if general:
                found["general"] = general
            tags = ordered
        else:  # any other order, repeats or entities: tag by tag, as the adapter reads the API's groups
            lookup = self.groups.get
            found = {}
            for tag in listed:
                found.setdefault(lookup(tag, "general"), []).append(tag)
            if "&" in tag_string:  # entities: decoded as the adapter's clean_tags does
                found = {group: clean_tags(names) for group, names in found.items()}
            tags = sorted({tag for names in found.values() for tag in names})
        groups = {group: found[group] for group in API_GROUPS if found.get(group)}
        up, down, total = (_required_int(row[i], name) for i, name in ((self.i_up, "score.up"),
                                                                         (self.i_down, "score.down"),
                                                                         (self.i_score, "score.total")))  # fmt: skip
        if up < 0:
            raise RecordError(f"up_votes must be non-negative, got {up}")
        if down > 0:
            raise RecordError(f"down_votes must be non-negative, got {-down}")
        favorites = _int(row[self.i_favs], "fav_count")
        width, height = _int(row[self.i_width], "image_width"), _int(row[self.i_height], "image_height")
        md5, ext = row[self.i_md5] or None, row[self.i_ext] or None
        deleted = _bool(row[self.i_deleted], "is_deleted")
        url = None
        if md5 and ext and not deleted:
            if not (MD5.fullmatch(md5) and ext.isalnum()):
                raise RecordError(f"file.md5 {md5!r} / file.ext {ext!r} cannot make a file URL")
            url = self.adapter.derived_file_url(md5, ext)
        sources = [s.strip() for s in row[self.i_source].splitlines() if s.strip()]
        if _NEEDS_ESCAPING.search(tag_string) is None:  # plain names: the array and JSON written directly
            tag_field = '"{""' + '"",""'.join(tags) + '""}"' if tags else '"{}"'
            group_field = ('"{' + ",".join('""' + group + '"":[""' + '"",""'.join(names) + '""]'
                                           for group, names in groups.items()) + '}"')  # fmt: skip
        else:
            tag_field = csv_array(tags)
            group_field = csv_text(json.dumps(groups, ensure_ascii=False, separators=(",", ":")) if groups else "{}")
        line = (
            f"e621,{post_id},{created},\"{rating}\",\"{site_rating}\",{tag_field},{group_field},{total},"
            f"{up},{-down},{csv_number(favorites)},{csv_number(wilson_lower_bound(up, -down))},{csv_text(url)},"
            f"{csv_text(md5)},"
            f"{NULL_MARKER},{csv_number(width)},{csv_number(height)},{csv_text(ext)},{csv_array(sources)},"
            f"{'t' if deleted else 'f'},{'t' if url else 'f'}\n"
        )
        return post_id, line


_RATINGS = {"s": "general", "q": "questionable", "e": "explicit"}
_NEEDS_ESCAPING = re.compile(r'["\\\x00-\x1f\x7f]')  # in a JSON string or an array element


def _required_int(text: str, name: str) -> int:
    value = _int(text, name)
    if value is None:
        raise RecordError(f"{name} must be an integer, got None")
    return value


def _int(text: str, name: str) -> int | None:
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise RecordError(f"{name} {text!r} is not an integer") from None


def _bool(text: str, name: str) -> bool:
    if text in ("t", "f"):
        return text == "t"
    if text in ("true", "false"):
        return text == "true"
    raise RecordError(f"{name} {text!r} is not t or f")


def tag_groups_by_name(conn: psycopg2.extensions.connection) -> dict[str, str]:
    """e621 tag → category for every categorised tag that is not general (general is the default)."""
    with conn.cursor(name="pony_e621_categories") as cur:
        cur.itersize = 50_000
        cur.execute("SELECT name, category FROM booru_tag_category WHERE site = %s AND category IS DISTINCT FROM "
                    "'general'", (SITE,))  # fmt: skip
        return {name: category for name, category in cur if category}


def _has_categories(conn: psycopg2.extensions.connection) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT EXISTS (SELECT 1 FROM booru_tag_category WHERE site = %s)", (SITE,))
        return cur.fetchone()[0]


@dataclass
class _Chunk:
    """Rows of the posts file encoded for COPY, not yet stored."""

    ids: list[int] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # booru_post COPY lines with their row digest
    broken: list[QuarantinedRecord] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.ids) + len(self.broken)


def import_posts(
    path: Path,
    *,
    settings: Settings | None = None,
    exported_at: datetime | None = None,
    show_progress: bool | None = None,
    stop_after_rows: int | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> ImportReport:
    """Import e621's posts export; safe to re-run and to kill. ``stop_after_rows`` ends the run after that many rows
    of this run were committed (tests and ``--max-rows``: the next run continues).

    The file is read and encoded on this thread while a second one stores the previous chunk (PostgreSQL works on
    its own core meanwhile); each chunk is committed with the file's progress, so a killed run repeats one chunk
    at most."""
    settings = settings or get_settings()
    adapter = adapter_for(SITE, settings)
    when = export_time(path, exported_at)
    report = ImportReport(SITE, "posts", path.name, exported_at=iso_z(when))
    started = datetime.now(UTC)
    digest = progress.file_sha256(path)
    with connect(settings) as conn, recorded_run(conn, "import", {"site": SITE, "kind": "posts", "file": path.name,
                                                                  "sha256": digest}) as run:  # fmt: skip
        state = progress.begin(conn, SITE, "posts", digest, path.name, when)
        when = state.exported_at or when
        if state.finished:
            report.already_imported = True
            run.summary = {"already_imported": True}
            return report
        if not _has_categories(conn):
            raise ConfigError("e621's tag categories are not imported yet: import the tags export first "
                              "(pony import e621-export --tags tags-….csv.gz, or give --tags and --posts together) — "
                              "without it every tag would be filed as general")  # fmt: skip
        groups, aliases = tag_groups_by_name(conn), active_aliases(conn, SITE)
        with conn.cursor() as cur:  # a crash loses the last chunks together with their progress: they run again
            cur.execute("SET synchronous_commit = off")
        bar = progress_bar(show_progress, desc=f"import {path.name}", unit="post", unit_scale=True)
        bounds: list[int] = []

        def store(chunk: _Chunk) -> None:
            if chunk.ids:
                bounds[:] = [min(chunk.ids + bounds[:1]), max(chunk.ids + bounds[1:])]
            _store_chunk(conn, chunk, when, report, state, path.name)
            state.rows_done += chunk.rows
            progress.save(conn, state)
            conn.commit()
            bar.update(chunk.rows)

        with open_text(path) as handle, _ChunkWriter(store) as writer:
            rows = CsvRows(handle, POSTS_REQUIRED, f"{path.name} (e621 posts export)")
            builder = PostRows(rows, groups, adapter, aliases)
            chunk, complete = _Chunk(), True
            for item in _after(rows, state.rows_done, report):
                try:
                    if isinstance(item, Exception):
                        raise RecordError(f"unreadable CSV ({item})")
                    post_id, line = builder.encoded(item)
                    if "\x00" in line:
                        raise RecordError("a NUL character, which PostgreSQL text cannot store")
                except RecordError as exc:
                    raw = ",".join(item) if isinstance(item, list) else str(item)
                    reason = f"line {rows.line}: row breaks the e621 export schema: {exc}"
                    chunk.broken.append(QuarantinedRecord(raw[:10_000], reason, _row_id(item, builder.i_id)))
                else:
                    chunk.ids.append(post_id)
                    chunk.lines.append(f"{line[:-1]},{hashlib.md5(line.encode()).hexdigest()}\n")  # the row digest
                if chunk.rows >= chunk_rows:
                    writer.put(chunk)
                    chunk = _Chunk()
                    if stop_after_rows is not None and report.rows >= stop_after_rows:
                        complete = False
                        break
            if complete:
                writer.put(chunk)
        if complete:
            advance_cursor(conn, SITE, newest_in_file(conn), bounds[0] if bounds else None, backfill_done=True)
            progress.save(conn, state, finished=True)
            conn.commit()
        bar.close()
        report.newest_post_id = bounds[1] if bounds else None
        report.seconds = (datetime.now(UTC) - started).total_seconds()
        run.summary = dict(report.__dict__)
    return report


class _ChunkWriter:
    """Stores chunks on a second thread, in order, while the caller's thread reads and translates the next ones
    (the database works on its own core meanwhile); an error there stops the reading thread at its next chunk."""

    def __init__(self, store: Callable[[_Chunk], None]) -> None:
        self._store = store
        self._queue: queue.Queue[_Chunk | None] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="e621-import-writer", daemon=True)

    def __enter__(self) -> _ChunkWriter:
        self._thread.start()
        return self

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._store(chunk)
                except BaseException as exc:  # handed to the reading thread
                    self._error = exc

    def put(self, chunk: _Chunk) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(chunk)

    def __exit__(self, *exc: object) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None and exc[0] is None:
            raise self._error


def _after(rows: CsvRows, done: int, report: ImportReport) -> Iterator[list[str] | Exception]:
    """The rows after the ``done`` an earlier run of the same file committed (counted as skipped), each counted as
    read."""
    for seen, item in enumerate(rows, start=1):
        if seen <= done:
            report.skipped_rows += 1
            continue
        report.rows += 1
        yield item


def _row_id(row: object, position: int) -> int | None:
    try:
        value = int(row[position])  # type: ignore[index]
    except (ValueError, IndexError, TypeError):
        return None
    return value if value > 0 else None


_STAGE_COLUMNS = (*POST_COLUMNS, "row_digest")
_WRITE_CHUNK = sql.SQL("""
WITH later AS (  -- posts observed after the export's time: their stored row is newer than the file's
    SELECT DISTINCT g.post_id FROM pony_import_stage g
    JOIN booru_score_snapshot s ON s.site = g.site AND s.post_id = g.post_id AND s.observed_at > %(when)s
), written AS (
    INSERT INTO booru_post ({columns}, deleted_seen_at)
    SELECT {columns}, CASE WHEN g.deleted THEN %(when)s::timestamptz END FROM pony_import_stage g
    WHERE g.post_id NOT IN (SELECT post_id FROM later)
    ON CONFLICT (site, post_id) DO UPDATE SET ({updated}) = ROW({excluded}),
        deleted_seen_at = coalesce(booru_post.deleted_seen_at, EXCLUDED.deleted_seen_at)
    WHERE booru_post.row_digest IS DISTINCT FROM EXCLUDED.row_digest
    RETURNING (xmax = 0) AS inserted
), observed AS (
    INSERT INTO booru_score_snapshot (site, post_id, observed_at, score, up_votes, down_votes, favorites)
    SELECT site, post_id, %(when)s, score, up_votes, down_votes, favorites FROM pony_import_stage
    ON CONFLICT DO NOTHING
)
SELECT (SELECT count(*) FROM written WHERE inserted), (SELECT count(*) FROM written WHERE NOT inserted),
       (SELECT count(*) FROM later)
""").format(
    columns=sql.SQL(", ").join(map(sql.Identifier, _STAGE_COLUMNS)),
    updated=sql.SQL(", ").join(map(sql.Identifier, _STAGE_COLUMNS[2:])),
    excluded=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in _STAGE_COLUMNS[2:]),
)


def _store_chunk(
    conn: psycopg2.extensions.connection, chunk: _Chunk, when: datetime, report: ImportReport,
    state: progress.ImportState, file_name: str,
) -> None:  # fmt: skip
    """One chunk as a scrape stores a page — posts (unless observed after the export), a snapshot at the export's
    time, deletions stamped, broken rows quarantined — in one COPY to a staging table and one statement."""
    if chunk.lines:
        latest = {post_id: line for post_id, line in zip(chunk.ids, chunk.lines, strict=True)}  # the last one wins
        with conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE IF NOT EXISTS pony_import_stage (LIKE booru_post INCLUDING DEFAULTS) "
                        "ON COMMIT DELETE ROWS")  # fmt: skip
            copy_lines(cur, "pony_import_stage", _STAGE_COLUMNS, list(latest.values()))
            cur.execute(_WRITE_CHUNK, {"when": when})
            inserted, updated, later = cur.fetchone()
        report.stored += inserted + updated
        report.unchanged += len(latest) - inserted - updated - later
        report.kept_newer += later
        state.stored += inserted + updated
        state.kept_newer += later
    if chunk.broken:
        quarantine(conn, SITE, f"file:{file_name}", chunk.broken)
        report.quarantined += len(chunk.broken)
        state.quarantined += len(chunk.broken)
        logger.warning("e621 export %s: %d rows quarantined (%s)", file_name, len(chunk.broken),
                       chunk.broken[0].reason)  # fmt: skip


def newest_in_file(conn: psycopg2.extensions.connection) -> int | None:
    """The newest stored e621 post id once the whole file is in (a resumed run saw only part of the file)."""
    with conn.cursor() as cur:
        cur.execute("SELECT max(post_id) FROM booru_post WHERE site = %s", (SITE,))
        return cur.fetchone()[0]


# Tags, aliases, implications --------------------------------------------------------------------------------------
def import_tags(path: Path, *, settings: Settings | None = None, show_progress: bool | None = None) -> ImportReport:
    """Tag categories from the tags export into ``booru_tag_category`` (by e621's tag id)."""

    def rows_of(rows: CsvRows) -> Callable[[list[str]], tuple[Any, ...]]:
        i_id, i_name, i_category = rows.positions["id"], rows.positions["name"], rows.positions["category"]

        def convert(row: list[str]) -> tuple[Any, ...]:
            category = _int(row[i_category], "category")
            if category not in CATEGORIES:
                raise RecordError(f"category {row[i_category]!r} is not one of 0–8")
            if not row[i_name]:
                raise RecordError("empty tag name")
            return (SITE, _int(row[i_id], "id"), row[i_name], CATEGORIES[category])

        return convert

    return _import_table(path, "tags", TAGS_REQUIRED, rows_of, _write_tags, settings, show_progress)


def import_relations(
    path: Path, kind: str, *, settings: Settings | None = None, show_progress: bool | None = None
) -> ImportReport:
    """``tag_aliases`` (kind ``aliases``) or ``tag_implications`` (``implications``) into ``booru_tag_relation``."""
    relation = {"aliases": "alias", "implications": "implication"}[kind]

    def rows_of(rows: CsvRows) -> Callable[[list[str]], tuple[Any, ...]]:
        pos = rows.positions
        i_created = pos.get("created_at")

        def convert(row: list[str]) -> tuple[Any, ...]:
            antecedent, consequent = row[pos["antecedent_name"]], row[pos["consequent_name"]]
            if not antecedent or not consequent:
                raise RecordError("empty antecedent or consequent")
            created = None
            if i_created is not None and row[i_created]:
                try:
                    created = parse_naive_utc(row[i_created])
                except ValueError:
                    raise RecordError(f"created_at {row[i_created]!r} is not a timestamp") from None
            return (SITE, relation, antecedent, consequent, row[pos["status"]] or "unknown",
                    _int(row[pos["id"]], "id"), created)  # fmt: skip

        return convert

    return _import_table(path, kind, RELATIONS_REQUIRED, rows_of, _write_relations, settings, show_progress)


def _import_table(
    path: Path, kind: str, required: Sequence[str],
    converter: Callable[[CsvRows], Callable[[list[str]], tuple[Any, ...]]],
    write: Callable[[psycopg2.extensions.connection, list[tuple[Any, ...]]], int],
    settings: Settings | None, show_progress: bool | None,
) -> ImportReport:  # fmt: skip
    settings = settings or get_settings()
    report = ImportReport(SITE, kind, path.name)
    started = datetime.now(UTC)
    digest = progress.file_sha256(path)
    with connect(settings) as conn:
        state = progress.begin(conn, SITE, kind, digest, path.name, date_in_name(path))
        if state.finished:
            report.already_imported = True
            return report
        with open_text(path) as handle:
            rows = CsvRows(handle, required, f"{path.name} (e621 {kind} export)")
            convert = converter(rows)
            bar = progress_bar(show_progress, desc=f"import {path.name}", unit="row", unit_scale=True)
            good: list[tuple[Any, ...]] = []
            broken: list[QuarantinedRecord] = []

            def flush() -> None:
                written = write(conn, good)
                report.stored += written
                state.stored += written
                if broken:
                    quarantine(conn, SITE, f"file:{path.name}", broken)
                    report.quarantined += len(broken)
                    state.quarantined += len(broken)
                state.rows_done += len(good) + len(broken)
                progress.save(conn, state)
                conn.commit()
                bar.update(len(good) + len(broken))
                good.clear()
                broken.clear()

            for item in _after(rows, state.rows_done, report):
                try:
                    if isinstance(item, Exception):
                        raise RecordError(f"unreadable CSV ({item})")
                    if len(item) < rows.width:
                        raise RecordError(f"{len(item)} fields where the header has {rows.width}")
                    good.append(convert(item))
                except RecordError as exc:
                    raw = ",".join(item) if isinstance(item, list) else str(item)
                    broken.append(QuarantinedRecord(raw[:10_000], f"line {rows.line}: {kind} row: {exc}", None))
                if len(good) + len(broken) >= 50_000:
                    flush()
            flush()
            progress.save(conn, state, finished=True)
            conn.commit()
            bar.close()
    report.seconds = (datetime.now(UTC) - started).total_seconds()
    return report


def _write_tags(conn: psycopg2.extensions.connection, rows: list[tuple[Any, ...]]) -> int:
    if not rows:
        return 0
    latest = {row[1]: row for row in rows}
    with conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE pony_tag_stage (LIKE booru_tag_category INCLUDING DEFAULTS) ON COMMIT DROP")
        copy_rows(cur, "pony_tag_stage", ("site", "tag_id", "name", "category"), latest.values())
        cur.execute(
            """INSERT INTO booru_tag_category (site, tag_id, name, category)
               SELECT site, tag_id, name, category FROM pony_tag_stage
               ON CONFLICT (site, tag_id) DO UPDATE SET name = EXCLUDED.name, category = EXCLUDED.category,
                   fetched_at = now()
               WHERE (booru_tag_category.name, booru_tag_category.category)
                     IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.category)"""
        )
        written = cur.rowcount
        cur.execute("DROP TABLE pony_tag_stage")
    return written


def _write_relations(conn: psycopg2.extensions.connection, rows: list[tuple[Any, ...]]) -> int:
    """A pair listed twice (removed, then requested again) keeps its newest row (the highest id)."""
    if not rows:
        return 0
    latest: dict[tuple[str, str, str, str], tuple[Any, ...]] = {}
    for row in rows:
        key = row[:4]
        if key not in latest or (row[5] or 0) >= (latest[key][5] or 0):
            latest[key] = row
    columns = ("site", "kind", "antecedent", "consequent", "status", "relation_id", "created_at")
    with conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE pony_relation_stage (LIKE booru_tag_relation INCLUDING DEFAULTS) "
                    "ON COMMIT DROP")  # fmt: skip
        copy_rows(cur, "pony_relation_stage", columns, latest.values())
        cur.execute(
            """INSERT INTO booru_tag_relation (site, kind, antecedent, consequent, status, relation_id, created_at)
               SELECT site, kind, antecedent, consequent, status, relation_id, created_at FROM pony_relation_stage
               ON CONFLICT (site, kind, antecedent, consequent) DO UPDATE SET status = EXCLUDED.status,
                   relation_id = EXCLUDED.relation_id, created_at = EXCLUDED.created_at, imported_at = now()
               WHERE coalesce(EXCLUDED.relation_id, 0) >= coalesce(booru_tag_relation.relation_id, 0)
                 AND (booru_tag_relation.status, booru_tag_relation.relation_id)
                     IS DISTINCT FROM (EXCLUDED.status, EXCLUDED.relation_id)"""
        )
        written = cur.rowcount
        cur.execute("DROP TABLE pony_relation_stage")
    return written


def import_export(
    files: dict[str, Path], *, settings: Settings | None = None, exported_at: datetime | None = None,
    show_progress: bool | None = None, max_rows: int | None = None,
) -> list[ImportReport]:  # fmt: skip
    """Import the given files in the order that makes posts right: tags, aliases, implications, then posts."""
    unknown = set(files) - set(KINDS)
    if unknown:
        raise ExportFormatError(f"unknown export kind(s) {sorted(unknown)}; choose from {', '.join(KINDS)}")
    reports = []
    if "tags" in files:
        reports.append(import_tags(files["tags"], settings=settings, show_progress=show_progress))
    for kind in ("aliases", "implications"):
        if kind in files:
            reports.append(import_relations(files[kind], kind, settings=settings, show_progress=show_progress))
    if "posts" in files:
        reports.append(import_posts(files["posts"], settings=settings, exported_at=exported_at,
                                    show_progress=show_progress, stop_after_rows=max_rows))  # fmt: skip
    return reports
