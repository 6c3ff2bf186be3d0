"""Versioned SQL migrations: ``migrations/NNNN_name.sql``, applied in order, each in its own transaction.

A migration and the row recording it commit together, so a killed upgrade leaves the database exactly at the previous
version (PostgreSQL DDL is transactional). An advisory lock serialises concurrent upgrades. Applied files are
checksummed; editing one after it shipped is refused — add a new migration instead. Statements that cannot run inside
a transaction (``CREATE INDEX CONCURRENTLY``) are therefore not allowed in migration files.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg2.extensions

from pony_tasks.errors import PermanentError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_FILE_PATTERN = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x706F6E79  # "pony"
_HISTORY_TABLE = "pony_schema_migrations"


class MigrationError(PermanentError, RuntimeError):
    """The migration files or the recorded history are inconsistent; the message says which file."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class MigrationState:
    version: int
    name: str
    applied_at: datetime | None
    checksum_matches: bool | None  # None while not applied


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_PATTERN.match(path.name)
        if not match:
            raise MigrationError(f"migration file {path} must be named NNNN_lower_snake_name.sql")
        migrations.append(Migration(int(match.group(1)), match.group(2), path))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files in {directory} share a version number")
    return migrations


def _prepare(conn: psycopg2.extensions.connection) -> None:
    conn.autocommit = False
    with conn.cursor() as cur:
        # Notice a killed client within a second, so its open transaction (and lock) is rolled back promptly.
        cur.execute("SET client_connection_check_interval = '1s'")
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        cur.execute(
            f"""CREATE TABLE IF NOT EXISTS {_HISTORY_TABLE} (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )"""
        )
    conn.commit()


def _applied(conn: psycopg2.extensions.connection) -> dict[int, tuple[str, str, datetime]]:
    with conn.cursor() as cur:
        cur.execute(f"SELECT version, name, checksum, applied_at FROM {_HISTORY_TABLE}")
        return {row[0]: (row[1], row[2], row[3]) for row in cur.fetchall()}


def _check_history(migrations: list[Migration], applied: dict[int, tuple[str, str, datetime]]) -> None:
    known = {m.version: m for m in migrations}
    for version, (name, checksum, _) in sorted(applied.items()):
        migration = known.get(version)
        if migration is None:
            raise MigrationError(
                f"database has migration {version:04d}_{name} that this code does not know; "
                "it was made by a newer version of pony-pipeline — upgrade the code"
            )
        if migration.checksum != checksum:
            raise MigrationError(
                f"migration {migration.path.name} was edited after it was applied; "
                "restore the file and add a new migration for the change"
            )


def upgrade(conn: psycopg2.extensions.connection, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply every pending migration; returns those applied (empty when already up to date)."""
    migrations = discover(directory)
    _prepare(conn)
    _check_history(migrations, _applied(conn))
    done: list[Migration] = []
    for migration in migrations:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            cur.execute(f"SELECT 1 FROM {_HISTORY_TABLE} WHERE version = %s", (migration.version,))
            if cur.fetchone() is not None:
                conn.rollback()
                continue
            try:
                cur.execute(migration.sql)
            except psycopg2.Error as exc:
                conn.rollback()
                raise MigrationError(f"migration {migration.path.name} failed and was rolled back: {exc}") from exc
            cur.execute(
                f"INSERT INTO {_HISTORY_TABLE} (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
        conn.commit()
        done.append(migration)
    return done


def migration_status(conn: psycopg2.extensions.connection, directory: Path = MIGRATIONS_DIR) -> list[MigrationState]:
    """Every known migration with when it was applied (or None) and whether the file still matches."""
    migrations = discover(directory)
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (_HISTORY_TABLE,))
        exists = cur.fetchone()[0] is not None
    applied = _applied(conn) if exists else {}
    conn.rollback()
    return [
        MigrationState(
            m.version,
            m.name,
            applied[m.version][2] if m.version in applied else None,
            (applied[m.version][1] == m.checksum) if m.version in applied else None,
        )
        for m in migrations
    ]
