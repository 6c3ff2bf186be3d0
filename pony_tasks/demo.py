"""``pony demo``: every pipeline stage that exists so far, end to end on the embedded defaults.

Today (foundation): start the embedded PostgreSQL, migrate it, round-trip an object through storage and record the
run in ``pipeline_run``. Each later stage adds its step here.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pony_tasks.config import Settings
from pony_tasks.db import connect, database_url, migration_status, upgrade
from pony_tasks.runs import recorded_run
from pony_tasks.storage import open_store


@dataclass
class DemoReport:
    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.lines.append(line)


def run_demo(settings: Settings, echo: Callable[[str], None] = print) -> DemoReport:
    report = DemoReport()

    def step(text: str) -> None:
        report.add(text)
        echo(text)

    started = time.perf_counter()
    url = database_url(settings)
    where = "external server" if settings.database_url else f"embedded PostgreSQL at {settings.embedded_pgdata}"
    step(f"[db]       using {where} ({time.perf_counter() - started:.1f} s)")

    with connect(url) as conn:
        applied = upgrade(conn)
        states = migration_status(conn)
        step(
            f"[db]       migrations: {len(applied)} applied now, "
            f"{sum(s.applied_at is not None for s in states)}/{len(states)} in place"
        )
        with recorded_run(conn, "demo", {"storage_url": settings.effective_storage_url}) as run:
            store = open_store(settings=settings)
            payload = os.urandom(256 * 1024)
            key = f"demo/roundtrip-{run.run_id}.bin"
            store.put_bytes(key, payload)
            same = hashlib.sha256(store.get_bytes(key)).digest() == hashlib.sha256(payload).digest()
            store.delete(key)
            if not same:
                raise RuntimeError(f"object {key} came back different from what was stored in {store.url}")
            step(f"[storage]  round-tripped 256 KiB through {store.url} (sha256 verified, then deleted)")
            run.summary = {"roundtrip_bytes": len(payload)}
        step(f"[runs]     recorded as pipeline_run {run.run_id}")
    step(f"[done]     demo finished in {time.perf_counter() - started:.1f} s")
    return report
