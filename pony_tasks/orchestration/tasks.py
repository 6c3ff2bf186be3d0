"""Light work that runs inside the Airflow worker (checks, lookups, promotion); no Airflow imports here."""

from __future__ import annotations

from datetime import datetime

from pony_tasks.alerts import Alert
from pony_tasks.config import Settings, get_settings
from pony_tasks.db import connect


def quality_gate(suite: str, *, settings: Settings | None = None, alert=None, **batch) -> str:
    """Run a suite: warnings are alerted and work goes on; blocking failures raise DataQualityError (the task
    fails, its failure callback alerts with the failed expectations, downstream tasks do not run)."""
    from pony_tasks.quality.checks import run_check

    settings = settings or get_settings()
    report = run_check(suite, settings=settings, **batch)
    if report.warnings and not report.blocking and alert is not None:
        alert(Alert(subject=f"data-quality warnings in {suite}", body=report.describe(), severity="warning",
                    details=[f.describe() for f in report.warnings]))  # fmt: skip
    report.raise_for_blocking()
    return report.describe()


def active_aesthetic_version(settings: Settings | None = None) -> int | None:
    with connect(settings or get_settings()) as conn, conn.cursor() as cur:
        cur.execute("SELECT version_id FROM aesthetic_model WHERE status = 'active'")
        row = cur.fetchone()
    return row[0] if row else None


def embedding_model_id(name: str, settings: Settings | None = None) -> int | None:
    """The newest registered embedding model of this open_clip name that has embeddings."""
    with connect(settings or get_settings()) as conn, conn.cursor() as cur:
        cur.execute("""SELECT m.model_id FROM embedding_model m WHERE m.name = %s
                       AND EXISTS (SELECT 1 FROM embedding_shard s WHERE s.model_id = m.model_id)
                       ORDER BY m.model_id DESC LIMIT 1""", (name,))  # fmt: skip
        row = cur.fetchone()
    return row[0] if row else None


def newest_candidate(since: datetime, settings: Settings | None = None) -> dict:
    """The candidate version trained since ``since`` (the run's start), with its held-out metrics."""
    with connect(settings or get_settings()) as conn, conn.cursor() as cur:
        cur.execute("""SELECT version_id, metrics FROM aesthetic_model WHERE status = 'candidate' AND created_at >= %s
                       ORDER BY version_id DESC LIMIT 1""", (since,))  # fmt: skip
        row = cur.fetchone()
    if row is None:
        raise LookupError(f"no candidate aesthetic version was trained since {since:%Y-%m-%d %H:%M:%S}")
    metrics = {k: row[1].get(k) for k in ("spearman", "pearson", "mae", "pairwise_accuracy", "heldout_images")}
    return {"version_id": row[0], "metrics": metrics}


def promote_version(version_id: int, settings: Settings | None = None, override_reason: str | None = None) -> dict:
    from pony_tasks.aesthetic.registry import promote
    from pony_tasks.storage import open_store

    settings = settings or get_settings()
    with connect(settings) as conn:
        return promote(conn, open_store(settings=settings), version_id, override_reason)


def active_caption_set(settings: Settings | None = None) -> int | None:
    from pony_tasks.captions.sets import active_set

    with connect(settings or get_settings()) as conn:
        return active_set(conn)
