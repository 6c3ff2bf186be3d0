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
                    details=[f.describe() for f in report.warnings]))  # fmt: skip (describe() names the page)
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
    """The candidate version trained since ``since`` (the run's start): its id, held-out metrics and a sentence a
    person approving it can read."""
    with connect(settings or get_settings()) as conn, conn.cursor() as cur:
        cur.execute("""SELECT m.version_id, m.metrics, m.training_images,
                              (SELECT count(*) FROM aesthetic_heldout h WHERE h.version_id = m.version_id)
                       FROM aesthetic_model m WHERE m.status = 'candidate' AND m.created_at >= %s
                       ORDER BY m.version_id DESC LIMIT 1""", (since,))  # fmt: skip
        row = cur.fetchone()
    if row is None:
        raise LookupError(f"no candidate aesthetic version was trained since {since:%Y-%m-%d %H:%M:%S}")
    version_id, stored, training_images, heldout = row
    metrics = {k: stored.get(k) for k in ("spearman", "pearson", "mae", "pairwise_accuracy")}
    metrics["heldout_images"] = heldout

    def fmt(key: str) -> str:
        return "n/a" if metrics[key] is None else f"{metrics[key]:.3f}"

    summary = (f"Version {version_id} was trained on {training_images} rated images and tested on {heldout} "
               f"held-out images: Spearman {fmt('spearman')}, Pearson {fmt('pearson')}, MAE {fmt('mae')} "
               f"(0..1 scale), pairwise accuracy {fmt('pairwise_accuracy')}. Promotion still refuses it if it is "
               "worse than the active version on the same held-out images.")  # fmt: skip
    return {"version_id": version_id, "metrics": metrics, "summary": summary}


def promote_version(version_id: int, settings: Settings | None = None, override_reason: str | None = None) -> str:
    """Promote ``version_id`` (refused when worse than the active version on the same held-out images); returns a
    sentence saying what happened, with the held-out comparison."""
    from pony_tasks.aesthetic.registry import promote
    from pony_tasks.storage import open_store

    settings = settings or get_settings()
    with connect(settings) as conn:
        comparison = promote(conn, open_store(settings=settings), version_id, override_reason)

    def spearman(metrics: dict | None) -> str:
        value = (metrics or {}).get("spearman")
        return "n/a" if value is None else f"{value:.3f}"

    text = (f"aesthetic version {version_id} is now active: Spearman {spearman(comparison.get('candidate'))} on "
            f"{comparison.get('heldout_images')} held-out images")  # fmt: skip
    if comparison.get("active"):
        text += f" (the version it replaced: {spearman(comparison['active'])} on the same images)"
    return text + (f"; override: {override_reason}" if override_reason else "")


def active_caption_set(settings: Settings | None = None) -> int | None:
    from pony_tasks.captions.sets import active_set

    with connect(settings or get_settings()) as conn:
        return active_set(conn)


def style_version_to_activate(cluster_output: str, settings: Settings | None = None) -> int | None:
    """The style clustering a `pony styles run` named in its last line, or None when it is already the active one
    (the same input was clustered before: nothing new for captions)."""
    import re

    from pony_tasks.styles import active_version

    match = re.search(r"style clustering v(\d+)", cluster_output or "")
    if match is None:
        raise ValueError(f"`pony styles run` did not name a version: {cluster_output!r}")
    with connect(settings or get_settings()) as conn:
        active = active_version(conn)
    version = int(match.group(1))
    return None if version == active else version


def activate_style_version(version_id: int, settings: Settings | None = None) -> str:
    from pony_tasks.styles.registry import activate

    with connect(settings or get_settings()) as conn:
        version = activate(conn, version_id)
    return (f"style clustering v{version_id} is now active: {version.clusters} clusters of {version.images} images"
            f"{version.kept()}")  # fmt: skip
