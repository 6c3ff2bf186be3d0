"""booru_scrape_<site>: new posts every hour, then the scraped-batch quality gate, then the site's asset."""

from __future__ import annotations

from airflow.sdk import DAG
from airflow.timetables.interval import CronDataIntervalTimetable

from pony_airflow.assets import BOORU_POSTS
from pony_airflow.defaults import dag_kwargs
from pony_airflow.failures import fail_run_when_a_task_fails, pony_task
from pony_airflow.operators import stage_operator
from pony_tasks.orchestration.stages import SITES, scrape_new

DOC = """
### Scrape new posts from {site}

Fetches every post above the stored cursor (`pony scrape {site} --mode new`): incremental, resumable, polite
(rate limit and retries from settings). Then the **scraped_posts** quality gate runs on the posts observed by this
run; only when it passes is the `booru_posts_{site}` asset updated (images_fetch and scores_normalize listen to it).

Backfills (`airflow backfill create --dag-id booru_scrape_{site} --from-date … --to-date …`) are safe: the scrape
resumes from the cursor, so a run for an old interval fetches only what is still missing and never duplicates.
Older history than the cursor: `pony scrape {site} --mode backfill`.
"""


def build(site: str) -> DAG:
    with DAG(
        dag_id=f"booru_scrape_{site}",
        schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
        **dag_kwargs(DOC.format(site=site), ["scrape", site]),
    ) as dag:
        scraped = stage_operator("scrape_new", scrape_new(site))

        @pony_task(outlets=[BOORU_POSTS[site]])
        def check_scraped_posts(dag_run=None) -> str:
            from pony_airflow.notifiers import quality_gate_task

            return quality_gate_task("scraped_posts", site=site, since=dag_run.start_date)

        scraped >> check_scraped_posts()
        fail_run_when_a_task_fails(dag)
    return dag


for _site in SITES:
    globals()[f"booru_scrape_{_site}"] = build(_site)
