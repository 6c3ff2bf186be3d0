from __future__ import annotations

import random

import click

from pony_tasks.captions.quality import band_for, quality_tags
from pony_tasks.captions.render import RATING_TAGS, build_caption, sample_caption


@click.group("captions")
def captions_group() -> None:
    """Training captions with quality tags."""


@captions_group.command("preview")
@click.option("--scheme", type=click.Choice(["v6", "v7"]), default="v7", show_default=True)
@click.option("--percentile", type=click.FloatRange(0, 1), required=True, help="Aesthetic percentile, 0..1.")
@click.option("--rating", type=click.Choice(sorted(RATING_TAGS)), default="general", show_default=True)
@click.option("--site", type=click.Choice(["danbooru", "e621", "derpibooru", "gelbooru"]), default="danbooru",
              show_default=True)  # fmt: skip
@click.option("--tags", default="1girl solo smile", show_default=True, help="Space-separated site tags.")
@click.option("--seed", default=0, show_default=True, help="Seed of the training-time samples shown.")
@click.option("--samples", default=3, show_default=True, type=click.IntRange(min=0), help="Training captions to show.")
@click.option("--floor", default=1, show_default=True, type=click.IntRange(1, 9), help="Lowest band (v7).")
def captions_preview(
    scheme: str, percentile: float, rating: str, site: str, tags: str, seed: int, samples: int, floor: int
) -> None:
    """Print the caption one image with these properties would get, and a few training-time samples of it."""
    band = band_for(percentile, floor=floor)
    caption = build_caption(quality_tags(scheme, band, floor), site, rating, {}, tags.split())
    click.echo(f"band {band} (percentile {percentile:.2f}), scheme {scheme}")
    click.echo(f"stored:   {caption.render()}")
    rng = random.Random(seed)
    for index in range(samples):
        click.echo(f"sample {index + 1}: {sample_caption(caption, rng)}")
