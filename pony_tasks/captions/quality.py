"""Quality-tag schemes: from an aesthetic percentile to the ``score_*`` tags a caption carries.

A band (9 best … ``floor``) comes from the percentile of the active aesthetic model: by default top 10 % → 9,
80–90 % → 8, … (thresholds configurable). Schemes:

- ``v6`` — exactly Pony Diffusion V6's chain: band B → ``score_B, score_(B-1)_up, …, score_4_up`` (V6 stopped at 4).
  Its flaw: the fixed string always co-occurs, so a model learns the chain as one unit.
- ``v7`` — the fix: the exact band tag ``score_B`` plus each applicable ``score_K_up`` (K ≤ B, K ≥ floor) as an
  independent token, each kept with probability ``keep_probability`` per sample and shuffled among the other tags,
  so no fixed string always co-occurs. Bands reach down to ``score_1`` (configurable floor).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

# Lower percentile edge of bands 9, 8, 7, … (top 10 % → 9, 80–90 % → 8, …, below 20 % → 1)
DEFAULT_THRESHOLDS = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2)
V6_LOWEST_UP = 4


def band_for(percentile: float, thresholds: Sequence[float] = DEFAULT_THRESHOLDS, floor: int = 1) -> int:
    """Band 9 for the top decile down to ``floor``."""
    if not 0 <= percentile <= 1:
        raise ValueError(f"percentile must be within 0..1, got {percentile}")
    for offset, edge in enumerate(thresholds):
        if percentile >= edge:
            return max(floor, 9 - offset)
    return max(floor, 9 - len(thresholds))


@dataclass(frozen=True)
class QualityTags:
    """What a caption stores: the band tag (always kept) and the ``_up`` tags (fixed chain or independent)."""

    band: int
    band_tag: str
    up_tags: tuple[str, ...]
    independent: bool  # v7: each up tag is sampled per use; v6: always all, in order

    def fixed_tokens(self) -> tuple[str, ...]:
        """Quality tokens in the caption's fixed part: v6 the whole chain, v7 only the band tag."""
        return (self.band_tag,) if self.independent else (self.band_tag, *self.up_tags)

    def flexible_tokens(self) -> tuple[str, ...]:
        """Quality tokens in the shuffleable part (v7's independent ``_up`` tags)."""
        return self.up_tags if self.independent else ()


def quality_tags(scheme: str, band: int, floor: int = 1) -> QualityTags:
    if scheme == "v6":
        if band < 1:
            raise ValueError(f"band must be ≥ 1, got {band}")
        ups = tuple(f"score_{k}_up" for k in range(band - 1, V6_LOWEST_UP - 1, -1))
        return QualityTags(band, f"score_{band}", ups, independent=False)
    if scheme == "v7":
        ups = tuple(f"score_{k}_up" for k in range(band - 1, floor - 1, -1))
        return QualityTags(band, f"score_{band}", ups, independent=True)
    raise ValueError(f"unknown quality scheme {scheme!r}; choose v6 or v7")


def sample_quality(tags: QualityTags, rng: random.Random, keep_probability: float = 0.5) -> list[str]:
    """The quality tokens for one training sample: v6 the whole chain in order; v7 the band tag plus each up tag
    kept independently with ``keep_probability``."""
    if not tags.independent:
        return [tags.band_tag, *tags.up_tags]
    return [tags.band_tag, *draw_up_tags(tags.up_tags, rng, keep_probability)]


def draw_up_tags(up_tags: Sequence[str], rng: random.Random, keep_probability: float = 0.5) -> list[str]:
    """The independent draw of V7: each ``score_K_up`` tag kept with ``keep_probability``, in order (one
    ``rng.random()`` per tag) — what every sample and every training line (captions.lines) draws."""
    return [tag for tag in up_tags if rng.random() < keep_probability]
