"""A rate limit shared by every process, task and pod: request slots reserved on PostgreSQL (the ``rate_limit``
table, one row per limit). Each reservation moves the row's ``next_at`` on by the limit's interval in one statement
— concurrent reservations queue on the row lock — on the database server's clock, so machines whose clocks differ
still space their requests correctly; the caller sleeps until its slot. A challenge's quiet period moves ``next_at``
on for everyone, and a site's API block (``booru_site_block``, recorded by the scrape that met it) refuses every
process's next request, not only the next run's first.

:class:`pony_tasks.polite_http.RateLimiter` calls it (``slots=``) before each request; without it the limit is the
process's own."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

import psycopg2
import psycopg2.extensions


@dataclass(frozen=True)
class Slot:
    delay: float  # seconds until the reserved start (0 when it is now)
    blocked_until: datetime | None = None  # the site blocks us until then (no slot was reserved)
    block_reason: str | None = None


class DatabaseSlots:
    """Request slots of the limit ``name`` on the database at ``url`` (one autocommit connection, opened on first
    use and again after it drops; calls are serialised per instance). ``site``: the (site, base URL) whose
    ``booru_site_block`` refuses a slot."""

    def __init__(self, url: str, name: str, site: tuple[str, str] | None = None) -> None:
        self.url, self.name, self.site = url, name, site
        self._conn: psycopg2.extensions.connection | None = None
        self._lock = threading.Lock()

    def _execute(self, sql: str, params: dict) -> tuple | None:
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._conn is None or self._conn.closed:
                        self._conn = psycopg2.connect(self.url, application_name="pony-rate-limit")
                        self._conn.autocommit = True
                    with self._conn.cursor() as cur:
                        cur.execute(sql, params)
                        return cur.fetchone() if cur.description else None
                except psycopg2.OperationalError:  # the connection dropped: once more on a new one
                    if self._conn is not None:
                        self._conn.close()
                    self._conn = None
                    if attempt == 2:
                        raise
        return None

    def reserve(self, interval: float) -> Slot:
        """The next free slot, ``interval`` seconds after the one before it (or now); none while a block lasts."""
        if self.site is not None:
            block = self._execute("""SELECT blocked_until, reason FROM booru_site_block
                                     WHERE site = %(site)s AND base_url = %(base_url)s AND blocked_until > now()""",
                                  {"site": self.site[0], "base_url": self.site[1]})  # fmt: skip
            if block is not None:
                return Slot(0.0, block[0], block[1])
        row = self._execute(
            """INSERT INTO rate_limit AS r (name, next_at)
               VALUES (%(name)s, clock_timestamp() + make_interval(secs => %(interval)s))
               ON CONFLICT (name) DO UPDATE
                   SET next_at = greatest(r.next_at, clock_timestamp()) + make_interval(secs => %(interval)s)
               RETURNING greatest(0, extract(epoch FROM r.next_at - clock_timestamp()) - %(interval)s)""",
            {"name": self.name, "interval": interval},
        )
        assert row is not None
        return Slot(float(row[0]))

    def hold(self, seconds: float) -> None:
        """No request through this limit starts in the next ``seconds`` (a challenge asked for quiet)."""
        self._execute("""UPDATE rate_limit SET next_at = greatest(next_at, clock_timestamp()
                                                                   + make_interval(secs => %(seconds)s))
                         WHERE name = %(name)s""", {"name": self.name, "seconds": seconds})  # fmt: skip

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
