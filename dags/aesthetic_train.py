"""aesthetic_train (manual): train a candidate on the human ratings, wait for a person's approval, promote."""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import DAG, Metadata, Param, task

from pony_airflow.assets import AESTHETIC_MODEL
from pony_airflow.defaults import dag_kwargs
from pony_airflow.operators import stage_operator
from pony_tasks.orchestration.stages import train_aesthetic

DOC = """
### Train an aesthetic model (manual)

Trigger from the UI with parameters (validated by JSON Schema before the run starts). `train` fits a candidate
on the human 1–5 ratings (optionally only some rating sets / images with enough raters) and records held-out
metrics. `approve` waits for a person (Approve / Reject in the UI, 7 days); `promote` then makes it active only
if it is not worse than the active version on the same held-out images, and emits an `aesthetic_model` asset
event with `{"version_id": N}` — captions_regenerate listens to it.
"""

PARAMS = {
    "architecture": Param("mlp", enum=["mlp", "linear"], description="Head on the CLIP embedding."),
    "epochs": Param(300, type="integer", minimum=1, maximum=10_000),
    "learning_rate": Param(1e-3, type="number", exclusiveMinimum=0, maximum=1),
    "patience": Param(20, type="integer", minimum=1, maximum=1_000, description="Early-stopping patience."),
    "seed": Param(0, type="integer", minimum=0),
    "rating_sets": Param([], type="array", items={"type": "integer", "minimum": 1},
                         description="Only images of these rating sets; empty = every rated image."),
    "min_raters": Param(1, type="integer", minimum=1, maximum=100,
                        description="Only images rated by at least this many people."),
}  # fmt: skip

with DAG(dag_id="aesthetic_train", schedule=None, params=PARAMS, **dag_kwargs(DOC, ["aesthetic", "manual"])) as dag:
    trained = stage_operator("train", train_aesthetic())

    @task
    def find_candidate(dag_run=None) -> dict:
        from pony_tasks.orchestration.tasks import newest_candidate

        return newest_candidate(dag_run.start_date)

    candidate = find_candidate()
    approve = ApprovalOperator(
        task_id="approve",
        subject="Promote aesthetic version {{ ti.xcom_pull(task_ids='find_candidate')['version_id'] }}?",
        body="Held-out metrics: {{ ti.xcom_pull(task_ids='find_candidate')['metrics'] }}",
        defaults="Reject",
        response_timeout=timedelta(days=7),
    )

    @task(outlets=[AESTHETIC_MODEL])
    def promote(candidate: dict):
        from pony_tasks.orchestration.tasks import promote_version

        comparison = promote_version(candidate["version_id"])
        yield Metadata(AESTHETIC_MODEL, {"version_id": candidate["version_id"], "comparison": comparison})

    trained >> candidate >> approve >> promote(candidate)
