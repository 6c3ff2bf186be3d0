"""Pairs of 64-bit codes (perceptual hashes) within a Hamming radius, in near-linear time and memory of the codes.

- Up to ``EXACT_LIMIT`` codes every pair is compared (one vectorised XOR + popcount per block): exact.
- Above it, **bit-sampling LSH** (Indyk–Motwani for Hamming space): each of ``tables`` tables keys every code by
  ``key_bits`` of its 64 bits drawn at random (seeded), sorts the keys and compares only codes whose keys are equal.
  ``key_bits`` grows with log2 of the number of codes, so a bucket holds about one code whatever the size, and the
  work is ``tables`` sorts: O(n log n). Memory besides the codes: 12 bytes a code for the table in hand (its keys,
  packed with each code's number and sorted in place, and that order as int32; measured 101 bytes an image of four
  views at 1M images, against 256 with an argsort and int64 owners). Two codes ``d`` bits apart share a table's key
  with probability C(64 − d, key_bits) / C(64, key_bits); over ``tables`` tables that is ``recall(d)`` (at 4M
  codes, 32 tables: d = 2 → 1.000, d = 4 → 0.996, d = 8 → 0.50). Pairs that many views of the same two images give
  have several chances.
- Multi-index hashing (cut the code into ``radius + 1`` pieces, pigeonhole) is exact but its buckets hold
  n / 2^(64 / (radius + 1)) codes: for a radius of 8 that is n / 128 codes a bucket — quadratic (measured: 10k
  images 8.7 s, 40k 156 s, about a day at 1M). faiss's ``IndexBinaryMultiHash`` (3 × 21 bits, 2 flips, exact) costs
  time linear in n per query: 113 s per million queries against 1.6M codes, 538 s against 6.4M.

A bucket (codes sharing a key) of more than ``WINDOW`` + 1 codes — blank or flat pictures all hash alike — is
compared along its order only ``WINDOW`` codes ahead; :class:`JoinStats` counts the codes that had more."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pony_tasks.works.packed_sort import sort_with_order

EXACT_LIMIT = 20_000  # codes: up to here every pair is compared (20k² / 2 popcounts, well under a second)
TABLES = 32  # LSH tables above EXACT_LIMIT
WINDOW = 64  # codes ahead compared inside one bucket (a bucket is usually one or two codes)
BLOCK = 2048  # rows per block of the exact comparison
SORT_CHUNK = 1 << 20  # codes per step of building a table's keys


@dataclass
class JoinStats:
    codes: int = 0
    exact: bool = True
    tables: int = 0
    key_bits: int = 0
    compared: int = 0  # code pairs whose distance was computed
    capped: int = 0  # codes of a bucket larger than WINDOW + 1 with codes of their key beyond the window


def key_bits_for(count: int) -> int:
    """Bits of a table's key: about one code per bucket (log2 of the count, at least 16, at most 40)."""
    return int(min(40, max(16, math.ceil(math.log2(max(count, 2))) + 1)))


def recall(distance: int, key_bits: int, tables: int = TABLES) -> float:
    """Probability that two codes ``distance`` bits apart share at least one table's key."""
    if key_bits > 64 - distance:
        return 0.0
    share = math.comb(64 - distance, key_bits) / math.comb(64, key_bits)
    return 1.0 - (1.0 - share) ** tables


def _popcount_xor(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.uint8)


def _keep(first: np.ndarray, second: np.ndarray, bits: np.ndarray, owners: np.ndarray, max_bits: int,
          new: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(owner pairs a < b, bits) of the compared code pairs within ``max_bits`` of two different owners."""
    a, b = owners[first], owners[second]
    keep = (bits <= max_bits) & (a != b)
    if new is not None:
        keep &= new[a] | new[b]
    a, b, bits = a[keep], b[keep], bits[keep]
    low, high = np.minimum(a, b), np.maximum(a, b)
    return (low.astype(np.int64) << 32) | high.astype(np.int64), bits


def _fewest(keys: np.ndarray, bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One entry per owner pair, with its fewest differing bits."""
    if not len(keys):
        return keys, bits
    order = np.lexsort((bits, keys))
    keys, bits = keys[order], bits[order]
    first = np.ones(len(keys), dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    return keys[first], bits[first]


def _exact(codes: np.ndarray, owners: np.ndarray, max_bits: int, new: np.ndarray | None,
           stats: JoinStats) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    found_keys, found_bits = [], []
    count = len(codes)
    for start in range(0, count, BLOCK):
        rows = np.arange(start, min(start + BLOCK, count))
        bits = np.bitwise_count(codes[rows, None] ^ codes[None, start:]).astype(np.uint8)
        row, column = np.nonzero(bits <= max_bits)
        first, second = rows[row], start + column
        upper = second > first
        stats.compared += len(rows) * (count - start) - len(rows) * (len(rows) + 1) // 2
        keys, kept = _keep(first[upper], second[upper], bits[row, column][upper], owners, max_bits, new)
        found_keys.append(keys)
        found_bits.append(kept)
    return _fewest(np.concatenate(found_keys), np.concatenate(found_bits))


def _table_keys(codes: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Each code's key: its bits at ``positions``, packed (one 256-entry lookup per byte of the code)."""
    lookup = np.zeros((8, 256), dtype=np.uint64)
    values = np.arange(256, dtype=np.uint64)
    for slot, position in enumerate(positions.tolist()):
        byte, bit = divmod(position, 8)
        lookup[byte] |= ((values >> np.uint64(bit)) & np.uint64(1)) << np.uint64(slot)
    as_bytes = codes.view(np.uint8).reshape(-1, 8)  # little-endian: byte k holds bits 8k … 8k + 7
    keys = np.empty(len(codes), np.uint64)
    for start in range(0, len(codes), SORT_CHUNK):  # in chunks: the lookups' temporaries stay small
        chunk = as_bytes[start:start + SORT_CHUNK]
        part = keys[start:start + SORT_CHUNK]
        np.take(lookup[0], chunk[:, 0], out=part)
        for byte in range(1, 8):
            part |= lookup[byte][chunk[:, byte]]
    return keys


def _lsh(codes: np.ndarray, owners: np.ndarray, max_bits: int, new: np.ndarray | None, tables: int, seed: int,
         stats: JoinStats) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    rng = np.random.default_rng(seed)
    key_bits = stats.key_bits = key_bits_for(len(codes))
    found_keys, found_bits = np.zeros(0, np.int64), np.zeros(0, np.uint8)
    position_type = np.int32 if len(codes) < 2**31 - WINDOW else np.int64
    for _ in range(tables):
        sorted_keys, order = sort_with_order(_table_keys(codes, rng.choice(64, size=key_bits, replace=False)), key_bits)
        table_keys, table_bits = [], []
        positions = np.zeros(0, position_type)
        for ahead in range(1, WINDOW + 1):
            if ahead == 1:  # neighbours of equal key, compared as two views (no gather of every key)
                positions = np.flatnonzero(sorted_keys[:-1] == sorted_keys[1:]).astype(position_type)
            else:  # sorted: a code ``ahead`` on has the same key only where the one ``ahead - 1`` on did
                positions = positions[positions < len(order) - ahead]
                positions = positions[sorted_keys[positions] == sorted_keys[positions + ahead]]
            if not len(positions):
                break
            first, second = order[positions], order[positions + ahead]
            bits = _popcount_xor(codes[first], codes[second])
            stats.compared += len(positions)
            keys, kept = _keep(first, second, bits, owners, max_bits, new)
            table_keys.append(keys)
            table_bits.append(kept)
        else:
            beyond = positions[positions < len(order) - WINDOW - 1]
            stats.capped += int(np.count_nonzero(sorted_keys[beyond] == sorted_keys[beyond + WINDOW + 1]))
        del sorted_keys, order, positions
        found_keys, found_bits = _fewest(np.concatenate([found_keys, *table_keys]),
                                         np.concatenate([found_bits, *table_bits]))  # fmt: skip
    return found_keys, found_bits


def close_pairs(codes: np.ndarray, owners: np.ndarray, max_bits: int, *, new: np.ndarray | None = None,
                tables: int = TABLES, exact: bool | None = None, seed: int = 0,
                stats: JoinStats | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Owner pairs with codes within ``max_bits`` differing bits: (an (m, 2) int64 array of owners a < b, their
    fewest differing bits). ``codes``: uint64 (or int64) codes, several per owner allowed; ``owners``: an owner
    number (< 2^31) per code; ``new``: a bool per owner — only pairs with a new owner (incremental matching).
    ``exact``: compare every pair (default: up to ``EXACT_LIMIT`` codes)."""
    stats = stats if stats is not None else JoinStats()
    codes = np.ascontiguousarray(codes).view(np.uint64)
    owners = np.ascontiguousarray(owners, dtype=np.int32)  # owners < 2^31: 4 bytes a code, not 8
    stats.codes = len(codes)
    if len(codes) < 2:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.uint8)
    stats.exact = bool(exact or (exact is None and len(codes) <= EXACT_LIMIT))
    if stats.exact:
        keys, bits = _exact(codes, owners, max_bits, new, stats)
    else:
        stats.tables = tables
        keys, bits = _lsh(codes, owners, max_bits, new, tables, seed, stats)
    return np.stack([keys >> 32, keys & 0xFFFFFFFF], axis=1), bits
