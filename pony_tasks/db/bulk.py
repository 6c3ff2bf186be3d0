"""Bulk writes through COPY: stream rows in PostgreSQL's text format, and upsert through a staging table.

``upsert_rows`` COPYs into a temporary staging table, then runs one ``INSERT … ON CONFLICT DO UPDATE … WHERE
(changed)`` so that unchanged rows are not rewritten (no dead tuples, no WAL for them).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

_TEXT_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NULL = "\\N"


def _array_literal(values: Sequence[Any]) -> str:
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
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (dict,)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def copy_field(value: Any) -> str:
    """One value in COPY text format: lists become arrays, dicts JSON, None ``\\N``."""
    if value is None:
        return _NULL
    if isinstance(value, (list, tuple)):
        text = _array_literal(value)
    else:
        text = _scalar(value)
    if "\x00" in text:
        raise ValueError(f"NUL character in value {text[:40]!r}: PostgreSQL text cannot hold it")
    return text.translate(_TEXT_ESCAPES)


class _RowStream(io.TextIOBase):
    """A read-only file over rows, encoded lazily, so COPY streams without building the whole payload."""

    def __init__(self, rows: Iterable[Sequence[Any]], width: int) -> None:
        self._rows: Iterator[Sequence[Any]] = iter(rows)
        self._width = width
        self._buffer = ""
        self.count = 0
        self.error: Exception | None = None  # psycopg2 wraps errors raised in read(); keep the original

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> str:
        try:
            return self._read(size)
        except Exception as exc:
            self.error = exc
            raise

    def _read(self, size: int) -> str:
        while size < 0 or len(self._buffer) < size:
            chunk = []
            for row in self._rows:
                if len(row) != self._width:
                    raise ValueError(f"row {self.count} has {len(row)} values, expected {self._width}")
                chunk.append("\t".join(copy_field(v) for v in row))
                self.count += 1
                if len(chunk) >= 1000:
                    break
            if not chunk:
                break
            self._buffer += "\n".join(chunk) + "\n"
        if size < 0:
            out, self._buffer = self._buffer, ""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


def copy_rows(
    cur: psycopg2.extensions.cursor, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> int:
    """COPY ``rows`` into ``table(columns)``; returns the number of rows sent."""
    stream = _RowStream(rows, len(columns))
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(*table.split(".")), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    try:
        cur.copy_expert(statement.as_string(cur), stream, size=1 << 18)
    except psycopg2.Error:
        if stream.error is not None:
            raise stream.error from None
        raise
    return stream.count


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
) -> UpsertResult:
    """Insert new rows and update changed ones in one statement; rows whose values did not change are left alone.

    Within one batch, later rows with the same key win. Runs in the caller's transaction.
    """
    missing = [k for k in key_columns if k not in columns]
    if missing:
        raise ValueError(f"key columns {missing} are not among the upserted columns {list(columns)}")
    update_columns = [c for c in (update_columns or columns) if c not in key_columns]
    ident = sql.Identifier(*table.split("."))
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    keys = sql.SQL(", ").join(map(sql.Identifier, key_columns))
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("CREATE TEMP TABLE pony_stage ON COMMIT DROP AS SELECT {cols} FROM {table} WITH NO DATA").format(
                cols=cols, table=ident
            )
        )
        cur.execute("ALTER TABLE pony_stage ADD COLUMN pony_seq bigserial")
        copy_rows(cur, "pony_stage", columns, rows)
        if update_columns:
            targets = sql.SQL(", ").join(map(sql.Identifier, update_columns))
            conflict = sql.SQL("DO UPDATE SET ({targets}) = ROW({new}) WHERE ({old}) IS DISTINCT FROM ({new})").format(
                targets=targets,
                new=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in update_columns),
                old=sql.SQL(", ").join(sql.SQL("{}.{}").format(ident, sql.Identifier(c)) for c in update_columns),
            )
        else:
            conflict = sql.SQL("DO NOTHING")
        cur.execute(
            sql.SQL(
                """WITH written AS (
                       INSERT INTO {table} ({cols})
                       SELECT DISTINCT ON ({keys}) {cols} FROM pony_stage ORDER BY {keys}, pony_seq DESC
                       ON CONFLICT ({keys}) {conflict}
                       RETURNING (xmax = 0) AS inserted
                   )
                   SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted),
                          (SELECT count(DISTINCT ({keys})) FROM pony_stage)
                   FROM written"""
            ).format(table=ident, cols=cols, keys=keys, conflict=conflict)
        )
        inserted, updated, distinct = cur.fetchone()
        cur.execute("DROP TABLE pony_stage")
    return UpsertResult(inserted=inserted, updated=updated, unchanged=distinct - inserted - updated)
