"""How well the works match a known truth (the sample corpus's planted re-posts, hard negatives and variants): pair
precision over every linked pair, recall by kind of alteration, how many hard negatives were merged (by kind), and
how many of an artist's alternate versions were linked as variants (and none merged)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field

import psycopg2.extensions

from pony_tasks.fakes.corpus import HARD_NEGATIVES, VARIANT

NOT_THE_SAME = (*HARD_NEGATIVES, VARIANT)


@dataclass
class WorksScore:
    precision: float | None
    linked_pairs: int
    recall_by_alteration: dict[str, tuple[int, int]] = field(default_factory=dict)  # kind → (found, planted)
    negatives_by_kind: dict[str, tuple[int, int]] = field(default_factory=dict)  # kind → (merged, planted)
    variants_linked: int = 0  # alternate versions judged "variant" (linked, not merged)
    variants_merged: int = 0
    variants: int = 0

    @property
    def negatives_merged(self) -> int:
        return sum(merged for merged, _ in self.negatives_by_kind.values())

    @property
    def negatives(self) -> int:
        return sum(total for _, total in self.negatives_by_kind.values())

    def describe(self) -> str:
        kinds = sorted(self.recall_by_alteration.items())
        recall = ", ".join(f"{kind} {found}/{total}" for kind, (found, total) in kinds)
        found = sum(f for f, _ in self.recall_by_alteration.values())
        total = sum(t for _, t in self.recall_by_alteration.values())
        precision = "n/a" if self.precision is None else f"{self.precision:.3f}"
        negatives = ", ".join(f"{kind} {m}/{t}" for kind, (m, t) in sorted(self.negatives_by_kind.items()))
        return (f"planted re-posts found {found}/{total} ({recall}); pair precision {precision} over "
                f"{self.linked_pairs} linked pairs; hard negatives merged {self.negatives_merged}/{self.negatives} "
                f"({negatives}); alternate versions linked as variants {self.variants_linked}/{self.variants}, "
                f"merged {self.variants_merged}")  # fmt: skip


def score_works(conn: psycopg2.extensions.connection, copies: list[tuple[tuple[str, int], tuple[str, int], str]]
                ) -> WorksScore:  # fmt: skip
    """``copies``: (copy post, source post, alteration) — an alteration in ``NOT_THE_SAME`` marks a hard negative or
    a variant."""
    with conn.cursor() as cur:
        cur.execute("""SELECT b.site, b.post_id, b.sha256, w.work_id FROM booru_post_image b
                       JOIN work_image w USING (sha256)""")  # fmt: skip
        rows = cur.fetchall()
        cur.execute("SELECT sha_a, sha_b FROM work_pair WHERE verdict = 'variant'")
        variant_pairs = set(cur.fetchall())
    work_of_post = {(site, post): work for site, post, _, work in rows}
    sha_of_post = {(site, post): sha for site, post, sha, _ in rows}
    # the truth as image pairs: a copy and its source are the same picture (transitively: copies of one source)
    picture_of = {}
    for copy, source, alteration in copies:
        if alteration not in NOT_THE_SAME and copy in sha_of_post and source in sha_of_post:
            picture_of[sha_of_post[copy]] = picture_of[sha_of_post[source]] = sha_of_post[source]
    same = {tuple(sorted(p)) for p in itertools.combinations(picture_of, 2) if picture_of[p[0]] == picture_of[p[1]]}
    members = defaultdict(set)
    for _, _, sha, work in rows:
        members[work].add(sha)
    linked = {tuple(sorted(p)) for shas in members.values() for p in itertools.combinations(sorted(shas), 2)}
    score = WorksScore(len(linked & same) / len(linked) if linked else None, len(linked))
    recall: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    negatives: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for copy, source, alteration in copies:
        if copy not in work_of_post or source not in work_of_post:
            continue  # not fetched (deleted, hidden, …)
        together = work_of_post[copy] == work_of_post[source]
        if alteration == VARIANT:
            score.variants += 1
            score.variants_merged += together
            score.variants_linked += tuple(sorted((sha_of_post[copy], sha_of_post[source]))) in variant_pairs
        elif alteration in HARD_NEGATIVES:
            negatives[alteration][0] += together
            negatives[alteration][1] += 1
        else:
            recall[alteration][0] += together
            recall[alteration][1] += 1
    score.recall_by_alteration = {kind: (found, total) for kind, (found, total) in recall.items()}
    score.negatives_by_kind = {kind: (merged, total) for kind, (merged, total) in negatives.items()}
    return score
