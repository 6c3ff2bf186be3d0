"""pHash candidate pairs at scale: time and recall of ``works.candidates.phash_pairs`` against the multi-index
hashing it replaced (the baseline, same run, on the sizes it can finish).

Images get 4 random 64-bit views (whole, inside, two crops); 2 % of them are re-posts of another image whose views
are the original's with 0–8 bits flipped (distances drawn as booru alterations give them: mostly 0–4). Prints, per
size: seconds, peak RSS growth, pairs compared, recall of the planted re-posts (any view pair) overall and by
distance, and the ratio to the baseline where it ran.

    .venv/bin/python benchmarks/phash.py [--images 10000,40000,1000000] [--baseline-max 40000]
"""

from __future__ import annotations

import argparse
import resource
import time
from collections import defaultdict

import numpy as np

from pony_tasks.works.candidates import MAX_PHASH_BITS, phash_pairs
from pony_tasks.works.hamming_join import JoinStats, key_bits_for, recall

VIEWS = 4
REPOST_SHARE = 0.02
DISTANCES = np.array([0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 5, 6, 7, 8])  # drawn uniformly from this list


def multi_index_pairs(hashes, max_bits: int = MAX_PHASH_BITS) -> dict[tuple[str, str], int]:
    """The replaced algorithm (9 pieces of ~7 bits, every pair of a bucket compared in Python)."""
    items = [(sha, value & ((1 << 64) - 1)) for sha, value in hashes]
    widths = [64 // (max_bits + 1) + (1 if i < 64 % (max_bits + 1) else 0) for i in range(max_bits + 1)]
    bands = [(sum(widths[:i]), w) for i, w in enumerate(widths)]
    buckets = defaultdict(list)
    for index, (_, value) in enumerate(items):
        for band, (shift, width) in enumerate(bands):
            buckets[(band, (value >> shift) & ((1 << width) - 1))].append(index)
    pairs = {}
    for members in buckets.values():
        for i, first in enumerate(members):
            for second in members[i + 1:]:
                a, b = items[first], items[second]
                if a[0] == b[0]:
                    continue
                key = (a[0], b[0]) if a[0] < b[0] else (b[0], a[0])
                bits = (a[1] ^ b[1]).bit_count()
                if bits <= max_bits and bits < pairs.get(key, max_bits + 1):
                    pairs[key] = bits
    return pairs


def corpus(images: int, seed: int = 0) -> tuple[list[tuple[str, int]], dict[tuple[str, str], int]]:
    rng = np.random.default_rng(seed)
    reposts = int(images * REPOST_SHARE)
    originals = images - reposts
    codes = rng.integers(0, 2**63, size=(originals, VIEWS), dtype=np.int64).view(np.uint64)
    codes |= rng.integers(0, 2, size=(originals, VIEWS), dtype=np.int64).view(np.uint64) << np.uint64(63)
    sources = rng.choice(originals, size=reposts, replace=False)
    distances = rng.choice(DISTANCES, size=reposts)
    copies = codes[sources].copy()
    for i, distance in enumerate(distances.tolist()):
        for view in range(VIEWS):
            for position in rng.choice(64, size=distance, replace=False).tolist():
                copies[i, view] ^= np.uint64(1) << np.uint64(position)
    names = [f"{i:09d}" for i in range(images)]
    views = [(names[i], int(v)) for i in range(originals) for v in codes[i].tolist()]
    views += [(names[originals + i], int(v)) for i in range(reposts) for v in copies[i].tolist()]
    pairs = enumerate(zip(sources, distances, strict=True))
    truth = {(names[int(s)], names[originals + i]): int(d) for i, (s, d) in pairs}
    return views, truth


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default="10000,20000,40000,250000,1000000",
                        help="comma-separated corpus sizes in images")  # fmt: skip
    parser.add_argument("--baseline-max", type=int, default=40_000, help="largest size the baseline runs at")
    args = parser.parse_args()
    for images in [int(x) for x in args.images.split(",")]:
        views, truth = corpus(images)
        before = rss_mib()
        stats = JoinStats()
        start = time.perf_counter()
        found = phash_pairs(views, stats=stats)
        seconds = time.perf_counter() - start
        grown = rss_mib() - before
        hit = {d: [0, 0] for d in range(MAX_PHASH_BITS + 1)}
        for pair, distance in truth.items():
            hit[distance][1] += 1
            hit[distance][0] += pair in found
        share = sum(h for h, _ in hit.values()) / max(1, len(truth))
        by_distance = " ".join(f"d{d}:{h / n:.3f}" for d, (h, n) in hit.items() if n)
        line = (f"{images:>9,} images ({len(views):,} hashes): {seconds:7.2f} s, peak RSS +{grown:.0f} MiB, "
                f"{'exact' if stats.exact else f'{stats.tables} tables of {stats.key_bits} bits'}, "
                f"{stats.compared:,} compared, {len(found):,} pairs, planted re-posts found {share:.4f} "
                f"({by_distance})")  # fmt: skip
        if not stats.exact:
            line += " — per view pair expected " + " ".join(
                f"d{d}:{recall(d, key_bits_for(len(views))):.3f}" for d in (2, 4, 6, 8))
        if images <= args.baseline_max:
            start = time.perf_counter()
            reference = multi_index_pairs(views)
            baseline = time.perf_counter() - start
            missing = sum(1 for pair in reference if pair not in found)
            line += (f"; multi-index baseline {baseline:.2f} s ({baseline / seconds:.1f}× slower), "
                     f"{missing} of its {len(reference):,} pairs missed")  # fmt: skip
        print(line, flush=True)


if __name__ == "__main__":
    main()
