from __future__ import annotations

import json

import click

from pony_tasks.aesthetic.registry import PromotionRefused, promote
from pony_tasks.aesthetic.score import score_all
from pony_tasks.aesthetic.train import TrainParameters, train_aesthetic
from pony_tasks.cli.common import PonyContext
from pony_tasks.db import connect
from pony_tasks.storage import open_store


def latest_embedding_model(conn) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT max(model_id) FROM embedding_shard")
        found = cur.fetchone()[0]
    if found is None:
        raise click.ClickException("no embeddings yet: run `pony embed` first")
    return found


@click.group("aesthetic")
def aesthetic_group() -> None:
    """The aesthetic model: train, promote, score."""


@aesthetic_group.command("train")
@click.option("--embedding-model", type=int, help="Embedding model id (default: the latest with embeddings).")
@click.option("--architecture", type=click.Choice(["mlp", "linear"]), default="mlp", show_default=True)
@click.option("--epochs", default=300, show_default=True, type=click.IntRange(min=1))
@click.option("--learning-rate", default=1e-3, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--patience", default=20, show_default=True, type=click.IntRange(min=1), help="Early stopping.")
@click.option("--seed", default=0, show_default=True)
@click.pass_obj
def aesthetic_train(
    ctx: PonyContext, embedding_model: int | None, architecture: str, epochs: int, learning_rate: float,
    patience: int, seed: int,
) -> None:  # fmt: skip
    """Train a candidate version on the human ratings and print its held-out metrics."""
    with connect(ctx.settings) as conn:
        model_id = embedding_model or latest_embedding_model(conn)
    params = TrainParameters(architecture=architecture, epochs=epochs, learning_rate=learning_rate,
                             patience=patience, seed=seed)  # fmt: skip
    result = train_aesthetic(model_id, params, settings=ctx.settings)
    m = result.metrics
    click.echo(
        f"candidate version {result.version_id}: trained on {result.training_images} images "
        f"({result.epochs_run} epochs); held-out {result.heldout_images}: Spearman {m['spearman']:.3f}, "
        f"Pearson {m['pearson']:.3f}, MAE {m['mae']:.3f}, pairwise accuracy {m['pairwise_accuracy']:.3f}"
    )
    click.echo("per-band confusion (rows: human 1–5, columns: predicted 1–5):")
    for band, row in enumerate(m["confusion"], start=1):
        click.echo(f"  {band}: " + " ".join(f"{n:4d}" for n in row))


@aesthetic_group.command("promote")
@click.argument("version", type=int)
@click.option("--override-reason", help="Promote even if worse than the active version; the reason is recorded.")
@click.pass_obj
def aesthetic_promote(ctx: PonyContext, version: int, override_reason: str | None) -> None:
    """Make VERSION active if it is not worse than the active one on the same held-out images."""
    with connect(ctx.settings) as conn:
        try:
            comparison = promote(conn, open_store(settings=ctx.settings), version, override_reason)
        except PromotionRefused as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"version {version} is now active; comparison: {json.dumps(comparison, default=str)[:400]}")


@aesthetic_group.command("score")
@click.option("--version", type=int, help="Default: the active version.")
@click.pass_obj
def aesthetic_score(ctx: PonyContext, version: int | None) -> None:
    """Score every embedding (0..1 and percentile); images without embeddings are reported."""
    click.echo(score_all(version, settings=ctx.settings).summary())
