"""booru_score_refresh: daily re-fetch of posts whose age reached a refresh milestone, per site."""

from __future__ import annotations

from airflow.sdk import DAG
from airflow.timetables.interval import CronDataIntervalTimetable

from pony_airflow.defaults import dag_kwargs
from pony_airflow.failures import fail_run_when_a_task_fails
from pony_airflow.posts_gates import gated_sites
from pony_tasks.orchestration.stages import scrape_refresh

DOC = """
### Refresh scores on the age schedule

Scores grow with a post's age, so each post is re-fetched when it passes 1, 7, 30, 90 and 365 days
(`refresh_ages_days`). Daily at 00:00 UTC; each run covers one calendar day (its data interval) and each site runs
`pony scrape SITE --mode refresh --due-as-of <data interval end>`: a post is due when a milestone fell before that
time and the post has not been observed since the milestone. A quality gate per site follows (`check_SITE`), then
`announce_posts` updates the `booru_posts` asset once for the sites that passed.

**Backfill** one run per day, one at a time:
`airflow backfill create --dag-id booru_score_refresh --from-date 2026-11-01 --to-date 2026-11-07 --max-active-runs 1`
makes 7 runs (Nov 1 … Nov 7, both dates included). Each re-fetches what was due at the end of its day and has not
been observed since — what a scheduler outage missed. Posts first scraped after that day were observed after their
milestones, so a backfill over a window before they were scraped fetches nothing for them (its log says `0 posts due`).
"""
# The run's data-interval end; a manual run without a logical date (REST/UI may leave it empty) has no interval,
# so its trigger time stands in. Never `data_interval_end` alone: undefined for such runs.
DUE_AS_OF = "{{ (dag_run.data_interval_end or dag_run.run_after) | ts }}"

with DAG(
    dag_id="booru_score_refresh",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),  # one run per calendar day
    **dag_kwargs(DOC, ["scrape", "refresh"]),
) as dag:
    gated_sites("refresh", lambda site: scrape_refresh(site, DUE_AS_OF))
    fail_run_when_a_task_fails(dag)
