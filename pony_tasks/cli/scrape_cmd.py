from __future__ import annotations

from datetime import UTC, datetime

import click

from pony_tasks.boorus.engine import ScrapeMode, scrape
from pony_tasks.cli.common import SITE, PonyContext


@click.command("scrape")
@click.argument("site", type=SITE)
@click.option("--mode", type=click.Choice([m.value for m in ScrapeMode]), default="new", show_default=True,
              help="new: posts above the stored cursor; backfill: older posts below it; "
                   "refresh: re-fetch posts that reached a refresh age (refresh_ages_days).")  # fmt: skip
@click.option("--base-url", help="API base URL (a mirror, or a fake booru); default from settings or the real site.")
@click.option("--max-pages", type=click.IntRange(min=1), help="Stop after this many pages (resume later).")
@click.option("--due-as-of", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
              help="refresh: pick posts due as of this time (UTC if no offset) instead of now; Airflow passes the "
                   "run's data-interval end so backfills re-evaluate each interval.")  # fmt: skip
@click.pass_obj
def scrape_command(
    ctx: PonyContext, site: str, mode: str, base_url: str | None, max_pages: int | None, due_as_of: datetime | None
) -> None:
    """Fetch post metadata from SITE into the database, incrementally and resumably."""
    if due_as_of is not None and due_as_of.tzinfo is None:
        due_as_of = due_as_of.replace(tzinfo=UTC)
    report = scrape(site, mode, settings=ctx.settings, base_url=base_url, max_pages=max_pages, due_as_of=due_as_of)
    click.echo(report.summary())
