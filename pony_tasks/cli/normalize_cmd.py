from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from pony_tasks.cli.common import PonyContext
from pony_tasks.db import connect
from pony_tasks.normalize.report import build_report
from pony_tasks.normalize.run import normalize
from pony_tasks.storage import open_store


@click.group("normalize")
def normalize_group() -> None:
    """Cross-site popularity normalisation."""


@normalize_group.command("run")
@click.option("--as-of", type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"]),
              help="Timestamp recorded with the run (default: now).")  # fmt: skip
@click.pass_obj
def normalize_run(ctx: PonyContext, as_of: datetime | None) -> None:
    """Compute a new versioned normalisation run (earlier runs are kept; later stages read the latest)."""
    result = normalize(ctx.settings, as_of=as_of)
    click.echo(
        f"normalisation run {result.run_id}: {result.matured} matured posts in {result.cohorts} cohorts, "
        f"{result.provisional} provisional, excluded {result.excluded or 'none'}"
    )


@normalize_group.command("report")
@click.option("--run-id", type=int, help="Default: the latest complete run.")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where report.txt and the PNG plots go (default: PONY_HOME/reports/normalize/run-N).")  # fmt: skip
@click.pass_obj
def normalize_report(ctx: PonyContext, run_id: int | None, output_dir: Path | None) -> None:
    """Print the per-site report and write distribution plots (also copied to the object store)."""
    with connect(ctx.settings) as conn:
        from pony_tasks.normalize.run import latest_run_id

        run_id = run_id or latest_run_id(conn)
        if run_id is None:
            raise click.ClickException("no normalisation run yet: run `pony normalize run` first")
        target = output_dir or ctx.settings.resolved_home / "reports" / "normalize" / f"run-{run_id}"
        report = build_report(conn, target, run_id)
    store = open_store(settings=ctx.settings)
    for path in report.files:
        store.put_file(f"reports/normalize/run-{run_id}/{path.name}", path)
    click.echo(report.text)
    click.echo(f"\nplots: {', '.join(str(p) for p in report.files if p.suffix == '.png')}")
