"""finetune: export → gates → a person's approval → training (GPU) → quality-tag evaluation (GPU)."""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import DAG, Param, task

from pony_airflow.assets import CAPTIONS, FINETUNE
from pony_airflow.defaults import GPU_POOL, dag_kwargs
from pony_airflow.operators import stage_operator
from pony_tasks.orchestration.stages import export_dataset, finetune_eval, finetune_train

DOC = """
### Gated fine-tune

Runs when a new caption set passes its gate (asset `captions`), or by hand with parameters. `export` writes a kohya
export of the active caption set (bands ≥ `min_band`). `gates` checks, and records in `finetune_gate`, that the
set's data-quality check passed, that its captions come from the active aesthetic model and that at least
`min_new_images` images are new since the last completed run; an unmet gate **skips** the rest. `approve` waits for
a person (Approve / Reject under *Required actions*); a rejection skips training. `train` runs
`pony finetune run` (GPU pool; a GPU pod under Kubernetes), `evaluate` runs `pony finetune eval`: mean aesthetic
score per quality tag alone and Spearman(tag level, score), plotted under `finetune/run-<id>/eval/`.
"""
DATASET = "ft-{{ ts_nodash }}"

PARAMS = {
    "base_model": Param("/models/stable-diffusion-v1-5", type="string", minLength=1,
                        description="diffusers model directory (SD 1.x or SDXL family) on the worker."),
    "method": Param("lora", enum=["lora", "full"]),
    "steps": Param(2000, type="integer", minimum=1, maximum=1_000_000),
    "batch_size": Param(4, type="integer", minimum=1, maximum=256),
    "learning_rate": Param(1e-4, type="number", exclusiveMinimum=0, maximum=1),
    "resolution": Param(512, type="integer", minimum=16, maximum=2048, description="SDXL: 1024."),
    "checkpoint_every": Param(250, type="integer", minimum=1),
    "min_band": Param(1, type="integer", minimum=1, maximum=9, description="Export only captions of this band or up."),
    "min_new_images": Param(1000, type="integer", minimum=0, description="Gate: images new since the last run."),
    "eval_steps": Param(25, type="integer", minimum=1, maximum=200),
    "eval_resolution": Param(512, type="integer", minimum=16, maximum=2048),
}  # fmt: skip

with DAG(dag_id="finetune", schedule=[CAPTIONS], params=PARAMS, **dag_kwargs(DOC, ["finetune", "gpu"])) as dag:
    exported = stage_operator("export", export_dataset(DATASET, "{{ params.min_band }}"))

    @task
    def gates(params=None, run_id=None, ts_nodash=None) -> list[dict]:
        from airflow.sdk.exceptions import AirflowSkipException

        from pony_tasks.finetune.gates import check_gates

        decisions = check_gates(f"ft-{ts_nodash}", min_new_images=params["min_new_images"], context=run_id)
        unmet = [f"{d.gate}: {d.detail}" for d in decisions if not d.passed]
        if unmet:
            raise AirflowSkipException("fine-tune gates not met — " + "; ".join(unmet))
        return [d.__dict__ for d in decisions]

    approve = ApprovalOperator(
        task_id="approve",
        subject="Start fine-tune on ft-{{ ts_nodash }}?",
        body="Gates passed: {{ ti.xcom_pull(task_ids='gates') }}. Parameters: {{ params }}",
        defaults="Reject",
        response_timeout=timedelta(days=3),
    )

    @task(trigger_rule="all_done")
    def record_approval(run_id=None, ts_nodash=None, ti=None) -> str:
        from airflow.sdk.exceptions import AirflowSkipException

        from pony_tasks.db import connect
        from pony_tasks.finetune.gates import approval_decision, record

        if ti.xcom_pull(task_ids="gates") is None:
            raise AirflowSkipException("gates not met: nothing to approve")
        decision = approval_decision(ti.xcom_pull(task_ids="approve"))
        with connect() as conn:
            record(conn, run_id, f"ft-{ts_nodash}", [decision])
        approved, detail = decision.passed, decision.detail
        if not approved:
            raise AirflowSkipException("a person rejected this fine-tune")
        return detail

    trained = stage_operator("train", finetune_train(DATASET), pool=GPU_POOL)
    evaluated = stage_operator("evaluate", finetune_eval(DATASET), pool=GPU_POOL, outlets=[FINETUNE])

    exported >> gates() >> approve >> record_approval() >> trained >> evaluated
