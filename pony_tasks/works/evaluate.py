"""How well the works match a known truth (the sample corpus's planted re-posts and hard negatives): pair
precision over every linked pair, recall by kind of alteration, and how many hard negatives were merged."""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field

import psycopg2.extensions


@dataclass
class WorksScore:
    precision: float | None
    linked_pairs: int
    recall_by_alteration: dict[str, tuple[int, int]] = field(default_factory=dict)  # kind → (found, planted)
    negatives_merged: int = 0
    negatives: int = 0

    def describe(self) -> str:
        kinds = sorted(self.recall_by_alteration.items())
        recall = ", ".join(f"{kind} {found}/{total}" for kind, (found, total) in kinds)
        found = sum(f for f, _ in self.recall_by_alteration.values())
        total = sum(t for _, t in self.recall_by_alteration.values())
        precision = "n/a" if self.precision is None else f"{self.precision:.3f}"
        return (f"planted re-posts found {found}/{total} ({recall}); pair precision {precision} over "
                f"{self.linked_pairs} linked pairs; hard negatives merged {self.negatives_merged}/{self.negatives}")


def score_works(conn: psycopg2.extensions.connection, copies: list[tuple[tuple[str, int], tuple[str, int], str]]
                ) -> WorksScore:  # fmt: skip
    """``copies``: (copy post, source post, alteration) — alteration ``colour_swap`` marks a hard negative."""
    with conn.cursor() as cur:
        cur.execute("""SELECT b.site, b.post_id, b.sha256, w.work_id FROM booru_post_image b
                       JOIN work_image w USING (sha256)""")  # fmt: skip
        rows = cur.fetchall()
    work_of_post = {(site, post): work for site, post, _, work in rows}
    sha_of_post = {(site, post): sha for site, post, sha, _ in rows}
    # the truth as image pairs: a copy and its source are the same picture (transitively: copies of one source)
    picture_of = {}
    for copy, source, alteration in copies:
        if alteration != "colour_swap" and copy in sha_of_post and source in sha_of_post:
            picture_of[sha_of_post[copy]] = picture_of[sha_of_post[source]] = sha_of_post[source]
    same = {tuple(sorted(p)) for p in itertools.combinations(picture_of, 2) if picture_of[p[0]] == picture_of[p[1]]}
    members = defaultdict(set)
    for _, _, sha, work in rows:
        members[work].add(sha)
    linked = {tuple(sorted(p)) for shas in members.values() for p in itertools.combinations(sorted(shas), 2)}
    score = WorksScore(len(linked & same) / len(linked) if linked else None, len(linked))
    recall: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for copy, source, alteration in copies:
        if copy not in work_of_post or source not in work_of_post:
            continue  # not fetched (deleted, hidden, …)
        together = work_of_post[copy] == work_of_post[source]
        if alteration == "colour_swap":
            score.negatives += 1
            score.negatives_merged += together
        else:
            recall[alteration][0] += together
            recall[alteration][1] += 1
    score.recall_by_alteration = {kind: (found, total) for kind, (found, total) in recall.items()}
    return score
