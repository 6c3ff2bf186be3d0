"""Connections: the external ``database_url`` if set, otherwise the embedded server.

The first connection of a process to a database checks its schema against the bundled migrations: the embedded
database is brought up to date on the spot (a fresh ``PONY_HOME`` needs no set-up step; one log line says so), an
external one that is behind stops with :class:`SchemaNotReady`, which names ``pony db upgrade`` — an operator
decides when a shared database changes, and no command ever dies on a raw ``UndefinedTable``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.extensions

from pony_tasks.config import Settings, get_settings
from pony_tasks.db.embedded import ensure_embedded_server
from pony_tasks.errors import PermanentError

logger = logging.getLogger(__name__)
_READY: set[str] = set()  # database URLs whose schema this process found current
_READY_LOCK = threading.Lock()


class SchemaNotReady(PermanentError, RuntimeError):
    """The database's schema is older than this code (an external database: run ``pony db upgrade``)."""


def database_url(settings: Settings | None = None) -> str:
    """The URL this process should use, starting the embedded server if that is the configured database."""
    settings = settings or get_settings()
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return ensure_embedded_server(settings.resolved_home)


def pending_migrations(conn: psycopg2.extensions.connection) -> list[int]:
    """Versions of bundled migrations the database has not applied."""
    from pony_tasks.db.migrations import discover

    bundled = {m.version for m in discover()}
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('pony_schema_migrations') IS NOT NULL")
        applied: set[int] = set()
        if cur.fetchone()[0]:
            cur.execute("SELECT version FROM pony_schema_migrations")
            applied = {row[0] for row in cur.fetchall()}
    if not conn.autocommit:
        conn.rollback()  # end the read-only transaction: upgrade() sets session options
    return sorted(bundled - applied)


def _ensure_schema(conn: psycopg2.extensions.connection, url: str, settings: Settings) -> None:
    with _READY_LOCK:
        if url in _READY:
            return
    behind = pending_migrations(conn)
    if behind and settings.database_url is None:
        from pony_tasks.db.migrations import upgrade

        applied = upgrade(conn)
        logger.info("embedded database at %s: applied %d migration(s) (%s) before first use",
                    settings.embedded_pgdata, len(applied), ", ".join(f"{m.version:04d}" for m in applied))  # fmt: skip
    elif behind:
        raise SchemaNotReady(
            f"the database at PONY_DATABASE_URL lacks migration(s) {', '.join(f'{v:04d}' for v in behind)} of this "
            "version of pony-pipeline: run `pony db upgrade` (it applies them in order, each in its own "
            "transaction), then retry"
        )
    with _READY_LOCK:
        _READY.add(url)


@contextmanager
def connect(
    settings_or_url: Settings | str | None = None, *, autocommit: bool = False, check_schema: bool = True
) -> Iterator[psycopg2.extensions.connection]:
    """A connection that commits when the block ends normally, rolls back on error, and is always closed.

    Given settings (not a bare URL), the first connection per database checks the schema (see the module's
    docstring); ``check_schema=False`` is for the migration commands themselves."""
    settings = None if isinstance(settings_or_url, str) else (settings_or_url or get_settings())
    url = settings_or_url if isinstance(settings_or_url, str) else database_url(settings)
    conn = psycopg2.connect(url, application_name="pony-pipeline")
    conn.autocommit = autocommit
    try:
        if settings is not None and check_schema:
            _ensure_schema(conn, url, settings)
        yield conn
        if not autocommit:
            conn.commit()
    except BaseException:
        if not autocommit and not conn.closed:
            conn.rollback()
        raise
    finally:
        conn.close()


@contextmanager
def sibling_connection(conn: psycopg2.extensions.connection) -> Iterator[psycopg2.extensions.connection]:
    """A second connection to the database of ``conn`` (same server, user, password and options), for work that
    runs beside it in another thread; committed when the block ends normally, rolled back on error, always closed.
    It does not see ``conn``'s uncommitted rows or temporary tables."""
    info = conn.info
    sibling = psycopg2.connect(**info.dsn_parameters, password=info.password or None)
    try:
        yield sibling
        sibling.commit()
    except BaseException:
        if not sibling.closed:
            sibling.rollback()
        raise
    finally:
        sibling.close()
