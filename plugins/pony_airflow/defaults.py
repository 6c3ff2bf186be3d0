"""What every pipeline DAG shares: owner, retries, the failure alert, tags."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

OWNER = "pony-pipeline"
START_DATE = datetime(2026, 1, 1)
GPU_POOL = "gpu"


def default_args(retries: int = 2) -> dict[str, Any]:
    from pony_airflow.notifiers import PonyAlertNotifier

    return {
        "owner": OWNER,
        "retries": retries,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
        "on_failure_callback": [PonyAlertNotifier()],
    }


def dag_kwargs(doc_md: str, tags: list[str], **extra: Any) -> dict[str, Any]:
    """Keyword arguments for ``DAG(...)``/``@dag``: documentation, tags, defaults, one active run at a time."""
    return {"doc_md": doc_md, "tags": ["pony", *tags], "default_args": default_args(), "start_date": START_DATE,
            "catchup": False, "max_active_runs": 1, **extra}  # fmt: skip
