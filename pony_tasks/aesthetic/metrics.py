"""Held-out metrics for an aesthetic model: rank and value agreement with human ratings."""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr


def band(values_0_1: np.ndarray) -> np.ndarray:
    """0..1 back to the 1–5 rating scale, rounded."""
    return np.clip(np.rint(values_0_1 * 4 + 1), 1, 5).astype(int)


def pairwise_accuracy(truth: np.ndarray, predicted: np.ndarray, max_pairs: int = 2_000_000) -> float:
    """Share of image pairs with different human scores that the model orders the same way."""
    n = len(truth)
    rng = np.random.default_rng(0)
    if n * (n - 1) // 2 <= max_pairs:
        first, second = np.triu_indices(n, 1)
    else:
        first, second = rng.integers(0, n, max_pairs), rng.integers(0, n, max_pairs)
    differ = truth[first] != truth[second]
    first, second = first[differ], second[differ]
    if len(first) == 0:
        return float("nan")
    agree = np.sign(truth[first] - truth[second]) == np.sign(predicted[first] - predicted[second])
    return float(agree.mean())


def evaluate(truth_0_1: np.ndarray, predicted_0_1: np.ndarray) -> dict:
    """Spearman, Pearson, MAE (0..1 scale), pairwise ranking accuracy and a 5×5 per-band confusion matrix
    (rows: human band 1–5, columns: predicted band)."""
    confusion = np.zeros((5, 5), dtype=int)
    for true_band, predicted_band in zip(band(truth_0_1), band(predicted_0_1), strict=True):
        confusion[true_band - 1, predicted_band - 1] += 1
    constant = np.ptp(predicted_0_1) == 0 or np.ptp(truth_0_1) == 0
    return {
        "n": int(len(truth_0_1)),
        "spearman": None if constant else float(spearmanr(truth_0_1, predicted_0_1).statistic),
        "pearson": None if constant else float(pearsonr(truth_0_1, predicted_0_1).statistic),
        "mae": float(np.mean(np.abs(truth_0_1 - predicted_0_1))),
        "pairwise_accuracy": pairwise_accuracy(truth_0_1, predicted_0_1),
        "confusion": confusion.tolist(),
    }
