"""Stable style-cluster ids (Hungarian matching by shared images) and the stability figures, on constructed labels."""

from __future__ import annotations

import numpy as np
import pytest

from pony_tasks.styles.kmeans import kmeans
from pony_tasks.styles.stable_ids import assign_ids, stability

KEYS = [f"img{i:03d}" for i in range(300)]


def test_a_relabelled_partition_keeps_every_id() -> None:
    previous = {key: 10 + i % 3 for i, key in enumerate(KEYS)}  # ids 10, 11, 12
    labels = np.array([(i % 3 + 1) % 3 for i in range(len(KEYS))])  # the same groups under other k-means labels
    result = assign_ids(KEYS, labels, previous, next_id=13)
    assert {label: result.ids[label] for label in range(3)} == {1: 10, 2: 11, 0: 12}
    assert result.matched_from == {10: 10, 11: 11, 12: 12} and set(result.shared.values()) == {100}
    current = {key: result.ids[int(label)] for key, label in zip(KEYS, labels, strict=True)}
    assert stability(previous, current) == {"images_compared": 300, "same_id_share": 1.0, "adjusted_rand_index": 1.0}


def test_a_new_cluster_gets_an_id_never_used_and_a_weak_overlap_is_not_a_match() -> None:
    previous = {key: i % 2 for i, key in enumerate(KEYS[:200])}  # ids 0 and 1; 100 new images not clustered before
    # label 0 = old cluster 0; label 1 = old cluster 1 but for 10 images; label 2 = the new images + those 10
    labels = np.array([0 if i < 200 and i % 2 == 0 else 1 if i < 190 else 2 for i in range(len(KEYS))])
    result = assign_ids(KEYS, labels, previous, next_id=7)
    assert result.ids == {0: 0, 1: 1, 2: 7}  # the fresh id starts above every id used before (next_id)
    # three clusters, one old one: label 2 shares only 5 of 105 with cluster 1 (which label 1 took) -> new
    previous3 = {key: 5 for key in KEYS[:100]}
    labels3 = np.array([0] * 95 + [1] * 205)  # label 1 holds 5 of the old cluster's 100 images: under 25 %
    weak = assign_ids(KEYS, labels3, previous3, next_id=0)
    assert weak.ids[0] == 5 and weak.ids[1] == 6 and weak.matched_from == {5: 5}


def test_stability_counts_only_images_both_clustered_and_ari_ignores_ids() -> None:
    previous = {"a": 1, "b": 1, "c": 2, "d": 2}
    swapped = {"a": 2, "b": 2, "c": 1, "d": 1, "e": 9}
    figures = stability(previous, swapped)
    assert figures == {"images_compared": 4, "same_id_share": 0.0, "adjusted_rand_index": 1.0}
    assert stability({}, swapped)["same_id_share"] is None


def test_kmeans_finds_planted_clusters_and_a_reseed_keeps_ids() -> None:
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(6, 64))
    truth = rng.integers(0, 6, 3000)
    points = (centres[truth] + 0.35 * rng.normal(size=(3000, 64))).astype(np.float16)
    first, second = kmeans(points, 6, seed=1), kmeans(points, 6, seed=2)
    keys = [str(i) for i in range(3000)]
    ids = assign_ids(keys, first.labels, {})
    previous = {k: ids.ids[int(label)] for k, label in zip(keys, first.labels, strict=True)}
    again = assign_ids(keys, second.labels, previous)
    current = {k: again.ids[int(label)] for k, label in zip(keys, second.labels, strict=True)}
    assert stability(previous, current)["same_id_share"] >= 0.99
    assert stability({k: int(t) for k, t in zip(keys, truth, strict=True)}, previous)["adjusted_rand_index"] > 0.99
    assert np.allclose(np.linalg.norm(first.centroids, axis=1), 1, atol=1e-4)
    warm = kmeans(points, 6, seed=9, initial=first.centroids)
    assert (warm.labels == first.labels).mean() > 0.99  # started from its centroids: the same partition


def test_kmeans_refuses_too_few_points() -> None:
    with pytest.raises(ValueError, match="cannot make 8 clusters"):
        kmeans(np.ones((5, 4), np.float32), 8)
