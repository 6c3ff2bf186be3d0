"""works_build (manual): works linked with the embedding candidates found by mapped tasks, a pod each — a first build
at the real size, or any run too large for one pod."""

from __future__ import annotations

from airflow.sdk import DAG

from pony_airflow.assets import WORKS
from pony_airflow.defaults import dag_kwargs
from pony_airflow.failures import fail_run_when_a_task_fails, pony_task
from pony_airflow.operators import mapped_stage_operator, stage_operator
from pony_airflow.params import check_params_task, dag_params
from pony_tasks.orchestration.stages import link_works, plan_works, works_part

DOC = """
### Build works in parts (issue 28)

The same linking as **works_link**, with its heaviest phase — the embedding candidates, which read every shard once
a pass and spill every vector twice (93 GB at 30M images) — spread over mapped tasks. `plan` (`pony works plan`)
trains the k-means cells on a sample of the vectors, stores them and records at least `parts` parts (more when a
part's spill would exceed its pod's scratch budget); each `embedding_part` task (`pony works part`, a pod of 8 GiB
and 32 GiB of scratch) reads the shards once, spills its range of cell groups and stores the pairs above cosine
0.90 it finds; `link` (`pony works run --plan`) adds the pHash and thumbnail candidates, judges every pair and
writes the works exactly as works_link does, then deletes the plan. The **works** gate runs last.

Trigger it for a first build of a large corpus (`only_new` off) or when a backlog of new images is too large for
works_link's one pod. A retried task repeats only its own part; a plan is keyed by the run id.
"""

RULES = {
    "parts": {"default": 8, "type": "integer", "minimum": 1, "maximum": 1024,
              "description": "At least this many embedding tasks (more when a part's spill would exceed the scratch "
                             "budget)."},
    "only_new": {"default": False, "type": "boolean",
                 "description": "Match only images in no work yet (as works_link does), not every image."},
}  # fmt: skip

with DAG(dag_id="works_build", schedule=None, params=dag_params(RULES), **dag_kwargs(DOC, ["works"])) as dag:
    planned = stage_operator("plan", plan_works("{{ run_id }}", "{{ params.parts }}",
                                                "{{ '--only-new' if params.only_new else '--all-images' }}"))

    @pony_task
    def part_arguments(run_id=None) -> list[list[str]]:  # noqa: ANN001 - Airflow context
        from pony_tasks.works.parts import plan_part_numbers

        return [list(works_part(run_id, part).argv) for part in plan_part_numbers(run_id)]

    arguments = part_arguments()
    parts = mapped_stage_operator("embedding_part", works_part("plan", 0), arguments)
    linked = stage_operator("link", link_works("{{ run_id }}"), trigger_rule="none_failed")

    @pony_task(outlets=[WORKS])
    def check_works() -> str:
        from pony_airflow.notifiers import quality_gate_task

        return quality_gate_task("works")

    check_params_task(RULES) >> planned >> arguments >> parts >> linked >> check_works()
    fail_run_when_a_task_fails(dag)
