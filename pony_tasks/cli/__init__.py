"""The ``pony`` command line. Each sub-command group lives in its own module and calls the library."""

from __future__ import annotations

import logging
import sys

import click

from pony_tasks.cli.aesthetic_cmd import aesthetic_group
from pony_tasks.cli.airflow_cmd import airflow_group
from pony_tasks.cli.captions_cmd import captions_group
from pony_tasks.cli.common import PonyContext
from pony_tasks.cli.config_cmd import config_group
from pony_tasks.cli.db_cmd import db_group
from pony_tasks.cli.demo_cmd import demo_command
from pony_tasks.cli.embed_cmd import embed_command
from pony_tasks.cli.export_cmd import export_group
from pony_tasks.cli.fake_cmd import fake_booru_command
from pony_tasks.cli.finetune_cmd import finetune_group
from pony_tasks.cli.images_cmd import images_group
from pony_tasks.cli.normalize_cmd import normalize_group
from pony_tasks.cli.posts_cmd import posts_group
from pony_tasks.cli.quality_cmd import quality_group
from pony_tasks.cli.ratings_cmd import ratings_group
from pony_tasks.cli.scrape_cmd import scrape_command
from pony_tasks.cli.storage_cmd import storage_group
from pony_tasks.config import ConfigError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="pony-pipeline")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Pony Pipeline: booru images to captioned, quality-tagged training data.

    Settings come from PONY_* environment variables and an optional pony.toml; see `pony config show`.
    """
    ctx.obj = PonyContext()


cli.add_command(config_group)
cli.add_command(db_group)
cli.add_command(storage_group)
cli.add_command(scrape_command)
cli.add_command(posts_group)
cli.add_command(images_group)
cli.add_command(normalize_group)
cli.add_command(ratings_group)
cli.add_command(embed_command)
cli.add_command(aesthetic_group)
cli.add_command(captions_group)
cli.add_command(export_group)
cli.add_command(finetune_group)
cli.add_command(quality_group)
cli.add_command(fake_booru_command)
cli.add_command(demo_command)
cli.add_command(airflow_group)


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
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a clear one-line error for users; the traceback at DEBUG
        logging.getLogger("pony_tasks").debug("unhandled error", exc_info=True)
        click.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        click.echo("(set PONY_LOG_LEVEL=DEBUG for the traceback)", err=True)
        sys.exit(1)
