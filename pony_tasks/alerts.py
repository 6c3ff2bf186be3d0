"""Alerts: what went wrong, recorded to the log and to ``PONY_HOME/alerts.jsonl`` (the always-on channel).

Slack and SMTP delivery happen in Airflow through its notifiers (:mod:`pony_airflow.notifiers`); this
module is the channel that needs nothing and that tests and the demo read back.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pony_tasks.config import Settings, get_settings

log = logging.getLogger("pony.alerts")


@dataclass(frozen=True)
class Alert:
    subject: str
    body: str
    severity: str = "error"  # error: a task failed; warning: data-quality warnings, work went on
    details: list[str] = field(default_factory=list)  # e.g. each failed expectation
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def text(self) -> str:
        lines = [f"[pony {self.severity}] {self.subject}", self.body, *(f"  - {d}" for d in self.details)]
        return "\n".join(line for line in lines if line)


def alerts_file(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).resolved_home / "alerts.jsonl"


def record_alert(alert: Alert, settings: Settings | None = None) -> None:
    """Log the alert and append it to the alerts file (one JSON object per line)."""
    (log.warning if alert.severity == "warning" else log.error)(alert.text())
    path = alerts_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(asdict(alert), ensure_ascii=False) + "\n")


def read_alerts(settings: Settings | None = None) -> list[Alert]:
    path = alerts_file(settings)
    if not path.exists():
        return []
    return [Alert(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
