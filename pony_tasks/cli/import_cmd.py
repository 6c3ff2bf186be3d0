"""``pony import``: bulk sources instead of paging the API from post 1 — e621's database export, mirror tables of
API records."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from pony_tasks.cli.common import SITE, PonyContext

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group("import")
def import_group() -> None:
    """Bootstrap a site from a bulk file instead of paging its API (then scrape incrementally)."""


@import_group.command("e621-export")
@click.option("--posts", type=_FILE, help="posts-YYYY-MM-DD.csv.gz (or posts.csv.gz, .csv).")
@click.option("--tags", type=_FILE, help="tags-….csv.gz: tag categories (needed before the first posts import).")
@click.option("--aliases", type=_FILE, help="tag_aliases-….csv.gz.")
@click.option("--implications", type=_FILE, help="tag_implications-….csv.gz.")
@click.option("--latest", is_flag=True, help="Download the newest export files from the site (politely, resumed "
              "when cut, SHA-256 checked where the site lists one) into --download-dir, then import them.")
@click.option("--download-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("e621-export"),
              show_default=True, help="Where --latest keeps the files (a cut download resumes from here).")
@click.option("--exported-at", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
              help="When the site wrote the files (UTC); default: the date in the file name, else its mtime.")
@click.option("--max-rows", type=click.IntRange(min=1), help="Stop the posts import after about this many rows "
              "(the next run continues).")
@click.pass_obj
def e621_export_command(
    ctx: PonyContext, posts: Path | None, tags: Path | None, aliases: Path | None, implications: Path | None,
    latest: bool, download_dir: Path, exported_at: datetime | None, max_rows: int | None,
) -> None:  # fmt: skip
    """Import e621's database export (https://e621.net/db_export/): tags first, then aliases and implications,
    then posts. Safe to re-run and to interrupt: a file already imported is skipped (by its SHA-256), a cut one
    continues. Afterwards `pony scrape e621 --mode new` continues above the newest imported post."""
    from pony_tasks.boorus.imports import e621_export

    files = {k: v for k, v in (("posts", posts), ("tags", tags), ("aliases", aliases),
                               ("implications", implications)) if v is not None}  # fmt: skip
    if latest:
        from pony_tasks.boorus.imports.download import download_latest

        if files:
            raise click.UsageError("--latest downloads every file itself; give either --latest or files")
        files = download_latest(download_dir, settings=ctx.settings)
    if not files:
        raise click.UsageError("nothing to import: give --posts/--tags/--aliases/--implications FILE or --latest")
    for report in e621_export.import_export(files, settings=ctx.settings, exported_at=exported_at,
                                            show_progress=None, max_rows=max_rows):  # fmt: skip
        click.echo(report.summary())


@import_group.command("records")
@click.argument("site", type=SITE)
@click.argument("file", type=_FILE)
@click.option("--exported-at", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
              help="When the table was taken (UTC): its score snapshots' time; default: the date in the file name, "
              "else its mtime.")
@click.option("--max-rows", type=click.IntRange(min=1), help="Stop after about this many rows (the next run "
              "continues).")
@click.pass_obj
def records_command(ctx: PonyContext, site: str, file: Path, exported_at: datetime | None,
                    max_rows: int | None) -> None:  # fmt: skip
    """Import a table of SITE's API records (.parquet, .jsonl, .jsonl.gz): one post per row with the API's field
    names, nested fields possibly flattened (`file.url`). Each row goes through the site's adapter, so the import
    stores what a scrape of the same records would."""
    from pony_tasks.boorus.imports.records_file import import_records

    report = import_records(site, file, settings=ctx.settings, exported_at=exported_at, show_progress=None,
                            stop_after_rows=max_rows)  # fmt: skip
    click.echo(report.summary())


@import_group.command("status")
@click.pass_obj
def import_status(ctx: PonyContext) -> None:
    """Every bulk import: its file, rows committed, stored, quarantined, kept (observed after the file's date), and
    whether it finished (an unfinished one continues when the same command runs again)."""
    from pony_tasks.db import connect

    with connect(ctx.settings) as conn, conn.cursor() as cur:
        cur.execute("""SELECT site, kind, file_name, rows_done, stored, quarantined, kept_newer,
                              finished_at IS NOT NULL, coalesce(finished_at, updated_at)
                       FROM booru_import ORDER BY started_at""")
        rows = cur.fetchall()
    if not rows:
        click.echo("no bulk import yet (pony import e621-export / pony import records)")
        return
    click.echo(f"{'site':<11} {'kind':<13} {'rows':>10} {'stored':>10} {'bad':>6} {'kept':>8}  state     file")
    for site, kind, name, done, stored, bad, kept, finished, when in rows:
        state = "finished" if finished else "stopped"
        click.echo(f"{site:<11} {kind:<13} {done:>10,} {stored:>10,} {bad:>6,} {kept:>8,}  {state:<9} {name} "
                   f"({when:%Y-%m-%d %H:%M} UTC)")  # fmt: skip
