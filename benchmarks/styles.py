"""Style-cluster stability benchmark (issue 16), on the demo corpus's pictures and on a large synthetic set.

Demo corpus (``SampleCorpus`` seed 621, the demo's: every decodable picture, embedded here by two seeded random-init
``pony-tiny-vit`` models — the only weights this machine has; real CLIP weights in production):
- **cold reseed**: k-means from other seeds (each the consensus of 200 k-means++ runs), ids matched to the first
  clustering by shared images (``stable_ids.assign_ids``, Hungarian); the share of images keeping their id and the
  ARI, for several seed pairs;
- **warm re-run**: another seed, started from the first clustering's centroids (what ``pony styles run`` does when the
  active version clustered the same model) — on the same pictures and with 10 % of them new;
- **another embedding model**: the other random model's clustering, ids matched vs unmatched (k-means' own labels
  ranked by size, what ids would be without matching) — the share keeping their id, both measured.
Large (``--vectors``, default 1,000,000 × 768 fp16 with planted topics): clustering time and peak memory.

    .venv/bin/python benchmarks/styles.py [--clusters 16] [--vectors 1000000] [--large-clusters 32]

Targets (issue 16): ≥ 90 % of images keep their cluster id on a re-run with another seed; ids survive another
embedding model better than unmatched ids.
"""

from __future__ import annotations

import argparse
import io
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def demo_pictures() -> list:
    from PIL import Image

    from pony_tasks.fakes.corpus import SampleCorpus

    corpus = SampleCorpus(seed=621)
    pictures = []
    for post in corpus.posts:
        try:
            pictures.append(Image.open(io.BytesIO(corpus.file(post).data)).convert("RGB"))
        except Exception:  # noqa: BLE001 - the corpus plants corrupt files; the pipeline skips them too
            continue
    return pictures


def embed(pictures: list, seed: int, folder: Path) -> np.ndarray:
    import torch

    from pony_tasks.embed.models import load_model, save_random_model

    loaded = load_model("pony-tiny-vit", str(save_random_model(folder / f"tiny-{seed}.pt", seed=seed)), device="cpu")
    parts = []
    with torch.no_grad():
        for start in range(0, len(pictures), 256):
            batch = torch.stack([loaded.preprocess(p) for p in pictures[start:start + 256]])
            parts.append(loaded.model.encode_image(batch).numpy())
    return np.concatenate(parts).astype(np.float16)


def ids_of(keys, labels, previous):
    from pony_tasks.styles.stable_ids import assign_ids

    assignment = assign_ids(keys, labels, previous)
    return {k: assignment.ids[int(label)] for k, label in zip(keys, labels, strict=True)}


def demo(clusters: int) -> None:
    from pony_tasks.styles.kmeans import kmeans
    from pony_tasks.styles.stable_ids import stability

    started = time.perf_counter()
    pictures = demo_pictures()
    with tempfile.TemporaryDirectory() as folder:
        first_model = embed(pictures, 0, Path(folder))
        other_model = embed(pictures, 5, Path(folder))
    keys = [f"{i:05d}" for i in range(len(pictures))]
    print(f"demo corpus: {len(pictures)} pictures, two random-init pony-tiny-vit models, {clusters} clusters "
          f"({time.perf_counter() - started:.1f} s to render and embed)")  # fmt: skip
    base = kmeans(first_model, clusters, seed=0)
    reference = ids_of(keys, base.labels, {})
    cold = []
    for seed in range(1, 11):
        again = ids_of(keys, kmeans(first_model, clusters, seed=seed).labels, reference)
        cold.append(stability(reference, again))
    shares = [f["same_id_share"] for f in cold]
    print(f"  cold reseed (seeds 1-10 vs 0): same id {np.mean(shares):.1%} (min {min(shares):.1%}, max "
          f"{max(shares):.1%}), ARI {np.mean([f['adjusted_rand_index'] for f in cold]):.3f}")  # fmt: skip
    warm = ids_of(keys, kmeans(first_model, clusters, seed=7, initial=base.centroids).labels, reference)
    figures = stability(reference, warm)
    print(f"  warm re-run (seed 7, from the first centroids): same id {figures['same_id_share']:.1%}, "
          f"ARI {figures['adjusted_rand_index']:.3f}")  # fmt: skip
    rng = np.random.default_rng(1)
    grown = np.concatenate([first_model, first_model[rng.choice(len(keys), len(keys) // 10)]
                            + rng.normal(0, 0.02, (len(keys) // 10, first_model.shape[1])).astype(np.float16)])
    grown_keys = keys + [f"new{i:05d}" for i in range(len(keys) // 10)]
    grown_ids = ids_of(grown_keys, kmeans(grown, clusters, seed=8, initial=base.centroids).labels, reference)
    figures = stability(reference, grown_ids)
    print(f"  warm re-run with 10 % new images: same id {figures['same_id_share']:.1%} of the "
          f"{figures['images_compared']} clustered before, ARI {figures['adjusted_rand_index']:.3f}")  # fmt: skip
    moved = kmeans(other_model, clusters, seed=0)
    matched = stability(reference, ids_of(keys, moved.labels, reference))
    unmatched = stability(reference, ids_of(keys, moved.labels, {}))
    raw = stability(reference, dict(zip(keys, moved.labels.tolist(), strict=True)))
    print(f"  another embedding model: same id {matched['same_id_share']:.1%} matched vs "
          f"{unmatched['same_id_share']:.1%} unmatched (ids by size) / {raw['same_id_share']:.1%} (k-means labels); "
          f"ARI {matched['adjusted_rand_index']:.3f} (blind to ids)")  # fmt: skip
    print(f"  ratio matched / unmatched: {matched['same_id_share'] / max(unmatched['same_id_share'], 1e-9):.1f}x")


def large(vectors: int, clusters: int) -> None:
    from pony_tasks.styles.kmeans import CONSENSUS_RUNS, kmeans
    from pony_tasks.styles.stable_ids import stability

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(200, 768)).astype(np.float32)
    topic = rng.integers(0, 200, vectors)
    matrix = np.empty((vectors, 768), np.float16)
    for start in range(0, vectors, 100_000):
        part = centres[topic[start:start + 100_000]] + rng.normal(size=(len(topic[start:start + 100_000]), 768))
        matrix[start:start + 100_000] = part.astype(np.float16)
    started = time.perf_counter()
    first = kmeans(matrix, clusters, seed=0)
    cold_seconds = time.perf_counter() - started
    started = time.perf_counter()
    warm = kmeans(matrix, clusters, seed=1, initial=first.centroids)
    warm_seconds = time.perf_counter() - started
    keys = np.arange(vectors).astype(str).tolist()
    reference = ids_of(keys, first.labels, {})
    figures = stability(reference, ids_of(keys, warm.labels, reference))
    print(f"large: {vectors:,} × 768 fp16, {clusters} clusters: cold {cold_seconds:.1f} s (consensus of "
          f"{CONSENSUS_RUNS} k-means++ runs), "
          f"warm {warm_seconds:.1f} s; warm keeps {figures['same_id_share']:.1%} of ids; peak {peak_gib():.1f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clusters", type=int, default=16, help="Clusters on the demo corpus (the demo's: 16).")
    parser.add_argument("--vectors", type=int, default=1_000_000, help="Synthetic vectors (0: skip).")
    parser.add_argument("--large-clusters", type=int, default=32)
    args = parser.parse_args()
    demo(args.clusters)
    if args.vectors:
        large(args.vectors, args.large_clusters)


if __name__ == "__main__":
    main()
