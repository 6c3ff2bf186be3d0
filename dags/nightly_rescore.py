"""nightly_rescore: every night, all embeddings scored again with the active aesthetic model."""

from __future__ import annotations

from airflow.sdk import DAG

from pony_airflow.assets import AESTHETIC_SCORES
from pony_airflow.defaults import dag_kwargs
from pony_airflow.failures import fail_run_when_a_task_fails, pony_task
from pony_airflow.operators import stage_operator
from pony_tasks.orchestration.stages import score_images

DOC = """
### Nightly full rescore

At 03:30 UTC, `pony aesthetic score --full` replaces every score of the active version in one transaction (readers
see the old scores or the new ones), then the **aesthetic_scores** gate checks range, spread and drift against the
previous version. Skipped while no version is active.
"""

with DAG(dag_id="nightly_rescore", schedule="30 3 * * *", **dag_kwargs(DOC, ["aesthetic", "nightly"])) as dag:

    @pony_task.short_circuit
    def has_active_model() -> bool:
        from pony_tasks.orchestration.tasks import active_aesthetic_version

        return active_aesthetic_version() is not None

    @pony_task(outlets=[AESTHETIC_SCORES])
    def check_scores() -> str:
        from pony_airflow.notifiers import quality_gate_task
        from pony_tasks.orchestration.tasks import active_aesthetic_version

        return quality_gate_task("aesthetic_scores", version_id=active_aesthetic_version())

    has_active_model() >> stage_operator("rescore", score_images(full=True)) >> check_scores()
    fail_run_when_a_task_fails(dag)
