"""images_fetch: download new posts' images when the booru_posts asset is updated."""

from __future__ import annotations

from airflow.sdk import DAG

from pony_airflow.assets import BOORU_POSTS, IMAGES
from pony_airflow.defaults import dag_kwargs
from pony_airflow.failures import fail_run_when_a_task_fails, pony_task
from pony_airflow.operators import stage_operator
from pony_tasks.orchestration.stages import fetch_images

DOC = """
### Fetch images

Runs when the `booru_posts` asset is updated (once per scrape or refresh run): `pony images fetch` downloads,
verifies (size, hash, decode, pixel limit) and stores images content-addressed; bad files are quarantined with a
reason, never stored. Every site at once, each host within its rate limit; one run downloads for at most 50 minutes
and the next carries on from where it stopped (a backlog of millions takes many runs, each handed on as a batch).
The **images** quality gate checks what this run stored before the `images` asset is updated (embed_and_score
listens to it).
"""

with DAG(
    dag_id="images_fetch",
    schedule=[BOORU_POSTS],
    **dag_kwargs(DOC, ["images"]),
) as dag:
    fetched = stage_operator("fetch_images", fetch_images())

    @pony_task(outlets=[IMAGES])
    def check_images(dag_run=None) -> str:
        from pony_airflow.notifiers import quality_gate_task

        return quality_gate_task("images", since=dag_run.start_date)

    fetched >> check_images()
    fail_run_when_a_task_fails(dag)
