"""Great Expectations suites on real PostgreSQL data: blocking vs warning, stored summary and full result."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pony_tasks.db import connect
from pony_tasks.quality.checks import DataQualityError, run_check
from pony_tasks.storage import open_store

SINCE = datetime(2000, 1, 1, tzinfo=UTC)


def _images(settings, rows) -> None:
    with connect(settings) as conn, conn.cursor() as cur:
        for sha, size, fmt in rows:
            cur.execute("INSERT INTO image (sha256, storage_key, byte_size, width, height, format) "
                        "VALUES (%s, 'k', %s, 10, 10, %s)", (sha, size, fmt))  # fmt: skip


def test_clean_batch_passes_and_is_stored(migrated) -> None:
    _images(migrated, [("a" * 64, 10, "PNG"), ("b" * 64, 20, "JPEG")])
    report = run_check("images", settings=migrated, since=SINCE)
    assert report.rows_checked == 2 and not report.failed and report.evaluated >= 5
    report.raise_for_blocking()
    with connect(migrated) as conn, conn.cursor() as cur:
        cur.execute("SELECT suite, success, blocking_failures, warnings, result_key FROM dq_result")
        assert cur.fetchone() == ("images", True, 0, 0, report.result_key)
    full = json.loads(open_store(settings=migrated).get_bytes(report.result_key))
    assert full["suite"] == "images" and full["result"]["success"] is True


def test_warning_does_not_block_but_a_critical_failure_does(migrated) -> None:
    _images(migrated, [("a" * 64, 10, "BMP")])  # unusual format: warning only
    report = run_check("images", settings=migrated, since=SINCE)
    assert [f.severity for f in report.failed] == ["warning"] and not report.blocking
    report.raise_for_blocking()
    _images(migrated, [("c" * 64, 0, "PNG")])  # an empty file is never right
    report = run_check("images", settings=migrated, since=SINCE)
    assert [(f.column, f.severity) for f in report.blocking] == [("byte_size", "critical")]
    with pytest.raises(DataQualityError, match="byte_size"):
        report.raise_for_blocking()
    with connect(migrated) as conn, conn.cursor() as cur:
        cur.execute("SELECT blocking_failures, warnings, failed FROM dq_result ORDER BY result_id DESC LIMIT 1")
        blocking, warnings, failed = cur.fetchone()
    assert (blocking, warnings) == (1, 1) and {f["column"] for f in failed} == {"byte_size", "format"}


def test_unknown_suite_is_refused_with_the_choices(migrated) -> None:
    with pytest.raises(ValueError, match="captions"):
        run_check("nope", settings=migrated)


def test_every_check_gets_a_data_docs_page_that_names_what_failed(migrated) -> None:
    from pony_tasks.quality.checks import data_docs_index

    _images(migrated, [("a" * 64, 10, "PNG")])
    passed = run_check("images", settings=migrated, since=SINCE)
    _images(migrated, [("c" * 64, 0, "PNG")])
    failed = run_check("images", settings=migrated, since=SINCE)
    pages = []
    for report in (passed, failed):
        page = Path(report.docs_path)
        assert page.is_file() and page.suffix == ".html" and page.is_relative_to(data_docs_index(migrated).parent)
        assert report.docs_path in report.describe()
        pages.append(" ".join(re.sub(r"<script.*?</script>|<style.*?</style>|<[^>]+>", " ", page.read_text(),
                                     flags=re.S).split()))  # the page as a person reads it  # fmt: skip
    assert "Expectation Suite: images" in pages[0] and "Unsuccessful Expectations 0" in pages[0]
    assert "Unsuccessful Expectations 1" in pages[1] and "1 unexpected values found" in pages[1]
    index = data_docs_index(migrated).read_text()
    assert all(Path(r.docs_path).name in index for r in (passed, failed))
    with connect(migrated) as conn, conn.cursor() as cur:
        cur.execute("SELECT outcome, docs_path, docs_page FROM dq_result ORDER BY result_id")
        assert cur.fetchall() == [("passed", passed.docs_path, passed.docs_page),
                                  ("failed", failed.docs_path, failed.docs_page)]  # fmt: skip
    # published on the object store, where the UI serves it whatever machine or pod ran the check
    from pony_tasks.quality.checks import DOCS_PREFIX
    from pony_tasks.storage import open_store

    store = open_store(settings=migrated)
    for report in (passed, failed):
        assert report.docs_page and Path(report.docs_path).as_posix().endswith(report.docs_page)
        assert store.get_bytes(DOCS_PREFIX + report.docs_page) == Path(report.docs_path).read_bytes()
    assert any(key.endswith(".css") for key in store.list(DOCS_PREFIX + "static/")), "the site's own styles too"
    home = migrated.resolved_home / "gx"  # what a GX user expects to find: suite, validation definition, checkpoint
    assert all((home / kind / "images.json").is_file() for kind in ("expectations", "validation_definitions",
                                                                    "checkpoints"))  # fmt: skip


def test_an_empty_batch_is_no_rows_not_a_pass(migrated) -> None:
    report = run_check("images", settings=migrated, since=SINCE)
    assert report.outcome == "no_rows" and "NO ROWS" in report.describe() and not report.blocking
    with connect(migrated) as conn, conn.cursor() as cur:
        cur.execute("SELECT outcome, success FROM dq_result")
        assert cur.fetchone() == ("no_rows", False)


def _batch_tables(settings) -> list[str]:
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'quality\\_batch\\_%' ORDER BY 1")
        return [name for (name,) in cur.fetchall()]


def test_a_query_batch_is_computed_once_into_a_table_dropped_after_the_check(migrated) -> None:
    """The batch's rows are materialised once (each expectation then scans them, not the query) and the table goes
    when the check ends, passed or failed; one a dead check left behind goes with the next check after a day."""
    from pony_tasks.quality.suites import images

    _images(migrated, [("a" * 64, 10, "PNG"), ("b" * 64, 0, "JPEG")])
    with connect(migrated) as conn:
        left = images(conn, open_store(settings=migrated), since=SINCE)  # built, never validated: a dead check
        with conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {left.table}")
            assert cur.fetchone()[0] == left.rows == 2
            old = f"quality_batch_{int(datetime(2020, 1, 1, tzinfo=UTC).timestamp())}_1_abcdef"
            cur.execute(f"ALTER TABLE {left.table} RENAME TO {old}")
    assert _batch_tables(migrated) == [old]
    report = run_check("images", settings=migrated, since=SINCE)
    assert report.rows_checked == 2 and report.blocking, "the zero-byte file fails the check"
    assert _batch_tables(migrated) == [], "the stale table and the check's own are gone"


def test_great_expectations_never_reads_a_batch_whole(migrated) -> None:
    """Every statement GX runs on a batch table aggregates, filters or limits it: none brings its rows into the
    worker (a query asset made GX run the query whole just to learn the column names — 1.9 GiB at 10M images)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    _images(migrated, [(f"{i:064x}", 10 + i, "PNG") for i in range(50)])
    statements: list[str] = []

    def seen(conn, cursor, statement, *args) -> None:  # noqa: ANN001 - SQLAlchemy's event signature
        statements.append(" ".join(statement.split()))

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        report = run_check("images", settings=migrated, since=SINCE)
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
    assert report.rows_checked == 50 and not report.failed
    on_batch = [s for s in statements if "quality_batch_" in s]
    assert on_batch, "GX ran no statement on the batch table"
    whole = [s for s in on_batch if not re.search(r"\b(count|sum|min|max|avg|LIMIT|GROUP BY|WHERE)\b", s, re.I)]
    assert whole == [], whole
