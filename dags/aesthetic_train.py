"""aesthetic_train (manual): train a candidate on the human ratings, wait for a person's approval, promote."""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import DAG

from pony_airflow.assets import AESTHETIC_MODEL
from pony_airflow.defaults import dag_kwargs
from pony_airflow.failures import fail_run_when_a_task_fails, pony_task
from pony_airflow.operators import stage_operator
from pony_airflow.params import CHECKED_PARAMS_JSON, check_params_task, dag_params
from pony_tasks.orchestration.stages import train_aesthetic

DOC = """
### Train an aesthetic model (manual)

Trigger from the UI with parameters. `check_params` checks the whole conf first (unknown keys, ranges) and fails at
once naming every problem. `train` fits a candidate on the human 1–5 ratings (optionally only some rating sets /
images with enough raters) and records held-out metrics. `approve` waits for a person (Approve / Reject under
*Required actions*, 7 days; no answer fails the run); `promote` then makes it active only if it is not worse than
the active version on the same held-out images, and emits an `aesthetic_model` asset event with
`{"version_id": N}` — captions_regenerate listens to it.
"""

RULES = {
    "architecture": {"default": "mlp", "enum": ["mlp", "linear"], "description": "Head on the CLIP embedding."},
    "epochs": {"default": 300, "type": "integer", "minimum": 1, "maximum": 10_000},
    "learning_rate": {"default": 1e-3, "type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "patience": {"default": 20, "type": "integer", "minimum": 1, "maximum": 1_000,
                 "description": "Early-stopping patience."},
    "seed": {"default": 0, "type": "integer", "minimum": 0},
    "rating_sets": {"default": [], "type": "array", "items": {"type": "integer", "minimum": 1},
                    "description": "Only images of these rating sets; empty = every rated image."},
    "min_raters": {"default": 1, "type": "integer", "minimum": 1, "maximum": 100,
                   "description": "Only images rated by at least this many people."},
}  # fmt: skip

with DAG(dag_id="aesthetic_train", schedule=None, params=dag_params(RULES),
         **dag_kwargs(DOC, ["aesthetic", "manual"])) as dag:  # fmt: skip
    trained = stage_operator("train", train_aesthetic(CHECKED_PARAMS_JSON))

    @pony_task(multiple_outputs=False)
    def find_candidate(dag_run=None) -> dict:
        from pony_tasks.orchestration.tasks import newest_candidate

        candidate = newest_candidate(dag_run.start_date)
        print(candidate["summary"])
        return candidate

    candidate = find_candidate()
    approve = ApprovalOperator(
        task_id="approve",
        subject="Promote aesthetic version {{ ti.xcom_pull(task_ids='find_candidate')['version_id'] }}?",
        body="{{ ti.xcom_pull(task_ids='find_candidate')['summary'] }}",
        response_timeout=timedelta(days=7),
    )

    @pony_task(outlets=[AESTHETIC_MODEL])
    def promote(candidate: dict, outlet_events=None) -> str:
        from pony_tasks.orchestration.tasks import promote_version

        text = promote_version(candidate["version_id"])
        outlet_events[AESTHETIC_MODEL].extra = {"version_id": candidate["version_id"]}
        print(text)
        return text

    check_params_task(RULES) >> trained >> candidate >> approve >> promote(candidate)
    fail_run_when_a_task_fails(dag)
