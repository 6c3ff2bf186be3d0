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
@click.option("--rating-set", "rating_sets", type=int, multiple=True, help="Only images of this rating set (repeat).")
@click.option("--min-raters", default=1, show_default=True, type=click.IntRange(min=1),
              help="Only images rated by at least this many people.")  # fmt: skip
@click.option(
    "--params-json",
    help="All of the above as one JSON object (keys architecture, epochs, learning_rate, "
    "patience, seed, rating_sets, min_raters): what the aesthetic_train DAG passes.",
)
@click.pass_obj
def aesthetic_train(
    ctx: PonyContext, embedding_model: int | None, architecture: str, epochs: int, learning_rate: float,
    patience: int, seed: int, rating_sets: tuple[int, ...], min_raters: int, params_json: str | None,
) -> None:  # fmt: skip
    """Train a candidate version on the human ratings and print its held-out metrics."""
    if params_json:
        given = json.loads(params_json)
        allowed = {"architecture", "epochs", "learning_rate", "patience", "seed", "rating_sets", "min_raters"}
        if not isinstance(given, dict) or set(given) - allowed:
            raise click.UsageError(f"--params-json takes an object with keys among {sorted(allowed)}")
        architecture = given.get("architecture", architecture)
        epochs, learning_rate = int(given.get("epochs", epochs)), float(given.get("learning_rate", learning_rate))
        patience, seed = int(given.get("patience", patience)), int(given.get("seed", seed))
        rating_sets = tuple(int(s) for s in given.get("rating_sets") or rating_sets)
        min_raters = int(given.get("min_raters", min_raters))
    with connect(ctx.settings) as conn:
        model_id = embedding_model or latest_embedding_model(conn)
    params = TrainParameters(architecture=architecture, epochs=epochs, learning_rate=learning_rate,
                             patience=patience, seed=seed, rating_set_ids=tuple(rating_sets),
                             min_raters=min_raters)  # fmt: skip
    result = train_aesthetic(model_id, params, settings=ctx.settings)
    m = result.metrics
    click.echo("per-band confusion (rows: human 1–5, columns: predicted 1–5):")
    for band, row in enumerate(m["confusion"], start=1):
        click.echo(f"  {band}: " + " ".join(f"{n:4d}" for n in row))
    click.echo(  # last: the line an Airflow task returns
        f"candidate version {result.version_id}: trained on {result.training_images} images "
        f"({result.epochs_run} epochs); held-out {result.heldout_images}: Spearman {m['spearman']:.3f}, "
        f"Pearson {m['pearson']:.3f}, MAE {m['mae']:.3f}, pairwise accuracy {m['pairwise_accuracy']:.3f}"
    )


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
@click.option("--full", is_flag=True, help="Rescore every embedding, not only new ones (atomic replacement).")
@click.pass_obj
def aesthetic_score(ctx: PonyContext, version: int | None, full: bool) -> None:
    """Score every embedding (0..1 and percentile); images without embeddings are reported."""
    click.echo(score_all(version, settings=ctx.settings, full=full).summary())
