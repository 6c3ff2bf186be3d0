"""Run an expectation suite on one batch, store the outcome, and say whether downstream work may go on.

``run_check`` validates with Great Expectations 1.x (an ephemeral context, pandas batches), writes the full result
JSON to object storage (``quality/<suite>/…json``) and a summary row to ``dq_result``, and returns a
:class:`QualityReport`. ``report.raise_for_blocking()`` raises :class:`DataQualityError` naming every failed
critical expectation; failed warnings never raise (the caller alerts).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pony_tasks.config import Settings, get_settings
from pony_tasks.db import connect
from pony_tasks.errors import PermanentError
from pony_tasks.quality.suites import SUITES, SuiteInput
from pony_tasks.storage import open_store

log = logging.getLogger(__name__)


class DataQualityError(PermanentError, RuntimeError):
    """Blocking expectations failed: the data must not flow downstream."""

    def __init__(self, report: QualityReport) -> None:
        self.report = report
        super().__init__(report.describe())


@dataclass(frozen=True)
class FailedExpectation:
    expectation: str
    column: str | None
    severity: str
    observed: Any

    def describe(self) -> str:
        where = f" on {self.column}" if self.column else ""
        return f"{self.expectation}{where} ({self.severity}): {self.observed}"


@dataclass
class QualityReport:
    suite: str
    batch: dict
    rows_checked: int
    evaluated: int
    failed: list[FailedExpectation] = field(default_factory=list)
    result_id: int | None = None
    result_key: str | None = None

    @property
    def blocking(self) -> list[FailedExpectation]:
        return [f for f in self.failed if f.severity == "critical"]

    @property
    def warnings(self) -> list[FailedExpectation]:
        return [f for f in self.failed if f.severity != "critical"]

    def describe(self) -> str:
        head = (f"data quality {self.suite} {json.dumps(self.batch, default=str)}: {self.rows_checked} rows, "
                f"{self.evaluated - len(self.failed)}/{self.evaluated} expectations met")  # fmt: skip
        if not self.failed:
            return head
        return head + "; failed: " + "; ".join(f.describe() for f in self.failed)

    def raise_for_blocking(self) -> None:
        if self.blocking:
            raise DataQualityError(self)


_context = None


def _gx_context():
    """One ephemeral Great Expectations context per process, progress bars off."""
    global _context
    if _context is None:
        import great_expectations as gx

        _context = gx.get_context(mode="ephemeral")
        try:
            from great_expectations.data_context.types.base import ProgressBarsConfig

            _context.variables.progress_bars = ProgressBarsConfig(globally=False)
        except Exception:  # noqa: BLE001 - cosmetic only
            log.debug("could not switch off Great Expectations progress bars", exc_info=True)
    return _context


def validate(suite_input: SuiteInput) -> tuple[QualityReport, dict]:
    """Validate one batch; returns the report (not yet stored) and the full GX result as JSON-able dict."""
    import great_expectations as gx

    context = _gx_context()
    source_name = f"pony_{suite_input.name}"
    try:
        source = context.data_sources.get(source_name)
    except (KeyError, ValueError):
        source = context.data_sources.add_pandas(source_name)
    try:
        asset = source.get_asset("batch")
    except LookupError:
        asset = source.add_dataframe_asset("batch")
    try:
        definition = asset.get_batch_definition("whole")
    except (KeyError, LookupError):
        definition = asset.add_batch_definition_whole_dataframe("whole")
    suite = gx.ExpectationSuite(name=suite_input.name)
    for expectation in suite_input.expectations:
        suite.add_expectation(expectation)
    result = definition.get_batch(batch_parameters={"dataframe": suite_input.frame}).validate(suite)
    failed = []
    for item in result.results:
        if item.success:
            continue
        config = item.expectation_config
        observed = item.result.get("observed_value")
        if observed is None and "unexpected_count" in item.result:
            observed = (f"{item.result['unexpected_count']} unexpected of {item.result.get('element_count')}, e.g. "
                        f"{item.result.get('partial_unexpected_list', [])[:5]}")  # fmt: skip
        failed.append(FailedExpectation(config.type, config.kwargs.get("column"), str(config.severity.value),
                                        _plain(observed)))  # fmt: skip
    report = QualityReport(suite_input.name, suite_input.batch, len(suite_input.frame), len(result.results), failed)
    return report, result.to_json_dict()


def _plain(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return str(value)


def run_check(suite: str, *, settings: Settings | None = None, **batch: Any) -> QualityReport:
    """Run ``suite`` (see :data:`SUITES`) on the batch described by ``batch``; store and return the outcome."""
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; choose one of {sorted(SUITES)}")
    settings = settings or get_settings()
    store = open_store(settings=settings)
    with connect(settings) as conn:
        suite_input = SUITES[suite](conn, store, **batch)
        report, full = validate(suite_input)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        report.result_key = f"quality/{suite}/{stamp}.json"
        store.put_bytes(report.result_key, json.dumps(
            {"suite": suite, "batch": report.batch, "result": full}, default=str, indent=1).encode())  # fmt: skip
        with conn.cursor() as cur:
            cur.execute(
                """INSERT INTO dq_result (suite, batch, rows_checked, success, blocking_failures, warnings, failed,
                       result_key) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING result_id""",
                (suite, json.dumps(report.batch, default=str), report.rows_checked, not report.failed,
                 len(report.blocking), len(report.warnings),
                 json.dumps([f.__dict__ for f in report.failed], default=str), report.result_key),
            )  # fmt: skip
            report.result_id = cur.fetchone()[0]
    (log.warning if report.failed else log.info)(report.describe())
    return report
