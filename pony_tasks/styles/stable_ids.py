"""Stable cluster ids: a new clustering's clusters take the ids of the previous version's clusters they share most
images with (one-to-one, the Hungarian assignment maximising shared images), so ``style_cluster_17`` keeps its
meaning across re-clusterings and embedding models; a cluster that continues none gets an id never used before."""

from __future__ import annotations

from collections import Counter
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
    labels = np.asarray(labels)
    new_labels, new_sizes = np.unique(labels, return_counts=True)
    old_sizes = Counter(previous.values())
    shared = Counter((int(label), previous[key]) for key, label in zip(keys, labels, strict=True) if key in previous)
    return assign_ids_from_counts(dict(zip(new_labels.tolist(), new_sizes.tolist(), strict=True)), dict(old_sizes),
                                  dict(shared), next_id=next_id, min_shared=min_shared)  # fmt: skip


def assign_ids_from_counts(
    new_sizes: Mapping[int, int], old_sizes: Mapping[int, int], shared: Mapping[tuple[int, int], int], *,
    next_id: int = 0, min_shared: float = MIN_SHARED,
) -> IdAssignment:  # fmt: skip
    """:func:`assign_ids` from counts alone — images per new label, per old id, and per (new label, old id) — so a
    caller can count them where the memberships are (in PostgreSQL, for tens of millions of images)."""
    from scipy.optimize import linear_sum_assignment

    new_labels = sorted(new_sizes)
    ids: dict[int, int] = {}
    matched_from: dict[int, int] = {}
    common_of: dict[int, int] = {}
    if old_sizes:
        old_ids = sorted(old_sizes)
        old_index = {cluster: i for i, cluster in enumerate(old_ids)}
        new_index = {label: i for i, label in enumerate(new_labels)}
        contingency = np.zeros((len(new_labels), len(old_ids)), np.int64)
        for (label, old), count in shared.items():
            contingency[new_index[label], old_index[old]] += count
        rows, columns = linear_sum_assignment(contingency, maximize=True)
        for row, column in zip(rows, columns, strict=True):
            common = int(contingency[row, column])
            if common and common >= min_shared * min(new_sizes[new_labels[row]], old_sizes[old_ids[column]]):
                stable = old_ids[column]
                ids[new_labels[row]] = stable
                matched_from[stable] = stable
                common_of[stable] = common
        next_id = max(next_id, max(old_ids) + 1)
    for label in sorted(new_labels, key=lambda label: -new_sizes[label]):  # largest first; ties by label
        if label not in ids:
            ids[label] = next_id
            next_id += 1
    return IdAssignment(ids, matched_from, common_of)


def stability(previous: Mapping[str, int], current: Mapping[str, int]) -> dict:
    """How much a re-clustering kept, over the images both versions clustered: the share keeping their cluster id and
    the adjusted Rand index (1 = the same partition, ~0 = no better than chance; blind to ids)."""
    both = previous.keys() & current.keys()
    return stability_from_counts(Counter((previous[k], current[k]) for k in both))


def stability_from_counts(pairs: Mapping[tuple[int, int], int]) -> dict:
    """:func:`stability` from the number of images per (previous id, current id): the contingency table, which is all
    the adjusted Rand index needs (Hubert & Arabie 1985; the formula scikit-learn's adjusted_rand_score uses)."""
    total = sum(pairs.values())
    if not total:
        return {"images_compared": 0, "same_id_share": None, "adjusted_rand_index": None}
    same = sum(count for (before, after), count in pairs.items() if before == after)
    rows, columns = Counter(), Counter()
    for (before, after), count in pairs.items():
        rows[before] += count
        columns[after] += count
    def pairs_of(n: int) -> int:
        return n * (n - 1) // 2

    index = sum(pairs_of(count) for count in pairs.values())
    row_sum = sum(pairs_of(count) for count in rows.values())
    column_sum = sum(pairs_of(count) for count in columns.values())
    expected = row_sum * column_sum / pairs_of(total) if total > 1 else 0.0
    largest = (row_sum + column_sum) / 2
    ari = 1.0 if largest == expected else (index - expected) / (largest - expected)
    return {"images_compared": total, "same_id_share": round(same / total, 4), "adjusted_rand_index": round(ari, 4)}
