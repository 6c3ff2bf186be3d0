"""Candidate pairs, cheap first, without comparing every pair:

1. **pHash** (of the whole picture, of its inside when it has a border, of its crop views): multi-index hashing.
   The 64-bit hash is cut into ``max_bits + 1`` pieces; two hashes within ``max_bits`` differing bits share at
   least one piece exactly (pigeonhole), so grouping by each piece finds every such pair and compares only hashes
   that collide somewhere.
2. **Colour thumbnails** (4×4 RGB of the inside, 48 numbers): each image's nearest few — what finds a re-post whose
   signature moved the pHash past ``max_bits`` but left the picture's colours where they were.
3. **CLIP embeddings**, when the images have them: every pair above a cosine (``neighbours.similar_pairs``: k-means
   cells and exact cosines within them, as SemDeDup does).

Every candidate is then judged on all signals (``pony_tasks.works.decide``); a candidate is only a pair worth
looking at."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from pony_tasks.images.validate import hamming
from pony_tasks.works.neighbours import neighbour_pairs, similar_pairs, thumbnail_matrix

MAX_PHASH_BITS = 8  # at most this many differing bits: a candidate (most booru alterations ≤ 8, other pictures ≥ 22)
THUMB_NEIGHBOURS = 8  # nearest colour thumbnails looked at per image
MAX_THUMB_SQUARED = 48 * 12**2  # squared L2 over the 48 thumbnail numbers: a root-mean-square difference ≤ 12 of 255
MIN_CANDIDATE_COSINE = 0.90
EMBEDDING_NEIGHBOURS = 8  # at most this many embedding candidates per image and cell


def _bands(bits: int) -> list[tuple[int, int]]:
    """(shift, width) of ``bits`` pieces covering 64 bits."""
    widths = [64 // bits + (1 if i < 64 % bits else 0) for i in range(bits)]
    shifts = [sum(widths[:i]) for i in range(bits)]
    return list(zip(shifts, widths, strict=True))


def phash_pairs(hashes: Iterable[tuple[str, int]], max_bits: int = MAX_PHASH_BITS,
                only_with: set[str] | None = None) -> dict[tuple[str, str], int]:  # fmt: skip
    """{(sha_a, sha_b): fewest differing bits} for every pair within ``max_bits`` (sha_a < sha_b). An image may come
    with more than one hash (its views). ``only_with``: only pairs with at least one of these images (incremental
    matching of new images against everything)."""
    items = [(sha, value & ((1 << 64) - 1)) for sha, value in hashes]
    buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
    bands = _bands(max_bits + 1)
    for index, (_, value) in enumerate(items):
        for band, (shift, width) in enumerate(bands):
            buckets[(band, (value >> shift) & ((1 << width) - 1))].append(index)
    pairs: dict[tuple[str, str], int] = {}
    for members in buckets.values():
        if len(members) < 2:
            continue
        for i, first in enumerate(members):
            for second in members[i + 1:]:
                a, b = items[first], items[second]
                if a[0] == b[0] or (only_with is not None and a[0] not in only_with and b[0] not in only_with):
                    continue
                key = (a[0], b[0]) if a[0] < b[0] else (b[0], a[0])
                bits = hamming(a[1], b[1])
                if bits <= max_bits and bits < pairs.get(key, max_bits + 1):
                    pairs[key] = bits
    return pairs


def candidate_pairs(facts: dict, embeddings: tuple[list[str], np.ndarray] | None = None,
                    only_with: set[str] | None = None) -> dict[tuple[str, str], set[str]]:  # fmt: skip
    """{(sha_a, sha_b): the sources that proposed it ("phash", "thumbnail", "embedding")} over ``facts`` ({sha:
    ImageFacts}) and, when given, ``embeddings`` (ids, L2-normalised rows)."""
    found: dict[tuple[str, str], set[str]] = defaultdict(set)
    views = ((sha, view[0]) for sha, f in facts.items() for view in f.signatures.views().values())
    for pair in phash_pairs(views, only_with=only_with):
        found[pair].add("phash")
    ids = sorted(facts)
    if len(ids) > 1:
        thumbs = thumbnail_matrix(facts[s].signatures.inner_colour_thumb for s in ids)
        for pair in neighbour_pairs(ids, thumbs, k=THUMB_NEIGHBOURS, metric="l2", bound=MAX_THUMB_SQUARED,
                                    only_with=only_with):  # fmt: skip
            found[pair].add("thumbnail")
    if embeddings is not None and len(embeddings[0]) > 1:
        emb_ids, matrix = embeddings
        for pair in similar_pairs(emb_ids, matrix, MIN_CANDIDATE_COSINE, only_with, EMBEDDING_NEIGHBOURS):
            if pair[0] in facts and pair[1] in facts:
                found[pair].add("embedding")
    return dict(found)
