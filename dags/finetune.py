"""finetune: base-model preflight → gates → a person's approval → export → training (GPU) → quality-tag evaluation
(GPU)."""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import DAG

from pony_airflow.assets import CAPTIONS, FINETUNE
from pony_airflow.defaults import GPU_POOL, dag_kwargs
from pony_airflow.failures import fail_run_when_a_task_fails, pony_task
from pony_airflow.operators import stage_operator
from pony_airflow.params import check_params_task, dag_params, with_defaults
from pony_tasks.config import get_settings
from pony_tasks.orchestration.stages import export_dataset, finetune_eval, finetune_preflight, finetune_train

DOC = """
### Gated fine-tune

Runs when a new caption set passes its gate (asset `captions`) — with the parameters' defaults, which the setting
`finetune_param_defaults` sets (base model, steps, …) — or by hand with parameters. `check_params` checks the whole
conf first. `preflight` checks the base model where training runs (`pony finetune preflight`: a diffusers model
directory with every component) and fails at once, naming the setting, when it is missing — before anyone is asked.
`gates` checks, and records in `finetune_gate`, on what the export would hold (nothing is written yet): the active
caption set's data-quality check passed, its captions come from the active aesthetic model, and at least
`min_new_images` works are new since the last completed run; an unmet gate **skips** the rest (the reason is on the
*Plugins → Pony Pipeline → Pipeline reports* page and in the task's log). `approve` waits for a person (Approve /
Reject under *Required actions*, 3 days; no answer fails the run); `record_approval` records the answer and who gave
it, and a rejection skips the rest. Only then does `export` write the kohya export `ft-<run_after>` (every run type
has a run_after) of the active caption set (bands ≥ `min_band`). `train` runs `pony finetune run` (GPU pool; a GPU
pod under Kubernetes), `evaluate` runs `pony finetune eval`: mean aesthetic score per quality tag alone and
Spearman(tag level, score), plotted under `finetune/run-<id>/eval/`.
"""
DATASET = "ft-{{ dag_run.run_after | ts_nodash }}"  # every run type has run_after (asset runs have no logical date)

RULES = {
    "base_model": {"default": "/models/stable-diffusion-v1-5", "type": "string", "minLength": 1,
                   "description": "diffusers model directory (SD 1.x or SDXL family) on the worker."},
    "method": {"default": "lora", "enum": ["lora", "full"]},
    "steps": {"default": 2000, "type": "integer", "minimum": 1, "maximum": 1_000_000},
    "batch_size": {"default": 4, "type": "integer", "minimum": 1, "maximum": 256},
    "learning_rate": {"default": 1e-4, "type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "resolution": {"default": 512, "type": "integer", "minimum": 16, "maximum": 2048, "description": "SDXL: 1024."},
    "checkpoint_every": {"default": 250, "type": "integer", "minimum": 1},
    "min_band": {"default": 1, "type": "integer", "minimum": 1, "maximum": 9,
                 "description": "Export only captions of this band or up."},
    "min_new_images": {"default": 1000, "type": "integer", "minimum": 0,
                       "description": "Gate: images new since the last run."},
    "eval_steps": {"default": 25, "type": "integer", "minimum": 1, "maximum": 200},
    "eval_resolution": {"default": 512, "type": "integer", "minimum": 16, "maximum": 2048},
}  # fmt: skip
RULES = with_defaults(RULES, get_settings().finetune_param_defaults, "finetune_param_defaults")

with DAG(dag_id="finetune", schedule=[CAPTIONS], params=dag_params(RULES),
         **dag_kwargs(DOC, ["finetune", "gpu"])) as dag:  # fmt: skip
    preflight = stage_operator("preflight", finetune_preflight())

    @pony_task
    def gates(dataset: str, params=None, run_id=None) -> str:
        from airflow.sdk.exceptions import AirflowSkipException

        from pony_tasks.finetune.gates import check_selection_gates

        decisions = check_selection_gates(dataset, min_band=params["min_band"], min_new_images=params["min_new_images"],
                                          context=run_id)  # fmt: skip
        unmet = [f"{d.gate}: {d.detail}" for d in decisions if not d.passed]
        if unmet:
            raise AirflowSkipException("fine-tune gates not met — " + "; ".join(unmet))
        text = f"{dataset}: every gate passed — " + "; ".join(f"{d.gate}: {d.detail}" for d in decisions)
        print(text)
        return text

    approve = HITLOperator(  # not ApprovalOperator: a rejection must reach record_approval to be recorded
        task_id="approve",
        subject="Start a fine-tune on {{ params.base_model }} with " + DATASET + "?",
        body="{{ ti.xcom_pull(task_ids='gates') }}\n\nTraining: {{ params.method }}, {{ params.steps }} steps, "
             "batch {{ params.batch_size }}, resolution {{ params.resolution }}, learning rate "
             "{{ params.learning_rate }}.",
        options=["Approve", "Reject"],
        response_timeout=timedelta(days=3),
    )  # fmt: skip

    @pony_task(trigger_rule="all_done")
    def record_approval(dataset: str, run_id=None, ti=None) -> str:
        from airflow.sdk.exceptions import AirflowSkipException

        from pony_tasks.db import connect
        from pony_tasks.finetune.gates import approval_decision, record

        if ti.xcom_pull(task_ids="gates") is None:
            raise AirflowSkipException("gates not met: nothing to approve")
        decision = approval_decision(ti.xcom_pull(task_ids="approve"))
        with connect() as conn:
            record(conn, run_id, dataset, [decision])
        print(f"{dataset}: human approval {'given' if decision.passed else 'refused'} ({decision.detail})")
        if not decision.passed:
            raise AirflowSkipException("a person rejected this fine-tune")
        return decision.detail

    exported = stage_operator("export", export_dataset(DATASET, "{{ params.min_band }}"))
    trained = stage_operator("train", finetune_train(DATASET), pool=GPU_POOL)
    evaluated = stage_operator("evaluate", finetune_eval(DATASET), pool=GPU_POOL, outlets=[FINETUNE])

    check_params_task(RULES) >> preflight >> gates(DATASET) >> approve >> record_approval(DATASET) >> exported
    exported >> trained >> evaluated
    fail_run_when_a_task_fails(dag)
