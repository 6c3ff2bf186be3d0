from __future__ import annotations

import click

from pony_tasks.cli.common import PonyContext
from pony_tasks.db import connect


@click.group("export")
def export_group() -> None:
    """Training-set exports."""


@export_group.command("dataset")
@click.option("--format", "fmt", type=click.Choice(["kohya", "webdataset", "parquet", "imagefolder"]), required=True,
              help="kohya: a folder sd-scripts trains on (dataset.toml inside); webdataset: tar shards (webdataset, "
                   "HF datasets); parquet: HF/Spark tables with the images embedded; imagefolder: the images and "
                   "metadata.jsonl (HF imagefolder, diffusers' example trainers).")  # fmt: skip
@click.option("--name", required=True, help="Folder under exports/ in the object store.")
@click.option("--min-band", type=click.IntRange(1, 9), help="Only captions with at least this quality band.")
@click.option("--rating", "ratings", multiple=True,
              type=click.Choice(["general", "sensitive", "questionable", "explicit"]), help="Repeatable.")  # fmt: skip
@click.option("--site", "sites", multiple=True, type=click.Choice(["danbooru", "e621", "derpibooru", "gelbooru"]),
              help="Repeatable.")  # fmt: skip
@click.option("--shard-bytes", default=1 << 30, show_default=True,
              help="webdataset/parquet: most bytes per shard file.")  # fmt: skip
@click.option("--image-format", type=click.Choice(["auto", "png", "webp", "jpg", "native"]), default="auto",
              show_default=True,
              help="webdataset: one image key for all samples (HF datasets needs it). auto: the stored files when they "
                   "share a format, else lossless PNG; native: each file as stored.")  # fmt: skip
@click.option("--variants", default=8, show_default=True, type=click.IntRange(1, 64),
              help="V7: caption lines per image, each with its own draw of the score_K_up tags and the content that "
                   "fits beside them (kohya: the lines of the caption file; other formats: the 'captions' list, "
                   "one of them as the caption).")  # fmt: skip
@click.option("--min-side", default=64, show_default=True, type=click.IntRange(1),
              help="kohya: leave out images smaller than this on a side (no bucket fits them; counted in the card).")
@click.pass_obj
def export_dataset_command(
    ctx: PonyContext, fmt: str, name: str, min_band: int | None, ratings: tuple[str, ...], sites: tuple[str, ...],
    shard_bytes: int, image_format: str, variants: int, min_side: int,
) -> None:  # fmt: skip
    """Write images and captions of the active caption set (filtered) with a manifest to the object store."""
    from pony_tasks.export.dataset import export_dataset
    from pony_tasks.storage import open_store

    with connect(ctx.settings) as conn:
        result = export_dataset(
            conn, open_store(settings=ctx.settings), name, fmt, min_band=min_band,
            ratings=list(ratings) or None, sites=list(sites) or None, shard_bytes=shard_bytes,
            image_format=image_format, variants=variants, min_side=min_side, show_progress=None,
        )  # fmt: skip
    click.echo(result.summary())
