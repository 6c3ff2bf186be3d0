"""scores_normalize: a new normalisation run when the booru_posts asset is updated."""

from __future__ import annotations

from airflow.sdk import DAG

from pony_airflow.assets import BOORU_POSTS, NORMALIZED_SCORES
from pony_airflow.defaults import dag_kwargs
from pony_airflow.failures import fail_run_when_a_task_fails
from pony_airflow.operators import stage_operator
from pony_tasks.orchestration.stages import normalize_scores

DOC = """
### Normalise popularity across sites

Runs when the `booru_posts` asset is updated (once per scrape or refresh run). `pony normalize run`
writes a new versioned run (percentile within site, rating and upload cohort; young posts predicted from the growth
curve and flagged provisional) and attaches it atomically; readers use the newest complete run.
"""

with DAG(
    dag_id="scores_normalize",
    schedule=[BOORU_POSTS],
    **dag_kwargs(DOC, ["normalize"]),
) as dag:
    stage_operator("normalize", normalize_scores(), outlets=[NORMALIZED_SCORES])
    fail_run_when_a_task_fails(dag)
