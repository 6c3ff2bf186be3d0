from __future__ import annotations

import click

from pony_tasks.cli.common import PonyContext
from pony_tasks.embed.run import embed_images


@click.command("embed")
@click.option("--model", "model_name", default="ViT-L-14", show_default=True, help="open_clip model name.")
@click.option("--pretrained", default="openai", show_default=True,
              help="open_clip tag, a checkpoint file, or an object-store URI (s3://…, file://…).")  # fmt: skip
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(min=1))
@click.option("--shard-size", default=10_000, show_default=True, type=click.IntRange(min=1),
              help="Images per output shard (the unit of resumption).")  # fmt: skip
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=0), help="Decoding processes.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many images this run.")
@click.option("--from-sha", help="Only images whose sha256 is ≥ this (with --to-sha: one planned batch).")
@click.option("--to-sha", help="Only images whose sha256 is ≤ this.")
@click.pass_obj
def embed_command(
    ctx: PonyContext, model_name: str, pretrained: str, device: str, batch_size: int, shard_size: int, workers: int,
    limit: int | None, from_sha: str | None, to_sha: str | None,
) -> None:  # fmt: skip
    """Compute CLIP image embeddings for stored images that have none for this model (resumable per shard)."""
    sha_range = (from_sha or "", to_sha or "g") if (from_sha or to_sha) else None
    report = embed_images(model_name, pretrained, settings=ctx.settings, device=device, batch_size=batch_size,
                          shard_size=shard_size, workers=workers, limit=limit, sha_range=sha_range)  # fmt: skip
    for line in report.failures[:20]:
        click.echo(f"  not decodable: {line}")
    click.echo(report.summary())  # last: the line an Airflow task returns
