"""Candidate pairs from perceptual hashes, without comparing every pair: multi-index hashing. The 64-bit pHash is
cut into ``bands`` pieces; two hashes within ``max_bits`` differing bits share at least one piece exactly when
``bands > max_bits`` (pigeonhole), so grouping by each piece finds every such pair and compares only hashes that
collide somewhere."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from pony_tasks.images.validate import hamming

MAX_PHASH_BITS = 8  # at most this many differing bits: a candidate (booru alterations measured ≤ 6, others ≥ 26)


def _bands(bits: int) -> list[tuple[int, int]]:
    """(shift, width) of ``bits`` pieces covering 64 bits."""
    widths = [64 // bits + (1 if i < 64 % bits else 0) for i in range(bits)]
    shifts = [sum(widths[:i]) for i in range(bits)]
    return list(zip(shifts, widths, strict=True))


def phash_pairs(hashes: Iterable[tuple[str, int]], max_bits: int = MAX_PHASH_BITS,
                only_with: set[str] | None = None) -> dict[tuple[str, str], int]:  # fmt: skip
    """{(sha_a, sha_b): differing bits} for every pair within ``max_bits`` (sha_a < sha_b). ``only_with``: only pairs
    with at least one of these images (incremental matching of new images against everything)."""
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
                if only_with is not None and a[0] not in only_with and b[0] not in only_with:
                    continue
                key = (a[0], b[0]) if a[0] < b[0] else (b[0], a[0])
                if key in pairs:
                    continue
                bits = hamming(a[1], b[1])
                if bits <= max_bits:
                    pairs[key] = bits
    return pairs
