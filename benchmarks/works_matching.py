"""How well the pair judge (``pony_tasks.works.decide.judge``) tells the sample corpus's planted re-posts from its
look-alikes, on corpora drawn with several seeds — the demo's corpus is seed 621; the judge's limits were calibrated
on seeds 1–5 — so a change of the limits shows what it gains and loses out of sample, not only on the demo.

Every planted pair is judged directly (the candidate search is not involved: `pony demo` measures the whole chain).
Prints, per seed and for all seeds together: re-posts judged ``duplicate`` by kind of alteration, look-alikes judged
``duplicate`` (merged) by kind, and an artist's alternate versions judged ``variant``; for all seeds also with the
pixels alone (the posts' artist credits withheld: what the signatures catch by themselves).

    .venv/bin/python benchmarks/works_matching.py [--seeds 621 1 2 3 4 5]
    .venv/bin/python benchmarks/works_matching.py --sweep   # the judge's limits varied: train seeds 1–5, check 621

``--sweep`` re-judges the same pairs under a grid of the judge's main limits (``decide`` module constants) and prints
the best settings on the training seeds (worst re-post kind found, look-alikes merged) with what each gives on the
check seed — the calibration the current limits came from.

Targets (issue 15): every kind of re-post ≥ 0.95 found, no look-alike merged.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import time
from collections import Counter, defaultdict

from pony_tasks.fakes.corpus import HARD_NEGATIVES, VARIANT, SampleCorpus
from pony_tasks.images.validate import decode
from pony_tasks.works import decide
from pony_tasks.works.decide import ImageFacts, judge

SWEEP = {  # decide's constant → the values tried
    "MARK_BITS": (8, 10, 12, 14),
    "MAX_MARK_LOOK": (0.8, 1.0, 1.2, 1.5),
    "MAX_CHANGED_SHARE": (0.007, 0.01, 0.015, 0.02),
    "MAX_CHROMA": (3.5, 4.0, 4.5),
}


def _facts(corpus: SampleCorpus, post) -> ImageFacts:  # noqa: ANN001 - CorpusPost
    data = corpus.file(post).data
    image = decode(data, 50_000_000)
    return ImageFacts(image.sha256, image.width, image.height, image.format, len(data), image.signatures,
                      frozenset([post.artist]))  # fmt: skip


def planted_pairs(seed: int) -> list[tuple[str, ImageFacts, ImageFacts]]:
    """(kind, copy, source) for the corpus's planted pairs."""
    corpus = SampleCorpus(seed=seed)
    by_key = {(p.site, p.post_id): p for p in corpus.posts}
    return [(copy.alteration, _facts(corpus, copy), _facts(corpus, by_key[copy.copy_of])) for copy in corpus.copies()
            if not copy.bad_file and not by_key[copy.copy_of].bad_file]  # fmt: skip


def judge_pairs(pairs: list[tuple[str, ImageFacts, ImageFacts]], credits: bool = True) -> dict[str, Counter]:
    """{kind: Counter of verdicts}; ``credits`` False: the pixels alone (the posts' artists withheld)."""
    verdicts: dict[str, Counter] = defaultdict(Counter)
    for kind, copy, source in pairs:
        if not credits:
            copy, source = (dataclasses.replace(f, artists=frozenset()) for f in (copy, source))
        verdicts[kind][judge(copy, source)[0]] += 1
    return verdicts


def sweep(pairs_by_seed: dict[int, list], train: list[int], check: list[int]) -> None:
    """Every combination of SWEEP, scored on ``train`` (worst kind found minus 0.02 per look-alike merged); the ten
    best, each with its result on ``check``."""
    saved = {name: getattr(decide, name) for name in SWEEP}
    results = []
    try:
        for values in itertools.product(*SWEEP.values()):
            for name, value in zip(SWEEP, values, strict=True):
                setattr(decide, name, value)
            scored = []
            for seeds in (train, check):
                total: dict[str, Counter] = defaultdict(Counter)
                for seed in seeds:
                    for kind, counts in judge_pairs(pairs_by_seed[seed]).items():
                        total[kind].update(counts)
                _, worst, merged = describe(total)
                scored.append((worst, merged))
            results.append((scored[0][0] - 0.02 * scored[0][1], values, scored))
    finally:
        for name, value in saved.items():
            setattr(decide, name, value)
    results.sort(key=lambda r: r[0], reverse=True)
    print(f"\nsweep of {', '.join(SWEEP)} — train seeds {train}, check seeds {check}; current: "
          f"{tuple(saved.values())}")  # fmt: skip
    for _, values, ((train_worst, train_merged), (check_worst, check_merged)) in results[:10]:
        print(f"  {values}: train worst {train_worst:.3f}, {train_merged} merged | check worst {check_worst:.3f}, "
              f"{check_merged} merged")  # fmt: skip


def describe(verdicts: dict[str, Counter]) -> tuple[str, float, int]:
    """(line, worst re-post recall, look-alikes merged)."""
    found = {k: (v["duplicate"], sum(v.values())) for k, v in verdicts.items() if k not in (*HARD_NEGATIVES, VARIANT)}
    merged = {k: (v["duplicate"], sum(v.values())) for k, v in verdicts.items() if k in HARD_NEGATIVES}
    variant = verdicts.get(VARIANT, Counter())
    worst = min((f / t for f, t in found.values() if t), default=1.0)
    found_text = ", ".join(f"{k} {f}/{t}" for k, (f, t) in sorted(found.items()))
    merged_text = ", ".join(f"{k} {m}/{t}" for k, (m, t) in sorted(merged.items()))
    line = (f"re-posts found {found_text} (worst {worst:.3f}); look-alikes merged {merged_text}; alternate versions: "
            f"variant {variant['variant']}, merged {variant['duplicate']}, distinct {variant['distinct']} of "
            f"{sum(variant.values())}")  # fmt: skip
    return line, worst, sum(m for m, _ in merged.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[621, 1, 2, 3, 4, 5])
    parser.add_argument("--sweep", action="store_true", help="vary the judge's limits (train 1–5, check 621)")
    args = parser.parse_args()
    total: dict[str, Counter] = defaultdict(Counter)
    pairs_by_seed = {}
    for seed in args.seeds:
        started = time.perf_counter()
        pairs_by_seed[seed] = planted_pairs(seed)
        verdicts = judge_pairs(pairs_by_seed[seed])
        for kind, counts in verdicts.items():
            total[kind].update(counts)
        line, _, _ = describe(verdicts)
        print(f"seed {seed:>4} ({time.perf_counter() - started:.0f} s): {line}", flush=True)
    pixels: dict[str, Counter] = defaultdict(Counter)
    for pairs in pairs_by_seed.values():
        for kind, counts in judge_pairs(pairs, credits=False).items():
            pixels[kind].update(counts)
    print(f"\nall {len(args.seeds)} seeds, the pixels alone (no artist credits): {describe(pixels)[0]}")
    line, worst, merged = describe(total)
    print(f"all {len(args.seeds)} seeds: {line}")
    print(f"targets: worst kind ≥ 0.95 — {'met' if worst >= 0.95 else 'NOT met'} ({worst:.3f}); no look-alike merged "
          f"— {'met' if merged == 0 else f'NOT met ({merged})'}")  # fmt: skip
    if args.sweep:
        train = [s for s in args.seeds if s != 621] or args.seeds
        sweep(pairs_by_seed, train, [s for s in args.seeds if s == 621] or train)


if __name__ == "__main__":
    main()
