"""Great Expectations suites on real PostgreSQL data: blocking vs warning, stored summary and full result."""

from __future__ import annotations

import json
from datetime import UTC, datetime

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
