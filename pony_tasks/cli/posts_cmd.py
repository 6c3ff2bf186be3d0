from __future__ import annotations

import sys
from pathlib import Path

import click

from pony_tasks.boorus.export import export_jsonl
from pony_tasks.cli.common import SITE, PonyContext
from pony_tasks.db import connect


@click.group("posts")
def posts_group() -> None:
    """Scraped posts: export and statistics."""


@posts_group.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="File to write; default stdout.")
@click.option("--site", type=SITE, help="Only this site.")
@click.pass_obj
def posts_export(ctx: PonyContext, fmt: str, output: Path | None, site: str | None) -> None:
    """Write the unified post records, one JSON object per line, sorted by (site, post_id)."""
    with connect(ctx.settings) as conn:
        if output is None:
            export_jsonl(conn, sys.stdout, site)
            return
        temporary = output.with_name(f".{output.name}.partial")
        with open(temporary, "w", encoding="utf-8") as handle:
            count = export_jsonl(conn, handle, site)
        temporary.replace(output)
    click.echo(f"wrote {count} posts to {output}", err=True)


@posts_group.command("stats")
@click.pass_obj
def posts_stats(ctx: PonyContext) -> None:
    """Posts (and how many the site deleted), snapshots, images and quarantined items per site."""
    with connect(ctx.settings) as conn, conn.cursor() as cur:
        cur.execute(
            """SELECT s.site,
                      (SELECT count(*) FROM booru_post p WHERE p.site = s.site),
                      (SELECT count(*) FROM booru_post p WHERE p.site = s.site AND p.deleted),
                      (SELECT count(*) FROM booru_score_snapshot x WHERE x.site = s.site),
                      (SELECT count(*) FROM booru_post_image i WHERE i.site = s.site),
                      (SELECT count(*) FROM booru_quarantine q WHERE q.site = s.site),
                      (SELECT count(*) FROM image_quarantine q WHERE q.site = s.site),
                      (SELECT newest_post_id FROM booru_cursor c WHERE c.site = s.site)
               FROM unnest(%s::text[]) AS s(site) ORDER BY 1""",
            (sorted(ctx.settings.sites),),
        )
        rows = cur.fetchall()
    click.echo(f"{'site':<11} {'posts':>7} {'deleted':>7} {'snapshots':>9} {'images':>7} {'bad recs':>8} "
               f"{'bad imgs':>8} cursor")  # fmt: skip
    for site, posts, deleted, snapshots, images, bad_records, bad_images, cursor in rows:
        click.echo(f"{site:<11} {posts:>7} {deleted:>7} {snapshots:>9} {images:>7} {bad_records:>8} "
                   f"{bad_images:>8} {cursor}")  # fmt: skip
