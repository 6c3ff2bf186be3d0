"""Sort keys and keep where each came from, in one in-place sort of ``key << index bits | index`` — what a stable
argsort gives (ties in index order), in 4 bytes an item besides the keys where an int64 argsort plus the sorted keys
take 16. The pHash LSH tables and the cell grouping of the cluster joins both sort tens of millions of items."""

from __future__ import annotations

import numpy as np

CHUNK = 1 << 20  # items per step of the packing and unpacking: no temporary as long as every item


def sort_with_order(keys: np.ndarray, key_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(the keys sorted, each sorted key's original index — int32 below 2^31 items, else int64). ``keys``: uint64
    below ``2**key_bits``; it is overwritten and returned sorted."""
    index_bits = max(1, int(len(keys) - 1).bit_length())
    if key_bits + index_bits > 64 or index_bits > 31:  # no room to pack: argsort
        order = np.argsort(keys, kind="stable")
        return keys[order], order
    keys <<= np.uint64(index_bits)
    for start in range(0, len(keys), CHUNK):
        stop = min(start + CHUNK, len(keys))
        keys[start:stop] |= np.arange(start, stop, dtype=np.uint64)
    keys.sort()
    order = np.empty(len(keys), np.int32)
    mask = np.uint64((1 << index_bits) - 1)
    for start in range(0, len(keys), CHUNK):
        order[start:start + CHUNK] = keys[start:start + CHUNK] & mask
    keys >>= np.uint64(index_bits)
    return keys, order
