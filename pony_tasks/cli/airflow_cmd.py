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


@airflow_group.command("ready")
@click.option("--url", default="http://localhost:8080", show_default=True, help="The Airflow API server.")
@click.option("--timeout", default=600, show_default=True, type=click.IntRange(1), help="Seconds to wait for it.")
@click.option("--passwords", type=click.Path(dir_okay=False), help="Airflow's generated passwords file (simple auth).")
def airflow_ready(url: str, timeout: int, passwords: str | None) -> None:
    """Wait until the Airflow UI answers, then print once, plainly, where it is and how to log in (`make airflow`
    runs this beside Airflow, whose own start-up output is thousands of lines)."""
    import json
    import time
    import urllib.error
    import urllib.request
    from pathlib import Path

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5):
                break
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise click.ClickException(f"Airflow did not answer at {url} within {timeout} s: see its output above")
        time.sleep(2)
    logins = []
    if passwords and Path(passwords).is_file():
        logins = [f"  {name} / {password}" for name, password in json.loads(Path(passwords).read_text()).items()]
    rule = "=" * 78
    how = ("log in as (user / password; also in " + passwords + "):\n" + "\n".join(logins) if logins
           else "no login (every visitor is admin 'Anonymous'; PONY_AIRFLOW_USERS=ana:admin gives named logins)")
    click.echo(f"\n{rule}\nAirflow is up: {url} — Pony Pipeline's pages are in the menu under Plugins.\n{how}\n"
               f"Ctrl-C stops everything (Airflow, the fake boorus, the embedded PostgreSQL).\n{rule}")
