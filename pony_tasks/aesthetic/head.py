"""Model heads on L2-normalised embeddings."""

from __future__ import annotations

import torch
from torch import nn


class Standardize(nn.Module):
    """Per-dimension centring and scaling fitted on the training embeddings (stored with the weights). Normalised
    embeddings share a large common direction; without this, small heads learn the mean and little else."""

    def __init__(self, dimension: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dimension))
        self.register_buffer("std", torch.ones(dimension))

    def fit(self, embeddings: torch.Tensor) -> None:
        self.mean.copy_(embeddings.mean(0))
        self.std.copy_(embeddings.std(0).clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def build_head(architecture: str, dimension: int) -> nn.Module:
    """``mlp``: the layout of LAION's improved aesthetic predictor (d→1024→128→64→16→1, dropout .2/.2/.1);
    ``linear``: one Linear(d, 1). Inputs are standardised first (``Standardize``, fitted at training time); outputs
    pass a sigmoid so scores live in 0..1."""
    if architecture == "mlp":
        body = nn.Sequential(
            nn.Linear(dimension, 1024), nn.Dropout(0.2),
            nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )  # fmt: skip
    elif architecture == "linear":
        body = nn.Linear(dimension, 1)
    else:
        raise ValueError(f"architecture must be 'mlp' or 'linear', got {architecture!r}")
    return nn.Sequential(Standardize(dimension), body, nn.Sigmoid())


def predict(head: nn.Module, embeddings, batch_size: int = 65_536) -> torch.Tensor:
    """Scores 0..1 for a float16/float32 array of normalised embeddings, in batches, without gradients."""
    import numpy as np

    head.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(embeddings), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(embeddings[start : start + batch_size], dtype=np.float32))
            out.append(head(chunk).squeeze(-1))
    return torch.cat(out) if out else torch.zeros(0)
