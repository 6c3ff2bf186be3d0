"""How well the pair judge (``pony_tasks.works.decide.judge``) tells the sample corpus's planted re-posts from its
look-alikes, on corpora drawn with several seeds — the demo's corpus is seed 621; the judge's limits were calibrated
on seeds 1–5 — so a change of the limits shows what it gains and loses out of sample, not only on the demo.

Every planted pair is judged directly (the candidate search is not involved: `pony demo` measures the whole chain).
Prints, per seed and for all seeds together: re-posts judged ``duplicate`` by kind of alteration, look-alikes judged
``duplicate`` (merged) by kind, and an artist's alternate versions judged ``variant``.

    .venv/bin/python benchmarks/works_matching.py [--seeds 621 1 2 3 4 5]

Targets (issue 15): every kind of re-post ≥ 0.95 found, no look-alike merged.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter, defaultdict

from pony_tasks.fakes.corpus import HARD_NEGATIVES, VARIANT, SampleCorpus
from pony_tasks.images.validate import decode
from pony_tasks.works.decide import ImageFacts, judge


def _facts(corpus: SampleCorpus, post) -> ImageFacts:  # noqa: ANN001 - CorpusPost
    data = corpus.file(post).data
    image = decode(data, 50_000_000)
    return ImageFacts(image.sha256, image.width, image.height, image.format, len(data), *image.signatures.columns(),
                      frozenset([post.artist]))  # fmt: skip


def judge_seed(seed: int) -> dict[str, Counter]:
    """{kind: Counter of verdicts} over the corpus's planted pairs."""
    corpus = SampleCorpus(seed=seed)
    by_key = {(p.site, p.post_id): p for p in corpus.posts}
    verdicts: dict[str, Counter] = defaultdict(Counter)
    for copy in corpus.copies():
        source = by_key[copy.copy_of]
        if copy.bad_file or source.bad_file:
            continue
        verdict, _ = judge(_facts(corpus, copy), _facts(corpus, source))
        verdicts[copy.alteration][verdict] += 1
    return verdicts


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
    args = parser.parse_args()
    total: dict[str, Counter] = defaultdict(Counter)
    for seed in args.seeds:
        started = time.perf_counter()
        verdicts = judge_seed(seed)
        for kind, counts in verdicts.items():
            total[kind].update(counts)
        line, _, _ = describe(verdicts)
        print(f"seed {seed:>4} ({time.perf_counter() - started:.0f} s): {line}", flush=True)
    line, worst, merged = describe(total)
    print(f"\nall {len(args.seeds)} seeds: {line}")
    print(f"targets: worst kind ≥ 0.95 — {'met' if worst >= 0.95 else 'NOT met'} ({worst:.3f}); no look-alike merged "
          f"— {'met' if merged == 0 else f'NOT met ({merged})'}")  # fmt: skip


if __name__ == "__main__":
    main()
