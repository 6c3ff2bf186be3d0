"""Stable cluster ids: a new clustering's clusters take the ids of the previous version's clusters they share most
images with (one-to-one, the Hungarian assignment maximising shared images), so ``style_cluster_17`` keeps its
meaning across re-clusterings and embedding models; a cluster that continues none gets an id never used before."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

MIN_SHARED = 0.25  # a match needs this share of the smaller of the two clusters in common


@dataclass(frozen=True)
class IdAssignment:
    ids: dict[int, int]  # k-means label → stable cluster id
    matched_from: dict[int, int]  # stable id → the previous cluster it continues (same id); absent: new
    shared: dict[int, int]  # stable id → images shared with that previous cluster


def assign_ids(
    keys: Sequence[str], labels: np.ndarray, previous: Mapping[str, int], *, next_id: int = 0,
    min_shared: float = MIN_SHARED,
) -> IdAssignment:  # fmt: skip
    """Stable ids for the k-means ``labels`` of ``keys`` given the ``previous`` version's key → id (empty: the first
    version, ids 0..k-1 by decreasing size). A pair is matched only where the Hungarian assignment pairs them AND
    they share at least ``min_shared`` of the smaller cluster: an id must not move to an unrelated cluster just
    because every old cluster got paired with something. Unmatched clusters get ids from ``next_id`` up (never
    below one used before), largest first."""
    from scipy.optimize import linear_sum_assignment

    labels = np.asarray(labels)
    new_labels, new_sizes = np.unique(labels, return_counts=True)
    ids: dict[int, int] = {}
    matched_from: dict[int, int] = {}
    shared: dict[int, int] = {}
    if previous:
        old_ids = sorted(set(previous.values()))
        old_index = {cluster: i for i, cluster in enumerate(old_ids)}
        new_index = {int(label): i for i, label in enumerate(new_labels)}
        contingency = np.zeros((len(new_labels), len(old_ids)), np.int64)
        old_sizes = np.zeros(len(old_ids), np.int64)
        for cluster in previous.values():
            old_sizes[old_index[cluster]] += 1
        for key, label in zip(keys, labels, strict=True):
            old = previous.get(key)
            if old is not None:
                contingency[new_index[int(label)], old_index[old]] += 1
        rows, columns = linear_sum_assignment(contingency, maximize=True)
        for row, column in zip(rows, columns, strict=True):
            common = int(contingency[row, column])
            if common and common >= min_shared * min(new_sizes[row], old_sizes[column]):
                stable = old_ids[column]
                ids[int(new_labels[row])] = stable
                matched_from[stable] = stable
                shared[stable] = common
        next_id = max(next_id, max(old_ids) + 1)
    for index in np.argsort(-new_sizes, kind="stable"):
        label = int(new_labels[index])
        if label not in ids:
            ids[label] = next_id
            next_id += 1
    return IdAssignment(ids, matched_from, shared)


def stability(previous: Mapping[str, int], current: Mapping[str, int]) -> dict:
    """How much a re-clustering kept, over the images both versions clustered: the share keeping their cluster id and
    the adjusted Rand index (scikit-learn: 1 = the same partition, ~0 = no better than chance; blind to ids)."""
    from sklearn.metrics import adjusted_rand_score

    both = sorted(previous.keys() & current.keys())
    if not both:
        return {"images_compared": 0, "same_id_share": None, "adjusted_rand_index": None}
    before = np.fromiter((previous[k] for k in both), np.int64, len(both))
    after = np.fromiter((current[k] for k in both), np.int64, len(both))
    return {"images_compared": len(both), "same_id_share": round(float((before == after).mean()), 4),
            "adjusted_rand_index": round(float(adjusted_rand_score(before, after)), 4)}  # fmt: skip
