"""The failure/data-quality notifier every DAG uses: always the log + alerts file, plus Slack and SMTP through
Airflow's own notifiers when ``alert_channels`` names them (connections ``alert_slack_conn_id``,
``alert_smtp_conn_id``)."""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import BaseNotifier
from airflow.sdk.exceptions import AirflowFailException

from pony_tasks.alerts import Alert, record_alert
from pony_tasks.config import Settings, get_settings

log = logging.getLogger(__name__)


def data_docs_url(docs_path: str, docs_page: str | None = None) -> str:
    """The page a person opens for a Data Docs result: through the Airflow UI (``[api] base_url``, the plugin's
    ``/pony/quality-docs/…``, behind the login), which serves it from the object store (``docs_page``, published by
    the check wherever it ran) or this PONY_HOME's site; the file path itself when it is neither."""
    from pathlib import Path

    from airflow.configuration import conf

    from pony_tasks.quality.checks import data_docs_index

    base = (conf.get("api", "base_url", fallback="") or "http://localhost:8080").rstrip("/")
    if docs_page:
        return f"{base}/pony/quality-docs/{docs_page}"
    try:
        relative = Path(docs_path).resolve().relative_to(data_docs_index().parent.resolve())
    except ValueError:
        return docs_path
    return f"{base}/pony/quality-docs/{relative.as_posix()}"


def alert_from_context(context: Any) -> Alert:
    """An alert naming the DAG, task, run and the error; a data-quality failure lists each failed expectation."""
    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    task_id = getattr(ti, "task_id", "?")
    run_id = context.get("run_id") or getattr(context.get("dag_run"), "run_id", "?")
    error = context.get("exception")
    details: list[str] = []
    report = getattr(error, "report", None)  # DataQualityError, or the task's BlockingDataQualityFailure
    if report is not None:
        details = [f.describe() for f in report.blocking]
        body = f"blocking data-quality expectations failed in suite {report.suite}; downstream tasks stopped"
        if getattr(report, "docs_path", None):
            body += f"\nData Docs page: {data_docs_url(report.docs_path, getattr(report, 'docs_page', None))}"
    else:
        body = f"{type(error).__name__}: {error}" if error else "task failed"
    return Alert(subject=f"{dag_id}.{task_id} failed (run {run_id})", body=body, details=details)


def send(alert: Alert, settings: Settings | None = None, context: Any = None) -> None:
    """Deliver on every configured channel; a channel that fails is logged and does not hide the others."""
    settings = settings or get_settings()
    record_alert(alert, settings)
    for channel in settings.alert_channels:
        try:
            if channel == "slack":
                from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

                SlackWebhookNotifier(slack_webhook_conn_id=settings.alert_slack_conn_id, text=alert.text()).notify(
                    context or {}
                )
            elif channel == "smtp" and settings.alert_email_to:
                from airflow.providers.smtp.notifications.smtp import SmtpNotifier

                notifier = SmtpNotifier(smtp_conn_id=settings.alert_smtp_conn_id, to=settings.alert_email_to,
                                        subject=alert.subject, html_content=f"<pre>{alert.text()}</pre>")  # fmt: skip
                notifier.notify(context or {})
        except Exception:  # noqa: BLE001 - one broken channel must not swallow the alert elsewhere
            log.exception("alert channel %s failed; the alert is in the log and alerts file", channel)


class PonyAlertNotifier(BaseNotifier):
    """``on_failure_callback`` of every pipeline task."""

    template_fields = ()

    def notify(self, context: Any) -> None:
        send(alert_from_context(context), context=context)


class BlockingDataQualityFailure(AirflowFailException):
    """Fails the task without retries; carries the report so the failure alert can list the expectations."""

    def __init__(self, report) -> None:  # noqa: ANN001 - pony_tasks.quality.checks.QualityReport
        self.report = report
        super().__init__(report.describe())


def quality_gate_task(suite: str, **batch: Any) -> str:
    """A quality gate inside an Airflow task: warnings alert and pass; blocking failures fail the task at once,
    without retries (the data will not change by retrying), and the failure alert lists the failed expectations."""
    from pony_tasks.orchestration.tasks import quality_gate
    from pony_tasks.quality.checks import DataQualityError

    try:
        return quality_gate(suite, alert=send, **batch)
    except DataQualityError as exc:
        raise BlockingDataQualityFailure(exc.report) from exc
