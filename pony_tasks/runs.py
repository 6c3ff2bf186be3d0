"""The ``pipeline_run`` registry: each stage run with its parameters, status and summary."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg2.extensions


@dataclass
class RunRecord:
    run_id: int
    stage: str
    summary: dict[str, Any] = field(default_factory=dict)


@contextmanager
def recorded_run(
    conn: psycopg2.extensions.connection, stage: str, parameters: dict[str, Any] | None = None
) -> Iterator[RunRecord]:
    """Record a stage run: 'running' now (committed at once), then 'succeeded' with the summary, or 'failed'."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO pipeline_run (stage, parameters) VALUES (%s, %s) RETURNING run_id",
            (stage, json.dumps(parameters or {}, default=str)),
        )
        run = RunRecord(run_id=cur.fetchone()[0], stage=stage)
    conn.commit()
    try:
        yield run
    except BaseException as exc:
        conn.rollback()
        with conn.cursor() as cur:
            cur.execute(
                "UPDATE pipeline_run SET status = 'failed', finished_at = now(), error = %s WHERE run_id = %s",
                (f"{type(exc).__name__}: {exc}"[:4000], run.run_id),
            )
        conn.commit()
        raise
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE pipeline_run SET status = 'succeeded', finished_at = now(), summary = %s WHERE run_id = %s",
            (json.dumps(run.summary, default=str), run.run_id),
        )
    conn.commit()
