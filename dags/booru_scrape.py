"""booru_scrape: every site's new posts each hour, each site's scraped-batch gate, then one booru_posts update."""

from __future__ import annotations

from airflow.sdk import DAG
from airflow.timetables.interval import CronDataIntervalTimetable

from pony_airflow.defaults import dag_kwargs
from pony_airflow.failures import fail_run_when_a_task_fails
from pony_airflow.posts_gates import gated_sites
from pony_tasks.orchestration.stages import scrape_new

DOC = """
### Scrape new posts from every site

One task per site (`scrape_SITE`: `pony scrape SITE --mode new`) fetches every post above the site's stored cursor:
incremental, resumable, polite (rate limit and retries from settings; the sites run side by side, each host at its
own limit). Then each site's **scraped_posts** quality gate (`check_SITE`) runs on the posts observed by this run.
When every gate has decided, `announce_posts` updates the `booru_posts` asset **once** for the sites that passed
(images_fetch and scores_normalize listen to it: one run each per scrape run). A site that failed leaves the run red
and does not hold back the others; when no site passed, nothing is updated.

Backfills (`airflow backfill create --dag-id booru_scrape --from-date … --to-date …`) are safe: each scrape
resumes from its cursor, so a run for an old interval fetches only what is still missing and never duplicates.
Older history than the cursor: `pony scrape SITE --mode backfill`. To stop scraping one site, set
`enabled = false` in its `[sites.NAME]` table of `pony.toml`.
"""

with DAG(
    dag_id="booru_scrape",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    **dag_kwargs(DOC, ["scrape"]),
) as dag:
    gated_sites("scrape", scrape_new)
    fail_run_when_a_task_fails(dag)
