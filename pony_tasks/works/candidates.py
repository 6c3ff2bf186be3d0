"""Candidate pairs, cheap first, without comparing every pair:

1. **pHash** (of the whole picture, of its inside when it has a border, of its crop views): every pair of hashes
   within ``max_bits`` differing bits (``hamming_join.close_pairs``: all pairs compared up to 20,000 hashes,
   bit-sampling LSH tables above — sorts, not pair loops).
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

from pony_tasks.works.hamming_join import JoinStats, close_pairs
from pony_tasks.works.neighbours import neighbour_pairs, similar_pairs, thumbnail_matrix

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
