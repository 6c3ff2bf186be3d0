from __future__ import annotations

import click

from pony_tasks.cli.common import PonyContext


@click.group("airflow")
def airflow_group() -> None:
    """Run the pipeline's DAGs in a local Airflow (see `make airflow`)."""


@airflow_group.command("env")
@click.pass_obj
def airflow_env(ctx: PonyContext) -> None:
    """Print `export …` lines for Airflow on the embedded defaults (eval "$(pony airflow env)")."""
    from pony_tasks.db.embedded import ensure_embedded_server
    from pony_tasks.orchestration.standalone import airflow_environment, shell_exports

    if ctx.settings.database_url is None:
        ensure_embedded_server(ctx.settings.resolved_home, keep_running=True)  # outlives this command
    click.echo(shell_exports(airflow_environment(ctx.settings)))
