import json

import pytest

from pony_tasks.db import upgrade
from pony_tasks.runs import recorded_run


def test_successful_and_failed_runs_are_recorded(db) -> None:
    upgrade(db)
    with recorded_run(db, "scrape", {"site": "e621"}) as run:
        run.summary = {"posts": 3}
    with pytest.raises(RuntimeError, match="boom"), recorded_run(db, "scrape", {"site": "gelbooru"}):
        with db.cursor() as cur:
            cur.execute("CREATE TABLE work_in_progress (x int)")
        raise RuntimeError("boom")
    with db.cursor() as cur:
        cur.execute(
            "SELECT stage, parameters, status, summary, error, finished_at IS NOT NULL"
            " FROM pipeline_run ORDER BY run_id"
        )
        rows = cur.fetchall()
        cur.execute("SELECT to_regclass('work_in_progress')")
        assert cur.fetchone()[0] is None, "the failed run's own work must be rolled back"
    assert rows[0] == ("scrape", {"site": "e621"}, "succeeded", {"posts": 3}, None, True)
    assert rows[1][2] == "failed" and rows[1][4] == "RuntimeError: boom" and rows[1][5]
    json.dumps(rows[1][1])
