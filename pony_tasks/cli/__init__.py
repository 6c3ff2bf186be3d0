"""The ``pony`` command line. Each sub-command group lives in its own module and calls the library."""

from __future__ import annotations

import importlib
import logging
import sys

import click

from pony_tasks.cli.common import PonyContext
from pony_tasks.config import ConfigError
from pony_tasks.errors import EXIT_PERMANENT, EXIT_TRANSIENT, EXIT_USAGE, is_permanent

# Each command group lives in its own module and is imported only when it is used (click's lazy-group pattern):
# `pony scrape` never pays for torch, scipy or Great Expectations, which the aesthetic, embed and quality groups load.
COMMANDS = {
    "config": "pony_tasks.cli.config_cmd:config_group",
    "db": "pony_tasks.cli.db_cmd:db_group",
    "storage": "pony_tasks.cli.storage_cmd:storage_group",
    "scrape": "pony_tasks.cli.scrape_cmd:scrape_command",
    "posts": "pony_tasks.cli.posts_cmd:posts_group",
    "import": "pony_tasks.cli.import_cmd:import_group",
    "images": "pony_tasks.cli.images_cmd:images_group",
    "plan": "pony_tasks.cli.plan_cmd:plan_command",
    "normalize": "pony_tasks.cli.normalize_cmd:normalize_group",
    "ratings": "pony_tasks.cli.ratings_cmd:ratings_group",
    "embed": "pony_tasks.cli.embed_cmd:embed_command",
    "aesthetic": "pony_tasks.cli.aesthetic_cmd:aesthetic_group",
    "captions": "pony_tasks.cli.captions_cmd:captions_group",
    "export": "pony_tasks.cli.export_cmd:export_group",
    "finetune": "pony_tasks.cli.finetune_cmd:finetune_group",
    "quality": "pony_tasks.cli.quality_cmd:quality_group",
    "fake-booru": "pony_tasks.cli.fake_cmd:fake_booru_command",
    "demo": "pony_tasks.cli.demo_cmd:demo_command",
    "airflow": "pony_tasks.cli.airflow_cmd:airflow_group",
    "works": "pony_tasks.cli.works_cmd:works_group",
    "styles": "pony_tasks.cli.styles_cmd:styles_group",
}


class LazyGroup(click.Group):
    """A group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attribute = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attribute)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="pony-pipeline")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Pony Pipeline: booru images to captioned, quality-tagged training data.

    Settings come from PONY_* environment variables and an optional pony.toml; see `pony config show`.
    """
    ctx.obj = PonyContext()


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a clear one-line error for users; the traceback at DEBUG
        logging.getLogger("pony_tasks").debug("unhandled error", exc_info=True)
        click.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        permanent = is_permanent(exc)
        if permanent:
            click.echo("(this fails the same way if retried: fix the cause, then run it again)", err=True)
        click.echo("(set PONY_LOG_LEVEL=DEBUG for the traceback)", err=True)
        sys.exit(EXIT_PERMANENT if permanent else EXIT_TRANSIENT)
