from __future__ import annotations

import click

from pony_tasks.cli.common import PonyContext
from pony_tasks.demo import run_demo


@click.command("demo")
@click.pass_obj
def demo_command(ctx: PonyContext) -> None:
    """Run every pipeline stage that exists so far, end to end, on the configured (default: embedded) setup."""
    run_demo(ctx.settings, echo=click.echo)
