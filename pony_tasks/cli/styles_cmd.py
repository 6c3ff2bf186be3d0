"""`pony styles`: style clusters of CLIP embeddings for `style_cluster_N` caption tags (issue 16; the library is
pony_tasks.styles)."""

from __future__ import annotations

from pathlib import Path

import click

from pony_tasks.cli.common import PonyContext


@click.group("styles")
def styles_group() -> None:
    """Style clusters: k-means of image embeddings whose ids stay the same across re-clusterings (matched by shared
    images), used as style_cluster_N caption tags once a version is activated."""


@styles_group.command("run")
@click.option("--clusters", type=click.IntRange(2, 100_000), help="Default: the style_clusters setting (32).")
@click.option("--seed", default=0, show_default=True, type=int, help="k-means seed.")
@click.option("--embedding-model", type=int, help="Default: the active aesthetic model's embedding model.")
@click.option("--match-to", type=int, help="Version whose ids to keep (default: the active one, else the newest).")
@click.option("--start", type=click.Choice(["warm", "cold"]), default="warm", show_default=True,
              help="warm: start k-means from the centroids of the version matched to when it clustered the same "
                   "model into as many clusters; cold: from the consensus of 200 seeded k-means++ runs.")  # fmt: skip
@click.option("--activate", is_flag=True, help="Make it the active clustering (captions use it from their next set).")
@click.pass_obj
def styles_run(ctx: PonyContext, clusters: int | None, seed: int, embedding_model: int | None, match_to: int | None,
               start: str, activate: bool) -> None:  # fmt: skip
    """Cluster every embedding of a model and record a version (re-running with the same input changes nothing)."""
    from pony_tasks.db import connect
    from pony_tasks.storage import open_store
    from pony_tasks.styles.registry import activate as activate_version
    from pony_tasks.styles.registry import run_clustering

    store = open_store(settings=ctx.settings)
    with connect(ctx.settings) as conn:
        version = run_clustering(conn, store, embedding_model_id=embedding_model, seed=seed, match_to=match_to,
                                 clusters=clusters or ctx.settings.style_clusters, cold=start == "cold")  # fmt: skip
        if activate:
            version = activate_version(conn, version.version_id)
    click.echo(version.describe() + ("" if version.created else " (unchanged: this input was clustered already)"))


@styles_group.command("activate")
@click.argument("version_id", type=int)
@click.pass_obj
def styles_activate(ctx: PonyContext, version_id: int) -> None:
    """Make VERSION_ID the clustering captions use (the style_clusters DAG does this and triggers new captions)."""
    from pony_tasks.db import connect
    from pony_tasks.styles.registry import activate

    with connect(ctx.settings) as conn:
        click.echo(activate(conn, version_id).describe())


@styles_group.command("list")
@click.pass_obj
def styles_list(ctx: PonyContext) -> None:
    """Style clustering versions, newest first, with their stability against the version they continue."""
    from pony_tasks.db import connect
    from pony_tasks.styles.registry import get_version

    with connect(ctx.settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT version_id FROM style_clustering ORDER BY version_id DESC")
        versions = [row[0] for row in cur.fetchall()]
        for version_id in versions:
            click.echo(get_version(conn, version_id).describe())
    if not versions:
        click.echo("no style clustering yet: `pony styles run --activate`")


@styles_group.command("assign")
@click.argument("version_id", type=int, required=False)
@click.pass_obj
def styles_assign(ctx: PonyContext, version_id: int | None) -> None:
    """Put images embedded since VERSION_ID (default: the active one) was clustered into their nearest cluster
    (without an active clustering and no VERSION_ID: nothing to do)."""
    from pony_tasks.db import connect
    from pony_tasks.storage import open_store
    from pony_tasks.styles import active_version
    from pony_tasks.styles.registry import assign_new_images, get_version

    with connect(ctx.settings) as conn:
        if version_id is None and active_version(conn) is None:
            click.echo("no active style clustering: no images to assign")
            return
        version = get_version(conn, version_id)
        added = assign_new_images(conn, open_store(settings=ctx.settings), version.version_id)
    click.echo(f"style clustering v{version.version_id}: {added} new images assigned to their nearest cluster")


@styles_group.command("sheets")
@click.argument("version_id", type=int, required=False)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Also copy the PNGs into this folder.")
@click.pass_obj
def styles_sheets(ctx: PonyContext, version_id: int | None, out: Path | None) -> None:
    """A contact sheet PNG per cluster (its core and its edge) and an overview, under reports/styles/v<id>/."""
    from pony_tasks.db import connect
    from pony_tasks.storage import open_store
    from pony_tasks.styles.sheet import cluster_sheets

    store = open_store(settings=ctx.settings)
    with connect(ctx.settings) as conn:
        keys = cluster_sheets(conn, store, version_id)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for key in keys:
            (out / Path(key).name).write_bytes(store.get_bytes(key))
    click.echo(f"{len(keys) - 1} cluster sheets and the overview: {keys[0]}" + (f" (copied to {out})" if out else ""))
