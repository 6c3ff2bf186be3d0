from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import click

from pony_tasks.cli.common import PonyContext


@click.group("quality")
def quality_group() -> None:
    """Data-quality checks (Great Expectations suites) and their stored results."""


@quality_group.command("check")
@click.argument("suite", type=click.Choice(["scraped_posts", "images", "embeddings", "aesthetic_scores", "captions",
                                            "works"]))
@click.option("--site", help="scraped_posts: the site.")
@click.option("--since-hours", type=float, default=24.0, show_default=True,
              help="scraped_posts, images: rows observed/stored within this many hours.")  # fmt: skip
@click.option("--model-id", type=int, help="embeddings: the embedding model.")
@click.option("--version", "version_id", type=int, help="aesthetic_scores: the aesthetic version.")
@click.option("--set", "set_id", type=int, help="captions: the caption set.")
@click.pass_obj
def quality_check(
    ctx: PonyContext, suite: str, site: str | None, since_hours: float, model_id: int | None, version_id: int | None,
    set_id: int | None,
) -> None:  # fmt: skip
    """Run one suite; exits 1 when a blocking (critical) expectation fails, 0 with warnings only."""
    from pony_tasks.quality.checks import run_check

    since = datetime.now(UTC) - timedelta(hours=since_hours)
    needed = {"scraped_posts": {"site": site, "since": since}, "images": {"since": since},
              "embeddings": {"model_id": model_id}, "aesthetic_scores": {"version_id": version_id},
              "captions": {"set_id": set_id}, "works": {}}[suite]  # fmt: skip
    missing = [name for name, value in needed.items() if value is None]
    if missing:
        raise click.UsageError(f"suite {suite} needs --{missing[0].replace('_id', '').replace('_', '-')}")
    report = run_check(suite, settings=ctx.settings, **needed)
    click.echo(report.describe())
    click.echo(f"stored as dq_result {report.result_id}; full result at {report.result_key}")
    if report.docs_path:
        click.echo(f"Data Docs page: {report.docs_path}")
    if report.blocking:
        sys.exit(1)


@quality_group.command("results")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1))
@click.pass_obj
def quality_results(ctx: PonyContext, limit: int) -> None:
    """The newest stored check results: outcome (passed, warnings, FAILED, NO ROWS), rows, batch, Data Docs page."""
    from pony_tasks.db import connect
    from pony_tasks.quality.checks import data_docs_index

    labels = {"passed": "passed", "warnings": "warnings", "failed": "FAILED", "no_rows": "NO ROWS"}
    with connect(ctx.settings) as conn, conn.cursor() as cur:
        cur.execute("""SELECT result_id, suite, batch, rows_checked, outcome, checked_at, docs_path
                       FROM dq_result ORDER BY result_id DESC LIMIT %s""", (limit,))  # fmt: skip
        rows = cur.fetchall()
    for rid, suite, batch, count, outcome, at, docs in rows:
        click.echo(f"{rid:>5} {at:%Y-%m-%d %H:%M} {suite:<17} {labels[outcome]:<8} {count:>9} rows  {batch}")
        if docs:
            click.echo(f"      {docs}")
    index = data_docs_index(ctx.settings)
    if index.exists():
        click.echo(f"Data Docs (every result, as HTML): {index}")


@quality_group.command("docs-assets")
@click.option("--into", type=click.Path(file_okay=False), help="Folder (default: PONY_DOCS_ASSETS, else "
              "share/pony/docs-assets in this Python environment).")  # fmt: skip
@click.option("--check", is_flag=True, help="Only say whether every asset is there (exit 1 if not); fetch nothing.")
def quality_docs_assets(into: str | None, check: bool) -> None:
    """Fetch the scripts and styles Data Docs pages load from CDNs (pinned npm packages, integrity-checked) so the
    pages render offline through the UI (`make` runs this with the install)."""
    from pathlib import Path

    from pony_tasks.quality.docs_assets import assets_dir, fetch_assets, missing_assets

    directory = Path(into) if into else assets_dir()
    if not check:
        try:
            fetch_assets(directory)
        except OSError as exc:
            raise click.ClickException(f"could not fetch the Data Docs assets ({exc}): set PONY_NPM_REGISTRY to a "
                                       "reachable npm registry or mirror, or copy the folder from a machine that "
                                       "has it") from None  # fmt: skip
    missing = missing_assets(directory)
    if missing:
        click.echo(f"missing under {directory}: {', '.join(missing)}", err=True)
        sys.exit(1)
    click.echo(f"Data Docs assets ready under {directory}")
