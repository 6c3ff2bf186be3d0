"""Per-file import progress (``booru_import``): a file is known by its SHA-256, so a killed import continues after the
rows it committed and a file imported twice is recognised and skipped."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg2.extensions


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class ImportState:
    site: str
    kind: str
    file_sha256: str
    file_name: str
    exported_at: datetime | None
    rows_done: int = 0
    stored: int = 0
    quarantined: int = 0
    kept_newer: int = 0
    finished: bool = False


def begin(
    conn: psycopg2.extensions.connection, site: str, kind: str, digest: str, name: str, exported_at: datetime | None
) -> ImportState:
    """The file's progress row, created if new (committed by the caller with the first chunk)."""
    with conn.cursor() as cur:
        cur.execute(
            """INSERT INTO booru_import (site, kind, file_sha256, file_name, exported_at)
               VALUES (%s, %s, %s, %s, %s) ON CONFLICT (site, kind, file_sha256) DO NOTHING""",
            (site, kind, digest, name, exported_at),
        )
        cur.execute(
            """SELECT exported_at, rows_done, stored, quarantined, kept_newer, finished_at IS NOT NULL
               FROM booru_import WHERE site = %s AND kind = %s AND file_sha256 = %s""",
            (site, kind, digest),
        )
        exported, rows_done, stored, quarantined, kept, finished = cur.fetchone()
    conn.commit()
    return ImportState(site, kind, digest, name, exported or exported_at, rows_done, stored, quarantined, kept,
                       finished)  # fmt: skip


def save(conn: psycopg2.extensions.connection, state: ImportState, *, finished: bool = False) -> None:
    """Progress in the caller's transaction: committed together with the rows it counts."""
    with conn.cursor() as cur:
        cur.execute(
            """UPDATE booru_import SET rows_done = %s, stored = %s, quarantined = %s, kept_newer = %s,
                   updated_at = now(), finished_at = CASE WHEN %s THEN now() ELSE finished_at END
               WHERE site = %s AND kind = %s AND file_sha256 = %s""",
            (state.rows_done, state.stored, state.quarantined, state.kept_newer, finished, state.site, state.kind,
             state.file_sha256),
        )  # fmt: skip
    state.finished = state.finished or finished
