"""What the sites know about a work, merged: the union of its live posts' tags in one spelling, tag groups kept, the
strictest rating, and one popularity figure.

- **Tags**: in one vocabulary (``pony_tasks.works.synonyms``): a tag's spelling made common (Derpibooru writes
  "blue eyes", Danbooru "blue_eyes" — the same tag), then the mapping table of true synonyms (e621's
  ``twilight_sparkle_(mlp)`` is Derpibooru's ``twilight sparkle``); tags that only look alike stay apart (e621
  ``female`` is not Danbooru ``1girl``).
- **Rating**: the strictest of the live posts (general < sensitive < questionable < explicit): a work is as
  explicit as its most explicit copy.
- **Popularity**: each live post's normalised percentile (the newest complete normalisation run: already comparable
  across sites), averaged with weights ``1 + log(1 + metric)`` — a percentile backed by more votes says more, but a
  big site must not drown a small one (raw counts would). Matured percentiles only when there are any; otherwise the
  provisional ones, and the work's popularity is provisional. Deleted posts contribute nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import psycopg2.extensions

from pony_tasks.works.synonyms import common_tag

RATING_ORDER = ("general", "sensitive", "questionable", "explicit")


@dataclass
class MergedWork:
    work_id: int
    canonical_sha256: str
    posts: list[tuple[str, int]] = field(default_factory=list)  # live posts (site, post_id)
    tags: list[str] = field(default_factory=list)
    tag_groups: dict[str, list[str]] = field(default_factory=dict)
    rating: str | None = None
    popularity: float | None = None
    provisional: bool = False

    @property
    def sites(self) -> list[str]:
        return sorted({site for site, _ in self.posts})


def merged_works(conn: psycopg2.extensions.connection, work_ids: list[int] | None = None) -> dict[int, MergedWork]:
    """{work_id: MergedWork} for these works (default: every work)."""
    from pony_tasks.normalize.run import latest_run_id

    run_id = latest_run_id(conn)
    with conn.cursor() as cur:
        cur.execute(
            """SELECT w.work_id, w.canonical_sha256, p.site, p.post_id, p.rating, p.tags, p.tag_groups,
                      n.normalized_score, n.provisional, n.metric
               FROM work w JOIN work_image i USING (work_id)
               JOIN booru_post_image b ON b.sha256 = i.sha256
               JOIN booru_post p ON p.site = b.site AND p.post_id = b.post_id AND NOT p.deleted
               LEFT JOIN normalized_score n ON n.run_id = %(run)s AND n.site = p.site AND n.post_id = p.post_id
               WHERE %(ids)s::bigint[] IS NULL OR w.work_id = ANY(%(ids)s::bigint[])
               ORDER BY w.work_id, p.site, p.post_id""",
            {"run": run_id, "ids": work_ids},
        )
        rows = cur.fetchall()
    works: dict[int, MergedWork] = {}
    scores: dict[int, list[tuple[float, bool, float]]] = {}
    for work_id, canonical, site, post_id, rating, tags, groups, score, provisional, metric in rows:
        work = works.setdefault(work_id, MergedWork(work_id, canonical))
        work.posts.append((site, post_id))
        for tag in tags:
            spelled = common_tag(tag)
            if spelled not in work.tags:
                work.tags.append(spelled)
        for group, members in (groups or {}).items():
            kept = work.tag_groups.setdefault(group, [])
            kept.extend(t for t in map(common_tag, members) if t not in kept)
        if rating in RATING_ORDER and (work.rating is None or RATING_ORDER.index(rating) >
                                       RATING_ORDER.index(work.rating)):  # fmt: skip
            work.rating = rating
        if score is not None:
            scores.setdefault(work_id, []).append((score, bool(provisional), 1 + math.log1p(max(metric or 0, 0))))
    for work_id, values in scores.items():
        matured = [(s, w) for s, provisional, w in values if not provisional]
        used = matured or [(s, w) for s, _, w in values]
        works[work_id].popularity = sum(s * w for s, w in used) / sum(w for _, w in used)
        works[work_id].provisional = not matured
    return works
