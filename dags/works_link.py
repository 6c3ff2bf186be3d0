"""works_link: new images linked into works (the same picture across posts and sites) after embeddings land."""

from __future__ import annotations

from airflow.sdk import DAG

from pony_airflow.assets import EMBEDDINGS, WORKS
from pony_airflow.defaults import dag_kwargs
from pony_airflow.failures import fail_run_when_a_task_fails, pony_task
from pony_airflow.operators import stage_operator
from pony_tasks.orchestration.stages import link_works

DOC = """
### Link works (issue 15, first part)

Runs when the `embeddings` asset is updated. `pony works run --only-new` matches the images that are in no work yet
against every stored image: candidate pairs from perceptual hashes (multi-index pHash), each judged from the pHash,
the colour hash and the aspect ratio, stored with its evidence; images are grouped into works (stable ids; an
operator's `pony works split` / `unlink` always wins). The **works** gate (one row per work; a site with two files
in one work and a merged share above 50 % warn) then updates the `works` asset. Downstream stages do not read works
yet.
"""

with DAG(dag_id="works_link", schedule=[EMBEDDINGS], **dag_kwargs(DOC, ["works"])) as dag:

    @pony_task(outlets=[WORKS])
    def check_works() -> str:
        from pony_airflow.notifiers import quality_gate_task

        return quality_gate_task("works")

    stage_operator("link", link_works()) >> check_works()
    fail_run_when_a_task_fails(dag)
