"""Where to rate next (issue 31): does a batch drawn from the weakest style clusters (``pony ratings sample --focus
weakest``) lower the aesthetic model's error there more than a plain stratified batch of the same size?

A simulation with synthetic raters, run through the project's own pieces: the aesthetic trainer's fitting loop and
head (``aesthetic.train._fit``, ``aesthetic.head``), and the focus rule (``ratings.sample.weakest_clusters``:
fewest ratings first, then the highest held-out error). Images are 64-d unit vectors in 12 style clusters of
Zipf-like sizes; each cluster's quality runs along its own direction (mostly its own, partly shared), so a model
must see ratings of a cluster to judge it; two synthetic raters rate 1 + 4·quality + noise, as in the demo. The
starting ratings are a random 1,500 (mostly the big clusters, as a first rating set drawn from posts looks); then
the same-size batch is added either round-robin over every cluster (the stratified sampler) or round-robin over the
weakest quarter of the clusters, and the model is trained again with the same seed. Errors are measured on a fixed
pool of images nobody rated (their synthetic ratings as truth), per cluster, over several seeds.

    .venv/bin/python benchmarks/rating_focus.py [--batch 600] [--seeds 3]
"""

from __future__ import annotations

import argparse

import numpy as np

from pony_tasks.aesthetic.head import predict
from pony_tasks.aesthetic.train import TrainParameters, _fit
from pony_tasks.ratings.sample import weakest_clusters

SIZES = (2400, 1500, 1000, 800, 600, 450, 350, 260, 200, 150, 110, 80)
DIMENSION = 64
# How clearly an image's vector says its quality: chosen so that the trainer, given 7,000 ratings of every kind,
# reaches a held-out error of 0.097 — within 1.5× of the two raters' own noise (0.065), as a good CLIP aesthetic
# head does — not tuned on the comparison below (with a world where no amount of data teaches the model, where to
# rate would not matter).
STRENGTH, NOISE = 3.0, 0.1


def world(seed: int):
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=DIMENSION)
    shared /= np.linalg.norm(shared)
    xs, quality, cluster = [], [], []
    for c, size in enumerate(SIZES):
        centre = rng.normal(size=DIMENSION) * 0.6
        own = rng.normal(size=DIMENSION)
        direction = 0.35 * shared + own / np.linalg.norm(own)
        direction /= np.linalg.norm(direction)
        q = rng.beta(2.0, 2.0, size)
        x = centre + STRENGTH * (q[:, None] - 0.5) * direction + rng.normal(scale=NOISE, size=(size, DIMENSION))
        xs.append(x / np.linalg.norm(x, axis=1, keepdims=True))
        quality.append(q)
        cluster.append(np.full(size, c))
    x, q, c = np.vstack(xs).astype(np.float32), np.concatenate(quality), np.concatenate(cluster)
    ratings = np.clip(np.rint(1 + 4 * q[:, None] + rng.normal(scale=0.45, size=(len(q), 2))), 1, 5)
    return x, (ratings.mean(axis=1) - 1) / 4, c, rng  # the two raters' mean, on the 0..1 scale


def per_cluster_error(head, x, y, c, rows) -> dict[int, float]:
    predicted = predict(head, x[rows]).numpy()
    error = np.abs(predicted - y[rows])
    return {k: float(error[c[rows] == k].mean()) for k in np.unique(c[rows])}


def round_robin(pool: np.ndarray, c: np.ndarray, clusters: list[int], n: int, rng) -> np.ndarray:
    queues = {k: list(rng.permutation(pool[c[pool] == k])) for k in clusters}
    picked = []
    while len(picked) < n and any(queues.values()):
        for k in clusters:
            if queues[k] and len(picked) < n:
                picked.append(queues[k].pop())
    return np.array(picked)


def run(seed: int, batch: int, start: int = 1500) -> dict:
    x, y, c, rng = world(seed)
    every = np.arange(len(y))
    evaluation = np.concatenate([rng.permutation(every[c == k])[:60] for k in range(len(SIZES))])
    pool = np.setdiff1d(every, evaluation)
    rated = rng.choice(pool, start, replace=False)
    pool = np.setdiff1d(pool, rated)
    params = TrainParameters(seed=seed, epochs=200)
    # the model the focus reads: trained on 80 % of the ratings, its held-out error per cluster on the rest
    held = rated[rng.random(len(rated)) < 0.2]
    train = np.setdiff1d(rated, held)
    head, _ = _fit(x[train], y[train].astype(np.float32), params, DIMENSION)
    heldout = {str(k): {"n": int((c[held] == k).sum()), "mae": v}
               for k, v in per_cluster_error(head, x, y, c, held).items()}  # fmt: skip
    counts = {int(k): int((c[rated] == k).sum()) for k in range(len(SIZES))}
    weak = weakest_clusters(heldout, counts, list(range(len(SIZES))))
    before = per_cluster_error(head, x, y, c, evaluation)
    results = {"weak": weak, "before": before, "counts": counts}
    for name, clusters in (("plain", list(range(len(SIZES)))), ("focused", weak)):
        added = round_robin(pool, c, clusters, batch, np.random.default_rng(seed + 7))
        both = np.concatenate([train, added])
        model, _ = _fit(x[both], y[both].astype(np.float32), params, DIMENSION)
        results[name] = per_cluster_error(model, x, y, c, evaluation)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=600)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for seed in range(args.seeds):
        r = run(seed, args.batch)
        weak = r["weak"]

        def mean(errors: dict[int, float], keys) -> float:
            return float(np.mean([errors[k] for k in keys]))

        everything = list(range(len(SIZES)))
        rows.append((mean(r["before"], weak), mean(r["plain"], weak), mean(r["focused"], weak),
                     mean(r["plain"], everything), mean(r["focused"], everything)))  # fmt: skip
        print(f"seed {seed}: weakest clusters {weak} (ratings {[r['counts'][k] for k in weak]}); their error "
              f"{rows[-1][0]:.4f} → plain batch {rows[-1][1]:.4f}, focused batch {rows[-1][2]:.4f}; all clusters: "
              f"plain {rows[-1][3]:.4f}, focused {rows[-1][4]:.4f}")  # fmt: skip
    before, plain, focused, plain_all, focused_all = np.mean(rows, axis=0)
    print(f"mean over {args.seeds} seeds, batch of {args.batch}: weakest clusters' held-out error {before:.4f} → "
          f"{plain:.4f} with a plain stratified batch ({(before - plain) / before:.0%} lower), {focused:.4f} with "
          f"the focused batch ({(before - focused) / before:.0%} lower); every cluster: plain {plain_all:.4f}, "
          f"focused {focused_all:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
