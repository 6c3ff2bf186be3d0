"""embed_and_score: CLIP embeddings for new images in batches (dynamic task mapping, gpu pool), then scores."""

from __future__ import annotations

from airflow.sdk import DAG

from pony_airflow.assets import AESTHETIC_SCORES, EMBEDDINGS, IMAGES
from pony_airflow.defaults import GPU_POOL, dag_kwargs
from pony_airflow.failures import fail_run_when_a_task_fails, pony_task
from pony_airflow.operators import mapped_stage_operator, stage_operator
from pony_tasks.orchestration.stages import embed_range, score_images

DOC = """
### Embed new images and score them

Runs when the `images` asset is updated. `plan_batches` splits the images that still lack an embedding into
non-overlapping sha256 ranges of `embed_task_images` (≥ 10,000) images — larger when that would make more tasks
than Airflow's `max_map_length` (1,024: 28M pending images plan as 1,024 ranges of 27,344) —; one mapped task
per range runs `pony embed --from-sha … --to-sha …` in the **gpu** pool (a GPU pod when
`execution_target = kubernetes`). Then the active aesthetic model scores the new embeddings (skipped while no
model is active), and the **embeddings** (dimension, finite, unit norm) and **aesthetic_scores** (range,
spread, drift) gates run.
"""

with DAG(dag_id="embed_and_score", schedule=[IMAGES], **dag_kwargs(DOC, ["embed", "aesthetic", "gpu"])) as dag:

    @pony_task
    def plan_batches() -> list[list[str]]:
        from airflow.configuration import conf

        from pony_tasks.orchestration.stages import plan_embed_ranges

        limit = conf.getint("core", "max_map_length", fallback=1024)  # a longer mapping fails this task
        return [list(embed_range(first, last).argv) for first, last in plan_embed_ranges(max_tasks=limit)]

    embedded = mapped_stage_operator("embed", embed_range("0", "f"), plan_batches(), pool=GPU_POOL)

    @pony_task(trigger_rule="none_failed", outlets=[EMBEDDINGS])
    def check_embeddings() -> str:
        from pony_airflow.notifiers import quality_gate_task
        from pony_tasks.config import get_settings
        from pony_tasks.orchestration.tasks import embedding_model_id

        model_id = embedding_model_id(get_settings().embed_model)
        if model_id is None:
            return "no embeddings yet"
        return quality_gate_task("embeddings", model_id=model_id)

    @pony_task.short_circuit
    def has_active_model() -> bool:
        from pony_tasks.orchestration.tasks import active_aesthetic_version

        return active_aesthetic_version() is not None

    scored = stage_operator("score", score_images())

    @pony_task(outlets=[AESTHETIC_SCORES])
    def check_scores() -> str:
        from pony_airflow.notifiers import quality_gate_task
        from pony_tasks.orchestration.tasks import active_aesthetic_version

        return quality_gate_task("aesthetic_scores", version_id=active_aesthetic_version())

    embedded >> check_embeddings() >> has_active_model() >> scored >> check_scores()
    fail_run_when_a_task_fails(dag)
