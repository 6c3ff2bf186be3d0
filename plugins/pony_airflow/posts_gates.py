"""The per-site scrape gates of one run, and the one ``booru_posts`` event they hand on together.

A scrape or refresh run works on every site: one ``pony`` task and one **scraped_posts** gate per site. The sites
finish minutes apart; an asset event per site would start images_fetch and scores_normalize once for the first site
and again for the rest (Airflow 3.3 batches only the events already queued when it creates a run). So the gates
update nothing themselves: ``announce_posts`` runs after all of them, whatever their outcome, and updates
``booru_posts`` once — naming the sites whose gate passed — or, when none passed, is skipped and updates nothing.
A site whose scrape or gate failed leaves the run red (``run_outcome``) without holding back the other sites' posts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pony_airflow.assets import BOORU_POSTS
from pony_airflow.failures import pony_task
from pony_airflow.operators import stage_operator
from pony_tasks.execution import StageCommand
from pony_tasks.orchestration.stages import SITES

ANNOUNCE_TASK = "announce_posts"


def site_gate(site: str, task_id: str):  # noqa: ANN201 - an Airflow task
    """The **scraped_posts** quality gate of ``site`` on the posts this run observed."""

    @pony_task(task_id=task_id)
    def check(dag_run=None) -> str:  # noqa: ANN001 - Airflow context
        from pony_airflow.notifiers import quality_gate_task

        return quality_gate_task("scraped_posts", site=site, since=dag_run.start_date)

    return check()


def announce_posts(gates: dict[str, Any]):  # noqa: ANN201 - an Airflow task
    """One ``booru_posts`` update after every gate in ``gates`` ({site: gate task}) has finished."""
    task_ids = {site: gate.operator.task_id for site, gate in gates.items()}

    @pony_task(task_id=ANNOUNCE_TASK, outlets=[BOORU_POSTS], trigger_rule="all_done")
    def announce(ti=None, outlet_events=None) -> str:  # noqa: ANN001 - Airflow context
        from airflow.sdk.exceptions import AirflowSkipException

        passed = sorted(site for site, task_id in task_ids.items() if ti.xcom_pull(task_ids=task_id) is not None)
        if not passed:
            raise AirflowSkipException("no site's posts passed their gate: booru_posts is not updated")
        outlet_events[BOORU_POSTS].extra = {"sites": passed}
        held = sorted(set(task_ids) - set(passed))
        return f"booru_posts updated for {', '.join(passed)}" + (f"; not for {', '.join(held)}" if held else "")

    task = announce()
    for gate in gates.values():
        gate >> task
    return task


def gated_sites(task_prefix: str, command: Callable[[str], StageCommand]):  # noqa: ANN201 - an Airflow task
    """Per configured site ``{task_prefix}_SITE`` (its ``pony`` command) → ``check_SITE``; then ``announce_posts``."""
    gates = {site: site_gate(site, f"check_{site}") for site in SITES}
    for site, gate in gates.items():
        stage_operator(f"{task_prefix}_{site}", command(site)) >> gate
    return announce_posts(gates)
