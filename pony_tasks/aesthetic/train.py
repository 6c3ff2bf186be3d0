"""``pony aesthetic train``: fit a head on embeddings of rated images and register it as a candidate version.

Targets: each image's mean human rating (each rater's latest rating counts once), mapped 1–5 → 0..1. A fixed 20 %
of images per (site, rating) stratum is held out for the metrics and for promotion comparisons; a further 10 % of
the rest steers early stopping. Weights go to the object store; metrics, hyper-parameters, a hash of the training
set and the score CDF over all embeddings of the model go to PostgreSQL.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass

import numpy as np
import psycopg2.extensions

from pony_tasks.aesthetic.head import build_head, predict
from pony_tasks.aesthetic.metrics import evaluate
from pony_tasks.config import Settings, get_settings
from pony_tasks.db import connect
from pony_tasks.db.bulk import copy_rows
from pony_tasks.embed.run import iter_embeddings, load_embeddings
from pony_tasks.storage import ObjectStore, open_store
from pony_tasks.works.members import work_key
from pony_tasks.works.members import work_of as work_of_images

HEAD_REVISION = 2  # bump when build_head or the training loop changes: same data no longer means the same model


@dataclass(frozen=True)
class TrainParameters:
    architecture: str = "mlp"
    head_revision: int = HEAD_REVISION
    epochs: int = 300
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 20
    holdout_percent: int = 20
    seed: int = 0
    rating_set_ids: tuple[int, ...] = ()  # only images of these rating sets (empty: every rated image)
    min_raters: int = 1  # only images rated by at least this many people


@dataclass(frozen=True)
class TrainResult:
    version_id: int
    training_images: int
    heldout_images: int
    epochs_run: int
    metrics: dict


def _hash_fraction(sha256: str, seed: int) -> float:
    return int(hashlib.sha256(f"{seed}:{sha256}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def rated_targets(
    conn: psycopg2.extensions.connection, rating_set_ids: tuple[int, ...] = (), min_raters: int = 1
) -> dict[str, tuple[float, str]]:
    """sha256 → (target 0..1, stratum 'site|rating'), optionally only images of some rating sets and with at least
    ``min_raters`` raters. Each rater counts once per image: the mean of their ratings of it (an image the rating
    page showed them again, unannounced, has two), then the mean over raters."""
    with conn.cursor() as cur:
        cur.execute(
            """WITH latest AS (  -- a rater's repeated ratings of an image (test–retest) count as their mean
                   SELECT sha256, avg(rating)::float8 AS rating FROM human_rating h
                   WHERE cardinality(%(sets)s::bigint[]) = 0 OR EXISTS (
                       SELECT 1 FROM rating_set_item r WHERE r.sha256 = h.sha256 AND r.set_id = ANY(%(sets)s::bigint[]))
                   GROUP BY sha256, rater
               )
               SELECT l.sha256, avg(l.rating)::float8,
                      (SELECT p.site || '|' || coalesce(p.rating, '?') FROM booru_post_image i
                       JOIN booru_post p USING (site, post_id) WHERE i.sha256 = l.sha256
                       ORDER BY p.site, p.post_id LIMIT 1)
               FROM latest l GROUP BY l.sha256 HAVING count(*) >= %(min_raters)s""",
            {"sets": list(rating_set_ids), "min_raters": min_raters},
        )
        return {sha: ((mean - 1) / 4, stratum or "unknown") for sha, mean, stratum in cur.fetchall()}


def heldout_by_group(
    conn: psycopg2.extensions.connection, held_ids: list[str], truth: np.ndarray, predicted: np.ndarray,
    strata: dict[str, str],
) -> dict:  # fmt: skip
    """Held-out mean absolute error (0..1 scale) per site and per style cluster of the active clustering: where
    the model is weakest (``pony ratings sample --focus weakest`` rates there next). Stored in the version's
    metrics as ``heldout_by_site`` / ``heldout_by_cluster`` ({key: {"n", "mae"}}) with ``style_version``."""
    errors = np.abs(np.asarray(truth, dtype=float) - np.asarray(predicted, dtype=float))
    by_site: dict[str, list[float]] = {}
    for sha, error in zip(held_ids, errors, strict=True):
        by_site.setdefault(strata[sha].split("|")[0], []).append(float(error))
    result: dict = {"heldout_by_site": {k: {"n": len(v), "mae": float(np.mean(v))} for k, v in sorted(by_site.items())}}
    with conn.cursor() as cur:
        cur.execute("SELECT version_id FROM style_clustering WHERE status = 'active'")
        row = cur.fetchone()
        if row is None:
            return result
        cur.execute("SELECT sha256, cluster_id FROM style_cluster_member WHERE version_id = %s AND sha256 = ANY(%s)",
                    (row[0], list(held_ids)))  # fmt: skip
        cluster_of = dict(cur.fetchall())
    by_cluster: dict[int, list[float]] = {}
    for sha, error in zip(held_ids, errors, strict=True):
        if sha in cluster_of:
            by_cluster.setdefault(cluster_of[sha], []).append(float(error))
    result["style_version"] = row[0]
    result["heldout_by_cluster"] = {str(k): {"n": len(v), "mae": float(np.mean(v))}
                                    for k, v in sorted(by_cluster.items())}  # fmt: skip
    return result


def split_heldout(targets: dict[str, tuple[float, str]], percent: int, seed: int,
                  work_of: dict[str, object] | None = None) -> set[str]:  # fmt: skip
    """Per stratum, the images whose seeded hash falls in the lowest ``percent`` — about that share of every
    (site, rating), and the same images every time for the same seed. With ``work_of`` (sha256 → work) the hash is
    the work's and a work is held out whole: no picture is both trained on and tested on."""
    work_of = work_of or {}

    def key(sha: str) -> str:
        return work_key(sha, work_of)

    by_stratum: dict[str, list[str]] = {}
    for sha, (_, stratum) in targets.items():
        by_stratum.setdefault(stratum, []).append(sha)
    held = set()
    for shas in by_stratum.values():
        ordered = sorted(shas, key=lambda s: (_hash_fraction(key(s), seed), s))
        held.update(ordered[: round(len(ordered) * percent / 100)])
    held_works = {key(s) for s in held}
    return {s for s in targets if key(s) in held_works}  # a work's images on other strata go with it


def _fit(x: np.ndarray, y: np.ndarray, params: TrainParameters, dimension: int):
    import torch

    torch.manual_seed(params.seed)
    order = np.random.default_rng(params.seed).permutation(len(x))
    cut = max(1, len(x) // 10)
    valid_idx, train_idx = order[:cut], order[cut:]
    head = build_head(params.architecture, dimension)
    head[0].fit(torch.from_numpy(x[train_idx]))
    optimiser = torch.optim.Adam(head.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay)
    xt, yt = torch.from_numpy(x[train_idx]), torch.from_numpy(y[train_idx])
    xv, yv = torch.from_numpy(x[valid_idx]), torch.from_numpy(y[valid_idx])
    best, best_state, stale, epochs = float("inf"), None, 0, 0
    for epoch in range(params.epochs):
        head.train()
        for batch in torch.randperm(len(xt)).split(params.batch_size):
            optimiser.zero_grad()
            loss = torch.nn.functional.mse_loss(head(xt[batch]).squeeze(-1), yt[batch])
            loss.backward()
            optimiser.step()
        head.eval()
        with torch.no_grad():
            valid_loss = float(torch.nn.functional.mse_loss(head(xv).squeeze(-1), yv))
        epochs = epoch + 1
        if valid_loss < best - 1e-6:
            best, stale = valid_loss, 0
            best_state = {k: v.clone() for k, v in head.state_dict().items()}
        else:
            stale += 1
            if stale >= params.patience:
                break
    head.load_state_dict(best_state)
    return head, epochs


CDF_SAMPLE = 2_000_000  # scores kept for the version's score → percentile table (every score up to here)


def _score_cdf(conn, store: ObjectStore, embedding_model_id: int, head, seed: int = 0) -> list[float]:
    """1,001 quantiles of the head's scores over every embedding of the model, a shard at a time: all scores up to
    ``CDF_SAMPLE`` images, a seeded uniform sample of that many above (a percentile's standard error ≤ 0.0004)."""
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM image_embedding WHERE model_id = %s", (embedding_model_id,))
        total = cur.fetchone()[0]
    keep = min(1.0, CDF_SAMPLE / max(total, 1))
    rng = np.random.default_rng(seed)
    kept = []
    for _, shard in iter_embeddings(conn, store, embedding_model_id):
        if keep < 1.0:
            shard = shard[rng.random(len(shard)) < keep]
        kept.append(predict(head, shard).numpy())
    return np.quantile(np.concatenate(kept), np.linspace(0, 1, 1001)).tolist()


def _has_embeddings(conn, embedding_model_id: int) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT EXISTS (SELECT 1 FROM image_embedding WHERE model_id = %s)", (embedding_model_id,))
        return cur.fetchone()[0]


def train_aesthetic(
    embedding_model_id: int, params: TrainParameters | None = None, *, settings: Settings | None = None
) -> TrainResult:
    import torch

    params = params or TrainParameters()
    settings = settings or get_settings()
    store = open_store(settings=settings)
    with connect(settings) as conn:
        rated = rated_targets(conn, params.rating_set_ids, params.min_raters)
        # the rated images' vectors only (tens of thousands), not every embedding of the model
        ids, matrix = load_embeddings(conn, store, embedding_model_id, shas=sorted(rated))
        if not ids and not _has_embeddings(conn, embedding_model_id):
            raise LookupError(f"embedding model {embedding_model_id} has no embeddings: run `pony embed` first")
        row_of = {sha: i for i, sha in enumerate(ids)}
        targets = {sha: t for sha, t in rated.items() if sha in row_of}
        if len(targets) < 20:
            raise LookupError(
                f"only {len(targets)} rated images have embeddings for model {embedding_model_id}; "
                "import ratings (`pony ratings import`) and embed their images first (need at least 20)"
            )
        works = work_of_images(conn, sorted(targets), shared_only=True)
        held = split_heldout(targets, params.holdout_percent, params.seed, works)
        train_ids = sorted(set(targets) - held)
        held_ids = sorted(held)
        training_hash = hashlib.sha256(
            "".join(f"{s}:{targets[s][0]:.6f}\n" for s in sorted(targets)).encode()
        ).hexdigest()
        with conn.cursor() as cur:
            cur.execute(
                """SELECT version_id, training_images, metrics FROM aesthetic_model
                   WHERE embedding_model_id = %s AND training_set_sha256 = %s AND hyperparameters = %s""",
                (embedding_model_id, training_hash, json.dumps(asdict(params))),
            )
            existing = cur.fetchone()
            if existing:  # same data, same settings: the same model; training again would only add a duplicate
                return TrainResult(existing[0], existing[1], len(held_ids), 0, existing[2])
        x = matrix[[row_of[s] for s in train_ids]].astype(np.float32)
        y = np.array([targets[s][0] for s in train_ids], dtype=np.float32)
        head, epochs = _fit(x, y, params, matrix.shape[1])
        truth = np.array([targets[s][0] for s in held_ids])
        predicted = predict(head, matrix[[row_of[s] for s in held_ids]]).numpy()
        metrics = evaluate(truth, predicted)
        metrics.update(heldout_by_group(conn, held_ids, truth, predicted, {s: targets[s][1] for s in held_ids}))
        cdf = _score_cdf(conn, store, embedding_model_id, head)
        with conn.cursor() as cur:
            cur.execute(
                """INSERT INTO aesthetic_model (embedding_model_id, architecture, hyperparameters, metrics,
                       training_set_sha256, training_images, weights_key, score_cdf)
                   VALUES (%s, %s, %s, %s, %s, %s, '', %s) RETURNING version_id""",
                (embedding_model_id, params.architecture, json.dumps(asdict(params)), json.dumps(metrics),
                 training_hash, len(train_ids), cdf),
            )  # fmt: skip
            version_id = cur.fetchone()[0]
            buffer = io.BytesIO()
            torch.save({"architecture": params.architecture, "dimension": int(matrix.shape[1]),
                        "state_dict": head.state_dict()}, buffer)  # fmt: skip
            key = f"aesthetic/v{version_id}.pt"
            store.put_bytes(key, buffer.getvalue())
            cur.execute("UPDATE aesthetic_model SET weights_key = %s WHERE version_id = %s", (key, version_id))
            copy_rows(cur, "aesthetic_heldout", ("version_id", "sha256"), [(version_id, s) for s in held_ids])
    return TrainResult(version_id, len(train_ids), len(held_ids), epochs, metrics)
