"""Connections: the external ``database_url`` if set, otherwise the embedded server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.extensions

from pony_tasks.config import Settings, get_settings
from pony_tasks.db.embedded import ensure_embedded_server


def database_url(settings: Settings | None = None) -> str:
    """The URL this process should use, starting the embedded server if that is the configured database."""
    settings = settings or get_settings()
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return ensure_embedded_server(settings.resolved_home)


@contextmanager
def connect(
    settings_or_url: Settings | str | None = None, *, autocommit: bool = False
) -> Iterator[psycopg2.extensions.connection]:
    """A connection that commits when the block ends normally, rolls back on error, and is always closed."""
    url = settings_or_url if isinstance(settings_or_url, str) else database_url(settings_or_url)
    conn = psycopg2.connect(url, application_name="pony-pipeline")
    conn.autocommit = autocommit
    try:
        yield conn
        if not autocommit:
            conn.commit()
    except BaseException:
        if not autocommit and not conn.closed:
            conn.rollback()
        raise
    finally:
        conn.close()
