"""k-means of L2-normalised embeddings (faiss, spherical: centroids on the unit sphere, assignment by cosine)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_PER_CLUSTER = 4096  # training sample (seeded) per cluster; every vector is assigned afterwards


@dataclass(frozen=True)
class Clustering:
    labels: np.ndarray  # int64 per row: the k-means cluster (0..k-1, not yet a stable id)
    centroids: np.ndarray  # float32 (k, d), unit length
    similarity: np.ndarray  # float32 per row: cosine to its centroid
    objective: float  # sum of cosines to the assigned centroids (higher is tighter)


def kmeans(
    matrix: np.ndarray, clusters: int, *, seed: int = 0, iterations: int = 50, restarts: int = 3,
    initial: np.ndarray | None = None,
) -> Clustering:  # fmt: skip
    """Cluster the rows of ``matrix`` (any float dtype; normalised here) into ``clusters`` groups. Cold (``initial``
    None): ``restarts`` k-means++ starts (seeded), the tightest result kept (faiss ``nredo``). Warm: Lloyd
    iterations from ``initial`` (a previous version's centroids, ``clusters`` rows) — a re-clustering of grown data
    then moves the boundaries only as far as the data asks. Deterministic for a given seed (one thread)."""
    import faiss

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
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # multi-threaded training sums in another order each run: not reproducible
    try:
        model = faiss.Kmeans(vectors.shape[1], clusters, niter=iterations, seed=seed, spherical=True,
                             nredo=1 if initial is not None else restarts,
                             max_points_per_centroid=SAMPLE_PER_CLUSTER, verbose=False)  # fmt: skip
        model.cp.init_method = faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS  # spread starts: fewer merged clusters
        if initial is not None:
            if initial.shape != (clusters, vectors.shape[1]):
                raise ValueError(f"initial centroids are {initial.shape}, not ({clusters}, {vectors.shape[1]})")
            model.train(vectors, init_centroids=np.ascontiguousarray(initial, dtype=np.float32))
        else:
            model.train(vectors)
    finally:
        faiss.omp_set_num_threads(threads)
    similarity, labels = model.index.search(vectors, 1)  # every vector, on every core (per row: deterministic)
    return Clustering(labels[:, 0].astype(np.int64), model.centroids.copy(), similarity[:, 0].copy(),
                      float(similarity.sum()))  # fmt: skip
