from __future__ import annotations

import click

from pony_tasks.cli.common import SITE, PonyContext
from pony_tasks.images.fetch import fetch_images


@click.group("images")
def images_group() -> None:
    """Image files of scraped posts."""


@images_group.command("fetch")
@click.option("--site", type=SITE, help="Only this site.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many posts this run.")
@click.option("--retry-failed", is_flag=True, help="Also retry posts quarantined as permanently bad.")
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True),
              help="Start no new download after this many minutes; the next run carries on where this one stopped.")
@click.pass_obj
def images_fetch(ctx: PonyContext, site: str | None, limit: int | None, retry_failed: bool,
                 max_minutes: float | None) -> None:  # fmt: skip
    """Download, verify and store images for posts that have none yet: every site at once, each host within its
    rate limit, listed in pages (memory stays flat at any backlog). Resumable; bad files are quarantined."""
    report = fetch_images(settings=ctx.settings, site=site, limit=limit, retry_failed=retry_failed,
                          max_minutes=max_minutes)
    click.echo(report.summary())


@images_group.command("hash")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many images this run.")
@click.pass_obj
def images_hash(ctx: PonyContext, limit: int | None) -> None:
    """Perceptual signatures (pHash, colour thumbnail) for stored images that have none; new ones get them on fetch."""
    from pony_tasks.images.hashing import hash_stored_images

    click.echo(hash_stored_images(settings=ctx.settings, limit=limit).summary())
