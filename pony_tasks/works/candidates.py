"""Candidate pairs, cheap first, without comparing every pair:

1. **pHash** (of the whole picture, of its inside when it has a border, of its crop views): every pair of hashes
   within ``max_bits`` differing bits (``hamming_join.close_pairs``: all pairs compared up to 20,000 hashes,
   bit-sampling LSH tables above — sorts, not pair loops).
2. **Colour thumbnails** (4×4 RGB of the inside, 48 numbers): each image's nearest few — what finds a re-post whose
   signature moved the pHash past ``max_bits`` but left the picture's colours where they were.
3. **CLIP embeddings**, when the images have them: every pair above a cosine (``embedding_join.embedding_pairs``:
   k-means cells and exact cosines within them, as SemDeDup does, one group of cells in memory at a time).

Every candidate is then judged on all signals (``pony_tasks.works.decide``); a candidate is only a pair worth
looking at."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from pony_tasks.works.catalogue import SearchSignals
from pony_tasks.works.hamming_join import JoinStats, close_pairs
from pony_tasks.works.neighbours import thumbnail_pairs

MAX_PHASH_BITS = 8  # at most this many differing bits: a candidate (most booru alterations ≤ 8, other pictures ≥ 22)
THUMB_NEIGHBOURS = 8  # nearest colour thumbnails looked at per image
MAX_THUMB_SQUARED = 48 * 12**2  # squared L2 over the 48 thumbnail numbers: a root-mean-square difference ≤ 12 of 255
MIN_CANDIDATE_COSINE = 0.90
EMBEDDING_NEIGHBOURS = 8  # at most this many embedding candidates per image and cell


def phash_pairs(hashes: Iterable[tuple[str, int]], max_bits: int = MAX_PHASH_BITS,
                only_with: set[str] | None = None,
                stats: JoinStats | None = None) -> dict[tuple[str, str], int]:  # fmt: skip
    """{(sha_a, sha_b): fewest differing bits} for every pair within ``max_bits`` (sha_a < sha_b). An image may come
    with more than one hash (its views). ``only_with``: only pairs with at least one of these images (incremental
    matching of new images against everything). Exact up to ``hamming_join.EXACT_LIMIT`` hashes, bit-sampling LSH
    above (``hamming_join.recall``)."""
    shas: list[str] = []
    number: dict[str, int] = {}
    owners, codes = [], []
    for sha, value in hashes:
        if sha not in number:
            number[sha] = len(shas)
            shas.append(sha)
        owners.append(number[sha])
        codes.append(value & ((1 << 64) - 1))
    new = None
    if only_with is not None:
        new = np.array([sha in only_with for sha in shas], dtype=bool)
        if not new.any():
            return {}
    pairs, bits = close_pairs(np.array(codes, dtype=np.uint64), np.array(owners, dtype=np.int64), max_bits, new=new,
                              stats=stats)  # fmt: skip
    found = {}
    for (a, b), count in zip(pairs.tolist(), bits.tolist(), strict=True):
        first, second = shas[a], shas[b]
        found[(first, second) if first < second else (second, first)] = count
    return found


SOURCES = ("phash", "thumbnail", "embedding")  # what proposed a pair: bits 1, 2 and 4 of Candidates.sources
PHASH, THUMBNAIL, EMBEDDING = 1, 2, 4


@dataclass
class Candidates:
    """Candidate pairs of image numbers (``pairs``: (m, 2) int64, a < b, sorted), the sources that proposed each
    (``sources``: bits of SOURCES) and the embedding cosine of each (NaN: not known) — numpy arrays, 17 bytes a
    pair, never a Python object per pair."""

    pairs: np.ndarray
    sources: np.ndarray
    cosines: np.ndarray

    def found_by(self, row: int) -> list[str]:
        return sorted(name for bit, name in enumerate(SOURCES) if self.sources[row] & (1 << bit))


def merge_candidates(found: list[tuple[np.ndarray, int | np.ndarray, np.ndarray | None]]) -> Candidates:
    """One row per pair from (pairs, source bits — one for all or one per pair —, cosines or None) of several
    searches; the sources of a pair found more than once are or-ed together."""
    found = [(pairs, bits, cosines) for pairs, bits, cosines in found if len(pairs)]
    if not found:
        return Candidates(np.zeros((0, 2), np.int64), np.zeros(0, np.uint8), np.zeros(0, np.float32))
    pairs = np.concatenate([p for p, _, _ in found]).astype(np.int64)
    bits = np.concatenate([np.broadcast_to(np.asarray(b, np.uint8), len(p)) for p, b, _ in found])
    cosines = np.concatenate([np.full(len(p), np.nan, np.float32) if c is None else c.astype(np.float32)
                              for p, _, c in found])  # fmt: skip
    keys, first, inverse = np.unique(pairs[:, 0] * (1 << 32) + pairs[:, 1], return_index=True, return_inverse=True)
    sources = np.zeros(len(keys), np.uint8)
    np.bitwise_or.at(sources, inverse, bits)
    merged_cosines = np.full(len(keys), np.nan, np.float32)
    known = ~np.isnan(cosines)
    merged_cosines[inverse[known]] = cosines[known]
    return Candidates(pairs[first], sources, merged_cosines)


def signal_candidates(signals: SearchSignals, new: np.ndarray | None = None) -> Candidates:
    """pHash and colour-thumbnail candidates of the numbered images (``catalogue.search_signals``); ``new``: a bool
    per image — only pairs with a new image (incremental matching of new images against everything)."""
    if new is not None and not new.any():
        return merge_candidates([])
    owner_new = None if new is None else new
    phash, _ = close_pairs(signals.codes, signals.owners, MAX_PHASH_BITS, new=owner_new)
    found: list[tuple[np.ndarray, int | np.ndarray, np.ndarray | None]] = [(phash, PHASH, None)]
    if len(signals.thumbs) > 1:
        thumbs, _ = thumbnail_pairs(signals.thumbs, k=THUMB_NEIGHBOURS, bound=MAX_THUMB_SQUARED,
                                    query=None if new is None else np.flatnonzero(new))  # fmt: skip
        found.append((thumbs, THUMBNAIL, None))
    return merge_candidates(found)
