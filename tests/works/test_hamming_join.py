"""Pairs of perceptual hashes within a Hamming radius: the exact path against a plain double loop, the LSH path
against planted pairs (nothing beyond the radius, nothing of one owner, only new owners when asked)."""

from __future__ import annotations

import numpy as np
import pytest

from pony_tasks.works.candidates import phash_pairs
from pony_tasks.works.hamming_join import JoinStats, close_pairs, key_bits_for, recall


def _flip(codes: np.ndarray, bits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each code with ``bits[i]`` distinct random bits flipped."""
    out = codes.copy()
    for i, count in enumerate(bits.tolist()):
        for position in rng.choice(64, size=count, replace=False).tolist():
            out[i] ^= np.uint64(1) << np.uint64(position)
    return out


def _corpus(owners: int, planted: int, seed: int) -> tuple[np.ndarray, np.ndarray, dict[tuple[int, int], int]]:
    """Random codes (two views per owner) plus ``planted`` owners copying an earlier owner's first view with 0–10
    bits changed; returns (codes, owners, {(a, b): planted distance})."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2**63, size=2 * owners, dtype=np.int64).view(np.uint64) | np.uint64(1 << 63)
    codes[1::2] = rng.integers(0, 2**63, size=owners, dtype=np.int64).view(np.uint64)
    owner_of = np.repeat(np.arange(owners), 2)
    sources = rng.choice(owners, size=planted, replace=False)
    distances = rng.integers(0, 11, size=planted)
    copies = _flip(codes[2 * sources], distances, rng)
    codes = np.concatenate([codes, copies])
    owner_of = np.concatenate([owner_of, owners + np.arange(planted)])
    truth = {(int(s), owners + i): int(d) for i, (s, d) in enumerate(zip(sources, distances, strict=True))}
    return codes, owner_of, truth


def _brute(codes: np.ndarray, owners: np.ndarray, max_bits: int) -> dict[tuple[int, int], int]:
    found: dict[tuple[int, int], int] = {}
    values = [int(c) for c in codes]
    for i in range(len(values)):
        for j in range(i + 1, len(values)):
            bits = (values[i] ^ values[j]).bit_count()
            a, b = sorted((int(owners[i]), int(owners[j])))
            if a != b and bits <= max_bits and bits < found.get((a, b), 65):
                found[(a, b)] = bits
    return found


def _as_dict(pairs: np.ndarray, bits: np.ndarray) -> dict[tuple[int, int], int]:
    return {(a, b): int(d) for (a, b), d in zip(pairs.tolist(), bits.tolist(), strict=True)}


def test_exact_path_is_a_double_loop() -> None:
    codes, owners, _ = _corpus(300, 60, seed=1)
    assert _as_dict(*close_pairs(codes, owners, 8)) == _brute(codes, owners, 8)


def test_lsh_finds_the_close_plants_and_nothing_beyond_the_radius() -> None:
    codes, owners, truth = _corpus(30_000, 3_000, seed=2)
    stats = JoinStats()
    found = _as_dict(*close_pairs(codes, owners, 8, stats=stats))
    assert not stats.exact and stats.tables > 0 and stats.key_bits == key_bits_for(len(codes))
    assert stats.compared < 40 * len(codes)  # sorts, not all pairs (which would be 1.1e9)
    assert all(bits <= 8 and a < b for (a, b), bits in found.items())
    close = [pair for pair, d in truth.items() if d <= 2]
    assert close and all(found.get(pair) == truth[pair] for pair in close)
    within = [pair for pair, d in truth.items() if d <= 8]
    share = sum(pair in found for pair in within) / len(within)
    expected = np.mean([recall(truth[pair], stats.key_bits) for pair in within])
    assert share >= expected - 0.05, (share, expected)
    assert not any(pair in found for pair, d in truth.items() if d > 8)


def test_only_new_owners_are_paired() -> None:
    codes, owners, truth = _corpus(30_000, 3_000, seed=3)
    new = np.zeros(33_000, dtype=bool)
    new[30_000:31_000] = True
    found = _as_dict(*close_pairs(codes, owners, 8, new=new))
    assert found and all(new[a] or new[b] for a, b in found)
    planted_new = [pair for pair, d in truth.items() if d <= 2 and new[pair[1]]]
    assert all(pair in found for pair in planted_new)


@pytest.mark.parametrize("exact", [True, False])
def test_phash_pairs_keeps_each_image_pairs_fewest_bits(exact: bool) -> None:
    base = 0x0123_4567_89AB_CDEF
    views = [("a", base), ("a", base ^ 0xFF), ("b", base ^ 0b111), ("c", base ^ 0xFFFF_FFFF), ("b", base ^ 0xF0)]
    if not exact:  # enough other hashes to leave the exact path
        rng = np.random.default_rng(4)
        views += [(f"x{i}", int(v)) for i, v in enumerate(rng.integers(0, 2**63, size=21_000))]
    found = phash_pairs(views)
    assert found[("a", "b")] == 3
    assert ("a", "c") not in found and ("b", "c") not in found
    assert phash_pairs(views, only_with={"c"}) == {}
