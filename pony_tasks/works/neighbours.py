"""Nearest neighbours of vectors (CLIP embeddings, colour thumbnails) with faiss: exact below ``EXACT_LIMIT``
vectors, an inverted-file index above it (k-means cells trained on a sample; each query scans the ``nprobe`` nearest
cells). ``benchmarks/works.py`` measures both on 1M 768-d embeddings and checks the index's recall against the exact
search in the same run; the choice of faiss over pgvector's HNSW is argued in ARCHITECTURE.md (works)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

EXACT_LIMIT = 100_000  # up to this many vectors a flat (exact) search is fast enough
CELLS_PER_ROOT = 2  # k-means cells: this many times the square root of the number of vectors (2,000 for 1M)
TRAIN_SAMPLE = 32  # vectors per cell used to train the cells
TRAIN_ITERATIONS = 10  # k-means iterations (faiss's default is 25; the cells only need to be roughly right)
NPROBE = 8  # cells scanned per query (recall ≥ 0.95 of the exact neighbours on the benchmark)


def build_index(vectors: np.ndarray, metric: str = "ip", *, exact: bool | None = None, seed: int = 0):
    """A faiss index over ``vectors`` (float32, one per row). ``metric``: ``ip`` (inner product: cosine for
    L2-normalised rows) or ``l2``. ``exact``: force a flat index (None: flat up to EXACT_LIMIT rows)."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    count, dim = vectors.shape
    faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2
    if exact or (exact is None and count <= EXACT_LIMIT):
        index = faiss.IndexFlat(dim, faiss_metric)
        index.add(vectors)
        return index
    cells = max(1, int(CELLS_PER_ROOT * math.sqrt(count)))
    quantizer = faiss.IndexFlat(dim, faiss_metric)
    index = faiss.IndexIVFFlat(quantizer, dim, cells, faiss_metric)
    index.cp.niter = TRAIN_ITERATIONS
    index.cp.seed = seed
    sample = np.random.default_rng(seed).choice(count, size=min(count, cells * TRAIN_SAMPLE), replace=False)
    index.train(vectors[np.sort(sample)])
    index.add(vectors)
    index.nprobe = NPROBE
    return index


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, row numbers) of each query's ``k`` nearest rows (−1 where fewer exist)."""
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


def neighbour_pairs(ids: list[str], vectors: np.ndarray, *, k: int, metric: str = "ip", bound: float,
                    only_with: set[str] | None = None, index=None) -> dict[tuple[str, str], float]:  # fmt: skip
    """{(id_a, id_b): score} for every row's ``k`` nearest other rows within ``bound`` (inner product ≥ bound, or
    squared L2 distance ≤ bound), id_a < id_b. ``only_with``: only query these ids (incremental matching)."""
    rows = list(range(len(ids))) if only_with is None else [i for i, sha in enumerate(ids) if sha in only_with]
    if not rows or len(ids) < 2:
        return {}
    index = index if index is not None else build_index(vectors, metric)
    pairs: dict[tuple[str, str], float] = {}
    for start in range(0, len(rows), 8192):
        chunk = rows[start:start + 8192]
        scores, found = search(index, vectors[chunk], min(k + 1, len(ids)))
        for row, row_scores, row_found in zip(chunk, scores, found, strict=True):
            for score, other in zip(row_scores.tolist(), row_found.tolist(), strict=True):
                if other < 0 or other == row:
                    continue
                if (score < bound) if metric == "ip" else (score > bound):
                    continue
                a, b = ids[row], ids[other]
                pairs[(a, b) if a < b else (b, a)] = float(score)
    return pairs


def as_matrix(rows: Iterable[bytes | np.ndarray], dim: int) -> np.ndarray:
    """Stack byte strings (thumbnails) or arrays into a float32 matrix of ``dim`` columns."""
    return np.stack([np.frombuffer(r, dtype=np.uint8) if isinstance(r, bytes) else r for r in rows]).astype(
        np.float32).reshape(-1, dim)  # fmt: skip
