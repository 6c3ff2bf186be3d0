from __future__ import annotations

import click

from pony_tasks.cli.common import PonyContext
from pony_tasks.demo import run_demo


@click.command("demo")
@click.pass_obj
def demo_command(ctx: PonyContext) -> None:
    """The pipeline end to end without Airflow (library calls; `make demo` runs it through Airflow)."""
    run_demo(ctx.settings, echo=click.echo)
