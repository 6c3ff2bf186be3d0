"""`pony works`: link the same picture across posts and sites into works (issue 15; the library is
pony_tasks.works)."""

from __future__ import annotations

from pathlib import Path

import click

from pony_tasks.cli.common import PonyContext


@click.group("works")
def works_group() -> None:
    """Works: images judged to be the same picture (re-encoded, resized, cropped, signed copies). The works page
    of the Airflow UI (Pony Pipeline → Works) shows the same and takes the same decisions."""


@works_group.command("run")
@click.option("--only-new", is_flag=True, help="Match only images not yet in a work (incremental).")
@click.option("--plan", "plan_key", metavar="KEY",
              help="Take the embedding candidates from the finished parts of this plan (`pony works plan`; the "
                   "plan says whether only new images are matched). The plan is deleted once the works are linked.")
@click.pass_obj
def works_run(ctx: PonyContext, only_new: bool, plan_key: str | None) -> None:
    """Find candidate pairs (pHash, colour thumbnails, CLIP embeddings), judge them (pHash, colour, detail, shape,
    embeddings), regroup images into works.
    Operator decisions (split, unlink) always win; re-running changes nothing."""
    from pony_tasks.works.link import run_works

    if plan_key is not None and only_new:
        raise click.UsageError("--only-new comes from the plan with --plan: give it to `pony works plan`")
    click.echo(run_works(ctx.settings, only_new=only_new, plan_key=plan_key).summary())


@works_group.command("plan")
@click.argument("plan_key", metavar="KEY")
@click.option("--only-new/--all-images", default=False, show_default=True,
              help="Match only images not yet in a work (incremental), or every image (a first build).")
@click.option("--parts", type=click.IntRange(1, 1024), default=1, show_default=True,
              help="At least this many parts (more when one part's spill would exceed PONY_SCRATCH_BUDGET_MIB).")
@click.pass_obj
def works_plan(ctx: PonyContext, plan_key: str, only_new: bool, parts: int) -> None:
    """Split a works run's embedding candidates into parts that run as separate tasks (the works_build DAG): train
    the cells, store them and record the parts under KEY. Then `pony works part KEY N` for each part and
    `pony works run --plan KEY`."""
    from pony_tasks.works.parts import plan_parts

    numbers = plan_parts(ctx.settings, plan_key, only_new=only_new, parts=parts)
    click.echo(f"works plan {plan_key}: {len(numbers)} part{'' if len(numbers) == 1 else 's'}"
               + ("" if numbers else " (embeddings not used)"))  # fmt: skip


@works_group.command("part")
@click.argument("plan_key", metavar="KEY")
@click.argument("part", type=click.IntRange(0))
@click.pass_obj
def works_part(ctx: PonyContext, plan_key: str, part: int) -> None:
    """Find the embedding candidates of one part of plan KEY (its cell groups, one read of the shards) and store
    them for `pony works run --plan KEY`; a second run of the same part replaces its pairs."""
    from pony_tasks.works.parts import run_part

    click.echo(f"works plan {plan_key} part {part}: {run_part(ctx.settings, plan_key, part)} candidate pairs")


@works_group.command("report")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the contact sheet PNG here.")
@click.pass_obj
def works_report(ctx: PonyContext, out: Path | None) -> None:
    """Counts, and a contact sheet PNG of sample merged works and the nearest misses (object store:
    reports/works/contact-sheet.png)."""
    from pony_tasks.db import connect
    from pony_tasks.storage import open_store
    from pony_tasks.works.report import contact_sheet, summarise

    store = open_store(settings=ctx.settings)
    with connect(ctx.settings) as conn:
        summary = summarise(conn)
        png = contact_sheet(conn, store)
    store.put_bytes("reports/works/contact-sheet.png", png)
    if out is not None:
        out.write_bytes(png)
    click.echo(summary.text())
    click.echo("contact sheet: reports/works/contact-sheet.png" + (f" and {out}" if out else ""))


@works_group.command("unlink")
@click.argument("sha_a")
@click.argument("sha_b")
@click.option("--reason", required=True, help="Why they are not the same picture (recorded).")
@click.pass_obj
def works_unlink(ctx: PonyContext, sha_a: str, sha_b: str, reason: str) -> None:
    """Mark two images as NOT the same picture; the next `pony works run` keeps them in different works."""
    from pony_tasks.db import connect
    from pony_tasks.works.link import record_operator_decision

    with connect(ctx.settings) as conn:
        record_operator_decision(conn, sha_a, sha_b, "distinct", reason)
    click.echo(f"{sha_a[:12]}… and {sha_b[:12]}… marked distinct; run `pony works run` to regroup")


@works_group.command("split")
@click.argument("sha256")
@click.option("--reason", required=True, help="Why it does not belong to its work (recorded).")
@click.pass_obj
def works_split(ctx: PonyContext, sha256: str, reason: str) -> None:
    """Take an image out of its work (distinct from every other member); survives re-runs."""
    from pony_tasks.db import connect
    from pony_tasks.works.link import split_image

    with connect(ctx.settings) as conn:
        count = split_image(conn, sha256, reason)
    click.echo(f"{sha256[:12]}… marked distinct from {count} image(s) of its work; run `pony works run` to regroup")


@works_group.command("link")
@click.argument("sha_a")
@click.argument("sha_b")
@click.option("--variant", is_flag=True, help="An alternate version by the same artist: linked, not merged.")
@click.option("--reason", required=True, help="Why they are the same picture (recorded).")
@click.pass_obj
def works_link(ctx: PonyContext, sha_a: str, sha_b: str, variant: bool, reason: str) -> None:
    """Mark two images as the same picture (or, with --variant, as alternate versions); survives re-runs."""
    from pony_tasks.db import connect
    from pony_tasks.works.link import record_operator_decision

    verdict = "variant" if variant else "duplicate"
    with connect(ctx.settings) as conn:
        record_operator_decision(conn, sha_a, sha_b, verdict, reason)
    click.echo(f"{sha_a[:12]}… and {sha_b[:12]}… marked {verdict}; run `pony works run` to regroup")
