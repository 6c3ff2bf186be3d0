"""Every template of every task renders for every kind of run — the context Airflow's task runner builds differs:
asset-triggered runs (and manual runs triggered without a logical date) have no ``ts``, ``ds``, ``logical_date``
or data interval. Rendering goes through the task SDK's own ``RuntimeTaskInstance.get_template_context`` and
``render_templates``; only the XComs a template pulls are stood in for (there is no API server here)."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime, timedelta

import pytest

RUN_AFTER = datetime(2026, 11, 3, 2, 0, tzinfo=UTC)
RUN_KINDS = {
    "scheduled": dict(run_type="scheduled", logical_date=RUN_AFTER - timedelta(days=1),
                      data_interval_start=RUN_AFTER - timedelta(days=1), data_interval_end=RUN_AFTER),
    "backfill": dict(run_type="backfill", logical_date=RUN_AFTER - timedelta(days=20),
                     data_interval_start=RUN_AFTER - timedelta(days=20),
                     data_interval_end=RUN_AFTER - timedelta(days=19)),
    "manual": dict(run_type="manual", logical_date=RUN_AFTER, data_interval_start=RUN_AFTER,
                   data_interval_end=RUN_AFTER),
    "manual_without_logical_date": dict(run_type="manual", logical_date=None, data_interval_start=None,
                                        data_interval_end=None),
    "asset_triggered": dict(run_type="asset_triggered", logical_date=None, data_interval_start=None,
                            data_interval_end=None),
}  # fmt: skip


class _Pulled(dict):
    """What a pulled XCom stands for in a template: any key, printable."""

    def __missing__(self, key):
        return 1

    def __str__(self) -> str:
        return "pulled-xcom"


def _runtime_ti(task, kind: str):
    from airflow.sdk.api.datamodels._generated import DagRun, TIRunContext
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    class StandInXComs(RuntimeTaskInstance):
        def xcom_pull(self, *args, **kwargs):
            return _Pulled()

    run = DagRun(dag_id=task.dag_id, run_id=f"{kind}__test", run_after=RUN_AFTER, start_date=RUN_AFTER,
                 end_date=None, state="running", conf={}, consumed_asset_events=[], partition_key=None,
                 **RUN_KINDS[kind])  # fmt: skip
    ti = StandInXComs.model_construct(id=uuid.uuid4(), task_id=task.task_id, dag_id=task.dag_id,
                                      run_id=run.run_id, try_number=1, dag_version_id=uuid.uuid4(), map_index=-1,
                                      task=task, start_date=RUN_AFTER, max_tries=0)  # fmt: skip
    ti._ti_context_from_server = TIRunContext(dag_run=run, max_tries=0)
    ti._cached_template_context = None
    return ti


@pytest.mark.parametrize("kind", sorted(RUN_KINDS))
def test_every_template_renders_for_every_kind_of_run(dagbag, kind) -> None:
    rendered = {}
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            if getattr(task, "is_mapped", False) or not task.template_fields:
                continue
            task = copy.copy(task)  # rendering replaces the template fields on the task itself
            ti = _runtime_ti(task, kind)
            try:
                ti.render_templates()
            except Exception as exc:  # noqa: BLE001 - reported with the task's name
                pytest.fail(f"{dag.dag_id}.{task.task_id} does not render for a {kind} run: "
                            f"{type(exc).__name__}: {exc}")
            rendered[f"{dag.dag_id}.{task.task_id}"] = {f: getattr(task, f) for f in task.template_fields}
    finetune_train = rendered["finetune.train"]["op_args"][0]
    dataset = finetune_train[finetune_train.index("--dataset") + 1]
    assert dataset == f"ft-{RUN_AFTER:%Y%m%dT%H%M%S}", dataset  # the same name for export, gates, train, evaluate
    assert dataset in rendered["finetune.export"]["op_args"][0] and dataset in rendered["finetune.gates"]["op_args"]
    refresh = rendered["booru_score_refresh.refresh_danbooru"]["op_args"][0]
    due = refresh[refresh.index("--due-as-of") + 1]
    expected = RUN_KINDS[kind]["data_interval_end"] or RUN_AFTER
    assert datetime.fromisoformat(due) == expected, (kind, due)
