"""k-means of L2-normalised embeddings (faiss, spherical: centroids on the unit sphere, assignment by cosine).

A cold start is a **consensus** of many k-means (Bradley & Fayyad, "Refining initial points for k-means clustering",
ICML 1998): ``runs`` seeded k-means++ runs, each on its own subsample; their centroids pooled and clustered into
``clusters``; Lloyd iterations on the training sample from those. One k-means++ start lands in one of many local
optima of near-equal tightness (on the demo corpus 3 restarts kept 72 % of ids across seeds, 100 restarts 86 %); the
consensus of 200 runs lands in nearly the same one from any seed (98.6 %, min 98.3 %: ``benchmarks/styles.py``)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

SAMPLE_PER_CLUSTER = 4096  # training sample (seeded) per cluster; every vector is assigned afterwards
RUN_SAMPLE_PER_CLUSTER = 256  # each consensus run's own subsample, per cluster (k-means on a subsample: Bradley-Fayyad)
CONSENSUS_RUNS = 200
POOL_RESTARTS = 100  # k-means++ restarts clustering the pooled centroids (runs × clusters points: cheap)
RUN_ITERATIONS = 20  # Lloyd iterations of each consensus run


@dataclass(frozen=True)
class Clustering:
    labels: np.ndarray  # int64 per row: the k-means cluster (0..k-1, not yet a stable id)
    centroids: np.ndarray  # float32 (k, d), unit length
    similarity: np.ndarray  # float32 per row: cosine to its centroid
    objective: float  # sum of cosines to the assigned centroids (higher is tighter)


def _train(vectors: np.ndarray, clusters: int, seed: int, iterations: int, *, restarts: int = 1,
           initial: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Centroids of one faiss spherical k-means on one thread (multi-threaded training sums in another order each
    run: not reproducible). k-means++ starts unless ``initial``."""
    import faiss

    faiss.omp_set_num_threads(1)  # per calling thread (the consensus runs train on a thread pool)
    model = faiss.Kmeans(vectors.shape[1], clusters, niter=iterations, seed=seed, spherical=True, nredo=restarts,
                         max_points_per_centroid=len(vectors), verbose=False)  # fmt: skip (sampling is ours)
    model.cp.init_method = faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS  # spread starts: fewer merged clusters
    model.train(vectors, init_centroids=None if initial is None else np.ascontiguousarray(initial, np.float32))
    return model.centroids.copy()


def _sample(rng: np.random.Generator, count: int, size: int) -> np.ndarray:
    return np.arange(count) if count <= size else np.sort(rng.choice(count, size, replace=False))


def kmeans(
    matrix: np.ndarray, clusters: int, *, seed: int = 0, iterations: int = 50, runs: int = CONSENSUS_RUNS,
    initial: np.ndarray | None = None, workers: int | None = None,
) -> Clustering:  # fmt: skip
    """Cluster the rows of ``matrix`` (any float dtype; normalised here) into ``clusters`` groups. Cold (``initial``
    None): the consensus of ``runs`` seeded k-means++ runs of RUN_ITERATIONS each (module docstring);
    ``iterations`` for clustering the pooled centroids and for the final Lloyd on the training sample. Warm: Lloyd
    iterations from ``initial`` (a previous version's centroids, ``clusters`` rows) — a re-clustering of grown data
    then moves the boundaries only as far as the data asks. Deterministic for a given seed, whatever ``workers``
    (the threads the consensus runs share; default every core)."""
    import faiss

    vectors = _unit_rows(matrix, clusters)  # validated and normalised once (fit_centroids reuses the same rows)
    centroids = fit_centroids(vectors, clusters, seed=seed, iterations=iterations, runs=runs, initial=initial,
                              workers=workers)  # fmt: skip
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(centroids)
    similarity, labels = index.search(vectors, 1)  # every vector, on every core (per row: deterministic)
    return Clustering(labels[:, 0].astype(np.int64), centroids, similarity[:, 0].copy(), float(similarity.sum()))


def _unit_rows(matrix: np.ndarray, clusters: int) -> np.ndarray:
    if matrix.ndim != 2 or len(matrix) == 0:
        raise ValueError("no embeddings to cluster")
    if clusters < 2:
        raise ValueError(f"clusters must be at least 2, not {clusters}")
    if len(matrix) < clusters:
        raise ValueError(f"{len(matrix)} embeddings cannot make {clusters} clusters; use --clusters {len(matrix)} or "
                         "fewer, or embed more images first")  # fmt: skip
    vectors = np.ascontiguousarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors /= np.maximum(norms, 1e-12)
    return vectors


def fit_centroids(
    matrix: np.ndarray, clusters: int, *, seed: int = 0, iterations: int = 50, runs: int = CONSENSUS_RUNS,
    initial: np.ndarray | None = None, workers: int | None = None,
) -> np.ndarray:  # fmt: skip
    """The ``clusters`` unit centroids :func:`kmeans` finds (float32), without assigning every row: what a caller
    that assigns its vectors a shard at a time needs (``matrix``: a training sample, at most
    SAMPLE_PER_CLUSTER × clusters rows are used)."""
    import faiss

    if runs < 1:
        raise ValueError(f"runs must be at least 1, not {runs}")
    vectors = _unit_rows(matrix, clusters)
    rng = np.random.default_rng(seed)
    train = vectors[_sample(rng, len(vectors), SAMPLE_PER_CLUSTER * clusters)]
    threads = faiss.omp_get_max_threads()
    try:
        if initial is not None:
            if initial.shape != (clusters, vectors.shape[1]):
                raise ValueError(f"initial centroids are {initial.shape}, not ({clusters}, {vectors.shape[1]})")
            start = initial
        else:
            plans = [(_sample(rng, len(train), RUN_SAMPLE_PER_CLUSTER * clusters), int(rng.integers(1 << 30)))
                     for _ in range(runs)]  # fmt: skip (drawn before any run: the same plans on any thread count)
            with ThreadPoolExecutor(max_workers=workers or threads) as pool:
                pooled = list(pool.map(lambda plan: _train(train[plan[0]], clusters, plan[1], RUN_ITERATIONS), plans))
            start = _train(np.concatenate(pooled), clusters, seed, iterations, restarts=POOL_RESTARTS)
        centroids = _train(train, clusters, seed, iterations, initial=start)
    finally:
        faiss.omp_set_num_threads(threads)
    return centroids
