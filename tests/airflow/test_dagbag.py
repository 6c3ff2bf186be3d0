"""Every DAG imports, carries tags, owner, retries and the failure alert, and parses without heavy imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from pony_airflow.failures import RUN_OUTCOME_TASK
from pony_airflow.notifiers import PonyAlertNotifier
from pony_tasks.orchestration.stages import SITES
from tests.airflow.conftest import ROOT

EXPECTED = {"booru_score_refresh", "images_fetch", "scores_normalize", "embed_and_score", "nightly_rescore",
            "aesthetic_train", "captions_regenerate", "finetune", "works_link", "works_build", "style_clusters",
            "booru_scrape"}
HEAVY = ("great_expectations", "torch", "open_clip", "diffusers", "pandas",
         "airflow.providers.cncf.kubernetes.operators.pod")  # fmt: skip


def test_no_import_errors_and_every_dag_is_there(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dags) == EXPECTED


def test_every_task_has_owner_retries_and_the_failure_alert(dagbag) -> None:
    for dag in dagbag.dags.values():
        assert "pony" in dag.tags and len(dag.tags) >= 2, dag.dag_id
        assert dag.doc_md and len(dag.doc_md) > 100, dag.dag_id
        for task in dag.tasks:
            assert task.owner == "pony-pipeline", (dag.dag_id, task.task_id)
            if task.task_id in (RUN_OUTCOME_TASK, "check_params"):  # permanent by nature; the outcome never alerts
                assert task.retries == 0, (dag.dag_id, task.task_id)
                continue
            assert task.retries >= 1, (dag.dag_id, task.task_id)
            callbacks = task.on_failure_callback if isinstance(task.on_failure_callback, list) else [
                task.on_failure_callback]  # fmt: skip
            assert any(isinstance(c, PonyAlertNotifier) for c in callbacks), (dag.dag_id, task.task_id)


def test_sites_match_the_adapters() -> None:
    from pony_tasks.boorus.adapters import ADAPTERS

    assert tuple(sorted(ADAPTERS)) == SITES


# One interpreter imports Airflow's task SDK once, then forks a child per DAG file (a clean copy of that state: one
# file's imports never hide another's), which runs the file and reports the heavy modules then loaded.
FORKED_IMPORTS = """
import json, os, runpy, sys
import airflow.sdk
heavy, report = json.loads(sys.argv[1]), {}
for path in sys.argv[2:]:
    read, write = os.pipe()
    if os.fork() == 0:
        os.close(read)
        try:
            runpy.run_path(path)
            found = [m for m in heavy if m in sys.modules]
        except BaseException as exc:
            found = [f"import failed: {exc!r}"]
        os.write(write, json.dumps(found).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        report[os.path.basename(path)] = json.loads(pipe.read() or '["the child died"]')
    os.wait()
print(json.dumps(report))
"""


def test_dag_files_import_nothing_heavy() -> None:
    paths = sorted(str(p) for p in (ROOT / "dags").glob("*.py"))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "plugins"))
    out = subprocess.run([sys.executable, "-c", FORKED_IMPORTS, json.dumps(list(HEAVY)), *paths],
                         capture_output=True, text=True, check=True, env=env)  # fmt: skip
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert sorted(report) == sorted(os.path.basename(p) for p in paths)
    assert {name: found for name, found in report.items() if found} == {}


def test_scrape_schedules_have_data_intervals_for_backfills(dagbag) -> None:
    from airflow.timetables.interval import CronDataIntervalTimetable

    for dag_id in ("booru_score_refresh", "booru_scrape"):
        assert isinstance(dagbag.dags[dag_id].timetable, CronDataIntervalTimetable), dag_id


def test_promotion_and_style_activation_update_the_assets_caption_regeneration_is_scheduled_on(dagbag) -> None:
    produced = {a.name for dag_id, task_id in (("aesthetic_train", "promote"), ("style_clusters", "activate"))
                for a in dagbag.dags[dag_id].get_task(task_id).outlets}  # fmt: skip
    condition = dagbag.dags["captions_regenerate"].timetable.asset_condition
    scheduled = {a.name for a in condition.objects}
    assert produced == scheduled == {"aesthetic_model", "style_clusters"}
    assert type(condition).__name__ == "AssetAny"  # either one starts a run


def test_embed_tasks_run_in_the_gpu_pool(dagbag) -> None:
    assert dagbag.dags["embed_and_score"].get_task("embed").pool == "gpu"


def test_a_failed_task_fails_the_run_in_every_dag(dagbag) -> None:
    """The run's state follows its leaves: the only leaf is run_outcome, which runs (and fails) when any task failed
    or could not run because one failed — a run whose other leaves were all skipped is still red."""
    for dag in dagbag.dags.values():
        outcome = dag.get_task(RUN_OUTCOME_TASK)
        leaves = [t.task_id for t in dag.tasks if not t.downstream_task_ids]
        assert leaves == [RUN_OUTCOME_TASK], (dag.dag_id, leaves)
        assert str(outcome.trigger_rule) in ("one_failed", "TriggerRule.ONE_FAILED"), dag.dag_id
        assert outcome.upstream_task_ids == {t.task_id for t in dag.tasks} - {RUN_OUTCOME_TASK}, dag.dag_id


def test_dags_with_parameters_check_them_first_without_retries(dagbag) -> None:
    for dag in dagbag.dags.values():
        if not dag.params:
            continue
        check = dag.get_task("check_params")
        assert check.retries == 0 and not check.upstream_task_ids, dag.dag_id
        roots = [t.task_id for t in dag.tasks if not t.upstream_task_ids]
        assert roots == ["check_params"], (dag.dag_id, roots)


def test_the_readme_backfill_makes_one_run_per_day_one_at_a_time(dagbag) -> None:
    """The README's example, planned by Airflow's own backfill code: both dates included, one run per calendar day,
    and it bounds its own concurrency (a backfill ignores the DAG's max_active_runs; its default is 10)."""
    import re
    from datetime import UTC, datetime

    from airflow.models.backfill import _get_info_list
    from airflow.serialization.serialized_objects import DagSerialization

    readme = (ROOT / "README.md").read_text()
    command = re.search(r"airflow backfill create --dag-id booru_score_refresh [^`\n]*", readme).group(0)
    options = dict(re.findall(r"--([a-z-]+) (\S+)", command))
    assert options["max-active-runs"] == "1", command
    dag = DagSerialization.from_dict(DagSerialization.to_dict(dagbag.dags["booru_score_refresh"]))
    first, last = (datetime.fromisoformat(options[k]).replace(tzinfo=UTC) for k in ("from-date", "to-date"))
    runs = _get_info_list(from_date=first, to_date=last, reverse=False, dag=dag)
    days = (last - first).days + 1
    assert [r.data_interval.start for r in runs] == [first.replace(day=first.day + i) for i in range(days)]
    assert all((r.data_interval.end - r.data_interval.start).days == 1 for r in runs)
    assert f"makes {days} runs" in readme, "the README states how many runs its example makes"


def test_a_scrape_or_refresh_run_updates_booru_posts_once_after_every_sites_gate(dagbag) -> None:
    """The sites finish minutes apart: one event per site would start each consumer more than once."""
    for dag_id in ("booru_scrape", "booru_score_refresh"):
        dag = dagbag.dags[dag_id]
        producers = [t.task_id for t in dag.tasks if any(a.name == "booru_posts" for a in t.outlets)]
        assert producers == ["announce_posts"], (dag_id, producers)
        announce = dag.get_task("announce_posts")
        assert announce.trigger_rule == "all_done"  # a failed site holds back no other site's posts
        assert announce.upstream_task_ids == {f"check_{s}" for s in SITES}, dag_id
    for dag_id in ("images_fetch", "scores_normalize"):
        condition = dagbag.dags[dag_id].timetable.asset_condition
        assert [a.name for a in condition.objects] == ["booru_posts"], dag_id
