from __future__ import annotations

import click

from pony_tasks.cli.common import PonyContext


@click.group("airflow")
def airflow_group() -> None:
    """Run the pipeline's DAGs in a local Airflow (see `make airflow`)."""


@airflow_group.command("env")
@click.option("--fakes/--real-sites", default=False, show_default=True,
              help="Point the pipeline at the fake boorus on 127.0.0.1:18101-18104 and the tiny demo CLIP model "
                   "(what `make airflow` does unless PONY_AIRFLOW_FAKES=0).")  # fmt: skip
@click.option("--users", envvar="PONY_AIRFLOW_USERS", default="", metavar="NAME:ROLE,…",
              help="Named Airflow logins (e.g. ana:admin,bob:user) instead of the all-admins dev mode; "
                   "env PONY_AIRFLOW_USERS.")  # fmt: skip
@click.pass_obj
def airflow_env(ctx: PonyContext, fakes: bool, users: str) -> None:
    """Print the `export …` lines of every variable `make airflow` sets (eval "$(pony airflow env --fakes)")."""
    from pony_tasks.db.embedded import ensure_embedded_server
    from pony_tasks.orchestration.standalone import airflow_environment, shell_exports

    if ctx.settings.database_url is None:
        ensure_embedded_server(ctx.settings.resolved_home, keep_running=True)  # outlives this command
    click.echo(shell_exports(airflow_environment(ctx.settings, fakes=fakes, users=users or None)))
