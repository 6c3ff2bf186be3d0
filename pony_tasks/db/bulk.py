"""Bulk writes through COPY: stream rows as CSV (encoded by the C csv module), and upsert through a staging table.

``upsert_rows`` COPYs into a temporary staging table, then runs one ``INSERT … ON CONFLICT DO UPDATE … WHERE
(changed)`` so that unchanged rows are not rewritten (no dead tuples, no WAL for them).
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql

# COPY … (FORMAT csv, NULL '\N'): the csv module (C code) does the quoting; an unquoted \N is NULL.
NULL_MARKER = "\\N"
_PLAIN_TYPES = frozenset({str, int, float, bool, datetime, date})
_UNIT_SEPARATOR = "\x1f"


def array_literal(values: Sequence[Any]) -> str:
    """A PostgreSQL array literal; a fast path for plain strings, element quoting otherwise."""
    if not values:
        return "{}"
    try:
        joined = _UNIT_SEPARATOR.join(values)
    except TypeError:
        joined = None  # not all strings
    if (
        joined is not None
        and '"' not in joined
        and "\\" not in joined
        and joined.count(_UNIT_SEPARATOR) == len(values) - 1
    ):
        return '{"' + joined.replace(_UNIT_SEPARATOR, '","') + '"}'
    parts = []
    for value in values:
        if value is None:
            parts.append("NULL")
        else:
            text = _scalar(value)
            parts.append('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(parts) + "}"


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def copy_field(value: Any) -> Any:
    """One value ready for the csv writer: None → the NULL marker, lists → arrays, dicts → JSON."""
    if value is None:
        return NULL_MARKER
    if type(value) is str and value == NULL_MARKER:
        raise ValueError(f"the text value {NULL_MARKER!r} cannot go through COPY: it reads back as NULL")
    if isinstance(value, list | tuple):
        return array_literal(value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return value


def _csv_scalar(value: Any) -> str:
    """One key value as a CSV field: numbers bare, everything else quoted (so it can never read as NULL)."""
    if value is None:
        return NULL_MARKER
    if type(value) is int or type(value) is float:
        return repr(value)
    return '"' + str(value).replace('"', '""') + '"'


class _Lines(list):
    """A file-like sink for csv.writer that keeps each row's line separately."""

    write = list.append


def encode_rows(rows: Iterable[Sequence[Any]], width: int, first_index: int = 0) -> list[str]:
    """Each row as one CSV line (newline-terminated) ready for COPY; raises ValueError naming a bad row."""
    plain, marker = _PLAIN_TYPES, NULL_MARKER
    prepared = []
    for index, row in enumerate(rows, start=first_index):
        if len(row) != width:
            raise ValueError(f"row {index} has {len(row)} values, expected {width}")
        prepared.append([v if type(v) in plain and v != marker else copy_field(v) for v in row])
    lines = _Lines()
    csv.writer(lines, lineterminator="\n").writerows(prepared)
    for offset, line in enumerate(lines):
        if "\x00" in line:
            raise ValueError(f"row {first_index + offset} holds a NUL character, which PostgreSQL text cannot store")
    return lines


class _LineStream(io.TextIOBase):
    """A read-only file over CSV lines produced lazily in chunks, so COPY streams without holding everything."""

    def __init__(self, chunks: Iterator[list[str]]) -> None:
        self._chunks = chunks
        self._buffer = ""
        self.count = 0
        self.error: Exception | None = None  # psycopg2 wraps errors raised in read(); keep the original

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> str:
        try:
            while size < 0 or len(self._buffer) < size:
                lines = next(self._chunks, None)
                if lines is None:
                    break
                self.count += len(lines)
                self._buffer += "".join(lines)
        except Exception as exc:
            self.error = exc
            raise
        if size < 0:
            out, self._buffer = self._buffer, ""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


def _copy_statement(cur: psycopg2.extensions.cursor, table: str, columns: Sequence[str]) -> str:
    return sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, NULL {})").format(
        sql.Identifier(*table.split(".")), sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Literal(NULL_MARKER)
    ).as_string(cur)


def _copy_stream(cur: psycopg2.extensions.cursor, table: str, columns: Sequence[str], stream: _LineStream) -> int:
    try:
        cur.copy_expert(_copy_statement(cur, table, columns), stream, size=1 << 18)
    except psycopg2.Error:
        if stream.error is not None:
            raise stream.error from None
        raise
    return stream.count


def copy_rows(
    cur: psycopg2.extensions.cursor, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> int:
    """COPY ``rows`` into ``table(columns)``, encoding 5,000 rows at a time; returns the number of rows sent."""
    iterator = iter(rows)

    def chunks() -> Iterator[list[str]]:
        sent = 0
        while batch := list(itertools.islice(iterator, 5000)):
            yield encode_rows(batch, len(columns), sent)
            sent += len(batch)

    return _copy_stream(cur, table, columns, _LineStream(chunks()))


def copy_lines(cur: psycopg2.extensions.cursor, table: str, columns: Sequence[str], lines: Sequence[str]) -> int:
    """COPY lines already encoded by :func:`encode_rows`."""
    return _copy_stream(cur, table, columns, _LineStream(lines[i : i + 5000] for i in range(0, len(lines), 5000)))


def copy_text(cur: psycopg2.extensions.cursor, table: str, columns: Sequence[str], text: str) -> None:
    """COPY CSV text already encoded (whole lines, as :func:`copy_lines` takes them, in one string)."""
    cur.copy_expert(_copy_statement(cur, table, columns), io.StringIO(text), size=1 << 20)


@dataclass(frozen=True)
class UpsertResult:
    inserted: int
    updated: int
    unchanged: int

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.unchanged


def upsert_rows(
    conn: psycopg2.extensions.connection,
    table: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    key_columns: Sequence[str],
    *,
    update_columns: Sequence[str] | None = None,
    digest_column: str | None = None,
) -> UpsertResult:
    """Insert new rows and update changed ones; rows whose values did not change are not rewritten.

    Rows are deduplicated by key first (later rows win). With ``digest_column`` (a text column of ``table``), each
    row's md5 is stored there and compared first: only new or changed rows are sent in full, which makes
    re-ingesting unchanged data cheap. Runs in the caller's transaction.
    """
    missing = [k for k in key_columns if k not in columns]
    if missing:
        raise ValueError(f"key columns {missing} are not among the upserted columns {list(columns)}")
    key_positions = [columns.index(k) for k in key_columns]
    latest: dict[tuple, Sequence[Any]] = {}
    for row in rows:
        latest[tuple(row[i] for i in key_positions)] = row
    lines = encode_rows(list(latest.values()), len(columns))
    return upsert_lines(
        conn, table, columns, list(latest), lines, key_columns, update_columns=update_columns,
        digest_column=digest_column,
    )  # fmt: skip


def upsert_lines(
    conn: psycopg2.extensions.connection,
    table: str,
    columns: Sequence[str],
    keys: Sequence[tuple],
    lines: Sequence[str],
    key_columns: Sequence[str],
    *,
    update_columns: Sequence[str] | None = None,
    digest_column: str | None = None,
) -> UpsertResult:
    """:func:`upsert_rows` for rows already encoded as COPY CSV lines (one per distinct key, ``keys[i]`` being
    line i's key values) — for hot paths with an encoder of their own."""
    if len(keys) != len(lines):
        raise ValueError(f"{len(keys)} keys for {len(lines)} lines")
    write_columns = list(columns)
    with conn.cursor() as cur:
        if not digest_column:
            inserted, updated = _insert_or_update(cur, table, write_columns, key_columns, update_columns, lines, None)
            return UpsertResult(inserted=inserted, updated=updated, unchanged=len(keys) - inserted - updated)
        digests = [hashlib.md5(line.encode()).hexdigest() for line in lines]
        changed = _changed_positions(cur, table, key_columns, keys, digests, digest_column)
        write_columns.append(digest_column)
        new_lines = [lines[i][:-1] + "," + digests[i] + "\n" for i, is_new in changed if is_new]
        old_lines = [lines[i][:-1] + "," + digests[i] + "\n" for i, is_new in changed if not is_new]
        inserted = _copy_new_rows(cur, table, write_columns, new_lines)
        if inserted is None:  # another writer added some of these keys meanwhile: take the careful path
            old_lines, inserted = old_lines + new_lines, 0
        more, updated = _insert_or_update(
            cur, table, write_columns, key_columns, update_columns, old_lines, digest_column
        )
    inserted += more
    return UpsertResult(inserted=inserted, updated=updated, unchanged=len(keys) - inserted - updated)


def _copy_new_rows(
    cur: psycopg2.extensions.cursor, table: str, columns: Sequence[str], lines: Sequence[str]
) -> int | None:
    """COPY rows whose keys were absent straight into the table (no staging); None if a key appeared meanwhile."""
    if not lines:
        return 0
    cur.execute("SAVEPOINT pony_copy_new")
    try:
        copy_lines(cur, table, columns, lines)
    except psycopg2.errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT pony_copy_new")
        return None
    cur.execute("RELEASE SAVEPOINT pony_copy_new")
    return len(lines)


def _changed_positions(
    cur: psycopg2.extensions.cursor,
    table: str,
    key_columns: Sequence[str],
    keys: Sequence[tuple],
    digests: Sequence[str],
    digest_column: str,
) -> list[tuple[int, bool]]:
    """(position, is new) of rows that are new or whose digest differs from the stored one."""
    ident = sql.Identifier(*table.split("."))
    key_list = sql.SQL(", ").join(map(sql.Identifier, key_columns))
    cur.execute(
        sql.SQL(
            "CREATE TEMP TABLE pony_stage_keys ON COMMIT DROP AS SELECT 0::int AS pony_position, {keys}, {digest} "
            "FROM {table} WITH NO DATA"
        ).format(keys=key_list, digest=sql.Identifier(digest_column), table=ident)
    )
    key_lines = [f"{i},{','.join(map(_csv_scalar, key))},{digests[i]}\n" for i, key in enumerate(keys)]
    copy_lines(cur, "pony_stage_keys", ["pony_position", *key_columns, digest_column], key_lines)
    join = sql.SQL(" AND ").join(sql.SQL("t.{k} = s.{k}").format(k=sql.Identifier(k)) for k in key_columns)
    # Probe the key index once per staged row: cost follows the batch, not the table (a hash join would scan the
    # whole table for every batch, which grows without bound as the table does).
    cur.execute("SET LOCAL enable_hashjoin = off")
    cur.execute("SET LOCAL enable_mergejoin = off")
    cur.execute(
        sql.SQL(
            "SELECT s.pony_position, t.ctid IS NULL FROM pony_stage_keys s LEFT JOIN {table} t ON {join} "
            "WHERE t.{digest} IS DISTINCT FROM s.{digest} ORDER BY 1"
        ).format(table=ident, join=join, digest=sql.Identifier(digest_column))
    )
    positions = [(row[0], row[1]) for row in cur.fetchall()]
    cur.execute("RESET enable_hashjoin")
    cur.execute("RESET enable_mergejoin")
    cur.execute("DROP TABLE pony_stage_keys")
    return positions


def _insert_or_update(
    cur: psycopg2.extensions.cursor,
    table: str,
    columns: Sequence[str],
    key_columns: Sequence[str],
    update_columns: Sequence[str] | None,
    lines: Sequence[str],
    digest_column: str | None,
) -> tuple[int, int]:
    if not lines:
        return 0, 0
    ident = sql.Identifier(*table.split("."))
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    keys = sql.SQL(", ").join(map(sql.Identifier, key_columns))
    cur.execute(
        sql.SQL("CREATE TEMP TABLE pony_stage ON COMMIT DROP AS SELECT {cols} FROM {table} WITH NO DATA").format(
            cols=cols, table=ident
        )
    )
    copy_lines(cur, "pony_stage", columns, lines)
    targets = [c for c in (update_columns or columns) if c not in key_columns]
    if digest_column and digest_column not in targets:
        targets.append(digest_column)
    if targets:
        compared = [digest_column] if digest_column else targets
        conflict = sql.SQL("DO UPDATE SET ({targets}) = ROW({new}) WHERE ({old}) IS DISTINCT FROM ({cmp_new})").format(
            targets=sql.SQL(", ").join(map(sql.Identifier, targets)),
            new=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in targets),
            old=sql.SQL(", ").join(sql.SQL("{}.{}").format(ident, sql.Identifier(c)) for c in compared),
            cmp_new=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in compared),
        )
    else:
        conflict = sql.SQL("DO NOTHING")
    cur.execute(
        sql.SQL(
            """WITH written AS (
                   INSERT INTO {table} ({cols}) SELECT {cols} FROM pony_stage
                   ON CONFLICT ({keys}) {conflict}
                   RETURNING (xmax = 0) AS inserted
               )
               SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written"""
        ).format(table=ident, cols=cols, keys=keys, conflict=conflict)
    )
    inserted, updated = cur.fetchone()
    cur.execute("DROP TABLE pony_stage")
    return inserted, updated


BULK_WORK_MEM = "256MB"


def raise_work_mem(cur: psycopg2.extensions.cursor) -> None:
    """``work_mem`` for the rest of this transaction: the sorts and hashes of million-row statements stay in memory
    (normalisation, caption regeneration).

    Each sort or hash node of a statement may take ``work_mem`` in the backend and in each parallel worker, a hash
    node ``hash_mem_multiplier`` times it (2 by default since PostgreSQL 15): the statement that builds the caption
    source reached 2.7 GiB of server memory at 10M posts with the default. A multiplier of 1 keeps a hash node to
    ``work_mem``; what does not fit spills to temp files, as a sort does."""
    cur.execute("SET LOCAL work_mem = %s", (BULK_WORK_MEM,))
    cur.execute("SET LOCAL hash_mem_multiplier = 1")


@contextmanager
def foreign_keys_checked_once(cur: psycopg2.extensions.cursor, table: str) -> Iterator[None]:
    """Inside: ``table``'s foreign keys dropped; on leaving, added back as they were — each checked by one join over
    the whole table instead of a trigger per row written (PostgreSQL's advice for loading much data: "Remove
    Foreign Key Constraints"). In the caller's transaction, so a failure (a row the check refuses included) rolls
    the drop back with everything else. It locks ``table`` and the tables it references (``image``: downloads that
    add images wait) until the transaction ends: for writes of a large share of a table, such as a first build."""
    cur.execute("""SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
                   WHERE conrelid = %s::regclass AND contype = 'f' ORDER BY conname""", (table,))  # fmt: skip
    keys = cur.fetchall()
    for name, _ in keys:
        cur.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(sql.Identifier(table), sql.Identifier(name)))
    yield
    for name, definition in keys:
        cur.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(sql.Identifier(table), sql.Identifier(name))
                    + sql.SQL(definition))  # fmt: skip
