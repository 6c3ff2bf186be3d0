"""Run an expectation suite on one batch, store the outcome, and say whether downstream work may go on.

``run_check`` validates with Great Expectations 1.x the way GX users expect to find it: a file-backed context in
``PONY_HOME/gx`` holding each suite, its validation definition and a checkpoint whose ``UpdateDataDocsAction``
renders the result into the **Data Docs** site (``PONY_HOME/gx/uncommitted/data_docs/local_site/index.html``, one
HTML page per result). Each page is also published to the object store (``quality/data-docs/…``,
:func:`publish_data_docs`): in a Kubernetes deployment every pod's ``PONY_HOME`` is its own, and the Airflow UI
serves the pages from the store, so an alert's link opens. The full result JSON also goes to object storage
(``quality/<suite>/…json``) and a summary row to ``dq_result`` (outcome, counts, the page's path), and a
:class:`QualityReport` is returned.
``report.raise_for_blocking()`` raises :class:`DataQualityError` naming every failed critical expectation; failed
warnings never raise (the caller alerts). An empty batch is the outcome ``no_rows``: not a pass, not a failure.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from pony_tasks.config import Settings, get_settings
from pony_tasks.db import connect, database_url
from pony_tasks.errors import PermanentError
from pony_tasks.quality.suites import SUITES, SuiteInput, drop_batch_table
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
    docs_path: str | None = None  # the Data Docs HTML page of this result (a file on the machine that ran it)
    docs_page: str | None = None  # that page's path within the site, published under DOCS_PREFIX on the store

    @property
    def blocking(self) -> list[FailedExpectation]:
        return [f for f in self.failed if f.severity == "critical"]

    @property
    def warnings(self) -> list[FailedExpectation]:
        return [f for f in self.failed if f.severity != "critical"]

    @property
    def outcome(self) -> str:
        """``failed`` (blocking expectations failed), ``no_rows`` (nothing to check), ``warnings`` or ``passed``."""
        if self.blocking:
            return "failed"
        if self.rows_checked == 0:
            return "no_rows"
        return "warnings" if self.warnings else "passed"

    def describe(self) -> str:
        head = f"data quality {self.suite} {json.dumps(self.batch, default=str)}: "
        if self.outcome == "no_rows":
            head += "NO ROWS — nothing to check (not a pass)"
        else:
            head += (f"{self.rows_checked} rows, {self.evaluated - len(self.failed)}/{self.evaluated} expectations "
                     "met")  # fmt: skip
        if self.failed:
            head += "; failed: " + "; ".join(f.describe() for f in self.failed)
        return head + (f"; Data Docs: {self.docs_path}" if self.docs_path else "")

    def raise_for_blocking(self) -> None:
        if self.blocking:
            raise DataQualityError(self)


def data_docs_index(settings: Settings | None = None) -> Path:
    """The Data Docs site's front page (every stored result, newest first)."""
    return (settings or get_settings()).resolved_home / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"


DOCS_PREFIX = "quality/data-docs/"  # the Data Docs pages on the object store, as the site lays them out


def publish_data_docs(store: Any, settings: Settings, docs_path: str | None) -> str | None:
    """Copy a result's Data Docs page (and the site's own static files, once) to the object store, where the Airflow
    UI serves it whatever pod or machine ran the check; returns the page's path within the site."""
    if not docs_path:
        return None
    site = data_docs_index(settings).parent.resolve()
    try:
        page = Path(docs_path).resolve().relative_to(site)
    except ValueError:
        return None
    store.put_bytes(DOCS_PREFIX + page.as_posix(), (site / page).read_bytes())
    static = site / "static"
    for path in sorted(static.rglob("*")) if static.is_dir() else []:
        key = DOCS_PREFIX + path.relative_to(site).as_posix()
        if path.is_file() and not store.exists(key):
            store.put_bytes(key, path.read_bytes())
    return page.as_posix()


@contextmanager
def _gx_context(settings: Settings) -> Iterator[Any]:
    """The file-backed context in ``PONY_HOME/gx``, held under a file lock: gates of parallel tasks (four sites'
    scrapes) share the suites, the checkpoints and the Data Docs index."""
    import fcntl

    import great_expectations as gx

    home = settings.resolved_home
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "gx.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        context = gx.get_context(mode="file", project_root_dir=str(home))
        try:
            from great_expectations.data_context.types.base import ProgressBarsConfig

            context.variables.progress_bars = ProgressBarsConfig(globally=False)
        except Exception:  # noqa: BLE001 - cosmetic only
            log.debug("could not switch off Great Expectations progress bars", exc_info=True)
        yield context


def _run_name(suite_input: SuiteInput) -> str:
    """The Data Docs run name: the suite and what was checked (``scraped_posts-site-danbooru-since-…``)."""
    parts = [f"{k}-{v:%Y%m%dT%H%M}" if isinstance(v, datetime) else f"{k}-{v}" for k, v in suite_input.batch.items()]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join([suite_input.name, *parts]))[:120]


GX_DATABASE_URL = "PONY_GX_DATABASE_URL"  # the context's PostgreSQL datasource reads its URL from here: never stored


def _dataframe_batch(context: Any, name: str) -> Any:
    """The whole-dataframe batch definition of the suite's pandas datasource."""
    source = context.data_sources.add_or_update_pandas(f"pony_{name}")
    try:
        asset = source.get_asset("batch")
    except LookupError:
        asset = source.add_dataframe_asset("batch")
    try:
        return asset.get_batch_definition("whole")
    except (KeyError, LookupError):
        return asset.add_batch_definition_whole_dataframe("whole")


def _table_batch(context: Any, name: str, table: str, settings: Settings) -> Any:
    """The whole-table batch definition of the suite's PostgreSQL datasource, on the suite's batch table (its table
    asset made anew for each batch). A table asset, not a query asset over it: for a query asset GX learns the
    column names by running the query whole (``column_reflection_fallback``: every row into the worker — 1.9 GiB
    at 10M images); for a table it asks the catalogue. The URL is an environment variable the context file names, so
    credentials of an external database are never written into it."""
    url = database_url(settings)
    os.environ[GX_DATABASE_URL] = re.sub(r"^postgres(ql)?://", "postgresql+psycopg2://", url)
    source = context.data_sources.add_or_update_postgres(f"pony_{name}_sql",
                                                         connection_string=f"${{{GX_DATABASE_URL}}}")  # fmt: skip
    if "batch" in source.get_asset_names():
        source.delete_asset("batch")
    return source.add_table_asset("batch", table_name=table).add_batch_definition_whole_table("whole")


def validate(suite_input: SuiteInput, settings: Settings | None = None) -> tuple[QualityReport, dict]:
    """Validate one batch through the suite's checkpoint (which updates the Data Docs); returns the report (not yet
    stored, ``docs_path`` set) and the full GX result as a JSON-able dict. A query batch's table is dropped after."""
    settings = settings or get_settings()
    try:
        return _validate(suite_input, settings)
    finally:
        if suite_input.table is not None:
            with connect(settings) as conn:
                drop_batch_table(conn, suite_input.table)


def _validate(suite_input: SuiteInput, settings: Settings) -> tuple[QualityReport, dict]:
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.core.run_identifier import RunIdentifier

    name = suite_input.name
    with _gx_context(settings) as context:
        if suite_input.table is not None:
            definition = _table_batch(context, name, suite_input.table, settings)
            batch_parameters = None
        else:
            definition = _dataframe_batch(context, name)
            batch_parameters = {"dataframe": suite_input.frame}
        suite = gx.ExpectationSuite(name=name)
        for expectation in suite_input.expectations:
            suite.add_expectation(expectation)
        suite = context.suites.add_or_update(suite)
        validation = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=name, data=definition, suite=suite))  # fmt: skip
        checkpoint = context.checkpoints.add_or_update(gx.Checkpoint(
            name=name, validation_definitions=[validation], actions=[UpdateDataDocsAction(name="update_data_docs")],
            result_format="SUMMARY"))  # fmt: skip
        outcome = checkpoint.run(batch_parameters=batch_parameters,
                                 run_id=RunIdentifier(run_name=_run_name(suite_input)))  # fmt: skip
        identifier, result = next(iter(outcome.run_results.items()))
        urls = context.get_docs_sites_urls(resource_identifier=identifier)
    docs_path = unquote(urls[0]["site_url"].removeprefix("file://")) if urls else None
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
    report = QualityReport(name, suite_input.batch, suite_input.row_count, len(result.results), failed,
                           docs_path=docs_path)  # fmt: skip
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
        report, full = validate(suite_input, settings)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        report.result_key = f"quality/{suite}/{stamp}.json"
        report.docs_page = publish_data_docs(store, settings, report.docs_path)
        store.put_bytes(report.result_key, json.dumps(
            {"suite": suite, "batch": report.batch, "result": full}, default=str, indent=1).encode())  # fmt: skip
        with conn.cursor() as cur:
            cur.execute(
                """INSERT INTO dq_result (suite, batch, rows_checked, success, blocking_failures, warnings, failed,
                       result_key, outcome, docs_path, docs_page)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                   RETURNING result_id""",
                (suite, json.dumps(report.batch, default=str), report.rows_checked, report.outcome == "passed",
                 len(report.blocking), len(report.warnings),
                 json.dumps([f.__dict__ for f in report.failed], default=str), report.result_key, report.outcome,
                 report.docs_path, report.docs_page),
            )  # fmt: skip
            report.result_id = cur.fetchone()[0]
    (log.warning if report.outcome != "passed" else log.info)(report.describe())
    return report
