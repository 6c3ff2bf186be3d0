"""What retrying cannot fix fails at once; everything else keeps its retries."""

from __future__ import annotations

import psycopg2.errors
import pytest
from airflow.sdk.exceptions import AirflowFailException

from pony_airflow.failures import fail_fast
from pony_tasks.db.connection import SchemaNotReady
from pony_tasks.errors import is_permanent
from pony_tasks.polite_http import SiteBlocked


@pytest.mark.parametrize("error", [ValueError("bad value"), LookupError("no candidate"), TypeError("bug"),
                                   SchemaNotReady("run pony db upgrade"), SiteBlocked("blocked", 403, None),
                                   psycopg2.errors.UndefinedTable("no such table")], ids=type)  # fmt: skip
def test_permanent_errors_fail_without_retry(error) -> None:
    assert is_permanent(error)

    @fail_fast
    def task():
        raise error

    with pytest.raises(AirflowFailException, match="not retried") as raised:
        task()
    assert raised.value.__cause__ is error


@pytest.mark.parametrize("error", [ConnectionError("reset"), TimeoutError("slow"),
                                   psycopg2.OperationalError("server closed the connection"),
                                   RuntimeError("unknown")], ids=type)  # fmt: skip
def test_transient_errors_keep_their_retries(error) -> None:
    assert not is_permanent(error)

    @fail_fast
    def task():
        raise error

    with pytest.raises(type(error)) as raised:
        task()
    assert raised.value is error


def test_generator_tasks_are_wrapped_too() -> None:
    @fail_fast
    def task():
        yield 1
        raise LookupError("nothing to promote")

    with pytest.raises(AirflowFailException):
        list(task())


def test_an_alert_links_its_data_docs_page_through_the_ui(monkeypatch, tmp_path) -> None:
    from pony_airflow.notifiers import data_docs_url
    from pony_tasks.config import get_settings
    from pony_tasks.quality.checks import data_docs_index

    monkeypatch.setenv("PONY_HOME", str(tmp_path))
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.org/")
    get_settings.cache_clear()
    try:
        page = data_docs_index().parent / "validations" / "images" / "run" / "batch.html"
        assert data_docs_url(str(page)) == ("https://airflow.example.org/pony/quality-docs/validations/images/run/"
                                            "batch.html")  # fmt: skip
        assert data_docs_url("/elsewhere/page.html") == "/elsewhere/page.html"
    finally:
        get_settings.cache_clear()
