from __future__ import annotations

import sys
from pathlib import Path

import click

from pony_tasks.cli.common import PonyContext
from pony_tasks.db import connect
from pony_tasks.ratings.agreement import rater_agreement
from pony_tasks.ratings.importing import export_ratings, import_ratings
from pony_tasks.ratings.sample import sample_rating_set


@click.group("ratings")
def ratings_group() -> None:
    """The rating set and human 1–5 ratings."""


@ratings_group.command("sample")
@click.option("--n", "size", type=click.IntRange(min=1), required=True, help="How many images to pick.")
@click.option("--seed", default=0, show_default=True, help="Seed of the random order within each stratum.")
@click.option("--include-previous", is_flag=True, help="Also pick images already in an earlier rating set.")
@click.option("--per-cluster", type=click.IntRange(min=0), default=20, show_default=True,
              help="With an active style clustering: images of every style cluster the set covers first (a cluster "
              "with fewer gives all it has; earlier sets count).")
@click.option("--no-styles", is_flag=True, help="Leave the style clusters out of the strata.")
@click.option("--focus", type=click.Choice(["weakest"]),
              help="weakest: only the style clusters where the aesthetic model is weakest — fewest ratings, then the "
              "highest held-out error of the active (else newest) version; the weakest quarter of the clusters.")
@click.pass_obj
def ratings_sample(ctx: PonyContext, size: int, seed: int, include_previous: bool, per_cluster: int,
                   no_styles: bool, focus: str | None) -> None:  # fmt: skip
    """Pick N images spread over (site, rating, normalised-score decile, year, style cluster) for humans to rate."""
    clusters = None
    if focus == "weakest":
        from pony_tasks.ratings.sample import focus_on_weakest

        with connect(ctx.settings) as conn:
            chosen = focus_on_weakest(conn)
        clusters = chosen.clusters
        click.echo(f"focus: the weakest {len(clusters)} style clusters of clustering v{chosen.style_version} "
                   f"(aesthetic version {chosen.aesthetic_version}): "
                   + "; ".join(f"style_cluster_{c} ({chosen.why[c]})" for c in clusters))  # fmt: skip
    result = sample_rating_set(size, settings=ctx.settings, seed=seed, include_previous=include_previous,
                               per_cluster=per_cluster, styles=not no_styles, clusters=clusters)  # fmt: skip
    click.echo(result.describe())


@ratings_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--skip-invalid", is_flag=True, help="Import the valid rows even if some rows are invalid.")
@click.option("--source", help="Label stored with each rating (default: the file name).")
@click.pass_obj
def ratings_import(ctx: PonyContext, file: Path, skip_invalid: bool, source: str | None) -> None:
    """Import ratings from FILE (.csv or .jsonl: sha256 or site+post_id, rating 1–5, rater, timestamp)."""
    result = import_ratings(file, settings=ctx.settings, skip_invalid=skip_invalid, source=source)
    click.echo(result.summary(), err=result.refused)
    if result.refused:
        sys.exit(1)


@ratings_group.command("export")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="File to write; default stdout.")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
@click.pass_obj
def ratings_export(ctx: PonyContext, output: Path | None, fmt: str) -> None:
    """Write every rating (sha256, site, post_id, rating, rater, timestamp)."""
    with connect(ctx.settings) as conn:
        if output is None:
            export_ratings(conn, sys.stdout, fmt)
            return
        with open(output, "w", encoding="utf-8", newline="") as handle:
            count = export_ratings(conn, handle, fmt)
    click.echo(f"wrote {count} ratings to {output}", err=True)


@ratings_group.command("stats")
@click.pass_obj
def ratings_stats(ctx: PonyContext) -> None:
    """Counts per rater, agreement between raters (Krippendorff's alpha, ordinal), each rater's test–retest
    agreement on the images shown to them again and drift per day, and ratings per site, decile and style
    cluster."""
    from pony_tasks.ratings.consistency import consistency

    with connect(ctx.settings) as conn:
        click.echo(rater_agreement(conn).describe())
        click.echo(consistency(conn).describe())
