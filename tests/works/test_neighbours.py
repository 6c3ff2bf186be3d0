"""The embedding join finds the pairs an exact search finds (planted near-duplicates among clustered vectors), both
when it joins everything and when it matches new vectors against the cells of the old ones."""

from __future__ import annotations

import numpy as np

from pony_tasks.works.neighbours import ClusterJoin, median_random_cosine


def _corpus(count: int, dim: int = 128, planted: int = 300, seed: int = 0) -> tuple[np.ndarray, set[tuple[int, int]]]:
    """Vectors around 40 topics with ``planted`` near-copies (cosine ≈ 0.96)."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((40, dim))
    vectors = topics[rng.integers(0, 40, count)] + 0.8 * rng.standard_normal((count, dim))
    sources = rng.choice(count // 2, planted, replace=False)
    copies = count // 2 + np.arange(planted)
    vectors[copies] = vectors[sources] + 0.35 * rng.standard_normal((planted, dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float16), {tuple(sorted(p)) for p in zip(sources.tolist(), copies.tolist(), strict=True)}


def _exact(vectors: np.ndarray, min_cosine: float) -> set[tuple[int, int]]:
    scores = vectors.astype(np.float32) @ vectors.astype(np.float32).T
    a, b = np.nonzero(np.triu(scores >= min_cosine, 1))
    return set(zip(a.tolist(), b.tolist(), strict=True))


def test_the_cell_join_finds_what_the_exact_search_finds() -> None:
    vectors, planted = _corpus(30_000)
    exact = _exact(vectors, 0.9)
    assert planted <= exact, "the planted copies lie above 0.9"
    join = ClusterJoin.build(vectors)
    assert join.centroids is not None and len(join.members) > 100, "over EXACT_LIMIT: cells, not all pairs"
    pairs, cosines = join.pairs(0.9)
    found = set(map(tuple, pairs.tolist()))
    assert found <= exact and (cosines >= 0.9).all()
    assert len(found) >= 0.97 * len(exact), (len(found), len(exact))


def test_new_vectors_are_matched_against_the_old_cells_and_each_other() -> None:
    vectors, _ = _corpus(30_000)
    join = ClusterJoin.build(vectors[:25_000])
    new = vectors[25_000:].copy()
    new[-1] = new[0]  # two new images that are the same picture
    exact = {p for p in _exact(np.concatenate([vectors[:25_000], new]), 0.9) if p[1] >= 25_000}
    pairs, _ = join.add(new, 0.9)
    found = set(map(tuple, pairs.tolist()))
    assert (25_000, 29_999) in found and found <= exact and len(found) >= 0.95 * len(exact)


def test_an_untrained_models_embeddings_are_told_from_real_ones() -> None:
    vectors, _ = _corpus(2_000)
    assert median_random_cosine(vectors) < 0.8
    collapsed = np.ones((2_000, 128), np.float32) + 0.01 * np.random.default_rng(1).standard_normal((2_000, 128))
    collapsed /= np.linalg.norm(collapsed, axis=1, keepdims=True)
    assert median_random_cosine(collapsed) > 0.99
