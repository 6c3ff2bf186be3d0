from __future__ import annotations

import json

import click

from pony_tasks.cli.common import PonyContext
from pony_tasks.config import config_file_path


@click.group("config")
def config_group() -> None:
    """Inspect settings."""


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of aligned text.")
@click.pass_obj
def config_show(ctx: PonyContext, as_json: bool) -> None:
    """Print the effective settings, secrets masked, and where the config file is."""
    shown = ctx.settings.masked()
    source = config_file_path()
    if as_json:
        click.echo(json.dumps({"config_file": str(source) if source else None, **shown}, indent=2, default=str))
        return
    click.echo(f"# config file: {source or 'none (defaults and PONY_* environment variables)'}")
    width = max(map(len, shown))
    for name, value in shown.items():
        click.echo(f"{name:<{width}}  {json.dumps(value, default=str)}")
