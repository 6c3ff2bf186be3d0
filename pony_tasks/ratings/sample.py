"""``pony ratings sample``: pick images for humans to rate, spread evenly over strata.

A stratum is (site, unified rating, normalised-score decile, upload year) from the latest normalisation run. Images
are drawn round-robin: one from every stratum, then a second from every stratum that has one, and so on, each
stratum's images in a seeded random order — so a small set still holds good, average and very bad images of every
kind instead of mostly the most common kind. Images already in an earlier set are skipped unless asked.
Style clusters on CLIP embeddings join the strata once embeddings exist (embedding issue).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

from pony_tasks.config import Settings, get_settings
from pony_tasks.db import connect
from pony_tasks.normalize.run import latest_run_id


@dataclass(frozen=True)
class RatingSetResult:
    set_id: int
    size: int
    strata: int
    by_site: dict[str, int]
    by_decile: dict[int, int]


def sample_rating_set(
    n: int, *, settings: Settings | None = None, seed: int = 0, include_previous: bool = False
) -> RatingSetResult:
    if n <= 0:
        raise ValueError(f"the rating set needs a positive size, got {n}")
    settings = settings or get_settings()
    with connect(settings) as conn, conn.cursor() as cur:
        run_id = latest_run_id(conn)
        if run_id is None:
            raise LookupError("no normalisation run yet: run `pony normalize run` first (strata use its deciles)")
        parameters = {"n": n, "seed": seed, "include_previous": include_previous, "normalize_run_id": run_id}
        cur.execute(
            "INSERT INTO rating_set (normalize_run_id, parameters, size) VALUES (%s, %s, 0) RETURNING set_id",
            (run_id, json.dumps(parameters)),
        )
        set_id = cur.fetchone()[0]
        cur.execute(
            """INSERT INTO rating_set_item (set_id, position, sha256, site, post_id, stratum)
               WITH rated_images AS (SELECT DISTINCT sha256 FROM rating_set_item),
               rated_works AS (SELECT DISTINCT w.work_id FROM rating_set_item r JOIN work_image w USING (sha256)),
               candidates AS (
                   -- one image per work (its canonical image first; an image in no work is a work of its own):
                   -- people never rate the same picture twice
                   SELECT DISTINCT ON (coalesce('w' || w.work_id, i.sha256)) i.sha256, n.site, n.post_id,
                          concat_ws('|', n.site, n.rating, least(9, floor(n.normalized_score * 10))::int,
                                    extract(year FROM p.created_at)::int) AS stratum
                   FROM booru_post_image i
                   JOIN normalized_score n ON n.run_id = %(run)s AND n.site = i.site AND n.post_id = i.post_id
                   JOIN booru_post p ON p.site = i.site AND p.post_id = i.post_id AND NOT p.deleted
                   LEFT JOIN work_image w ON w.sha256 = i.sha256
                   LEFT JOIN work k ON k.work_id = w.work_id
                   -- two anti-joins (hashed: linear), not one subquery with an OR (a scan of every earlier
                   -- set's items for each candidate)
                   WHERE %(previous)s OR (NOT EXISTS (SELECT 1 FROM rated_images x WHERE x.sha256 = i.sha256)
                                          AND NOT EXISTS (SELECT 1 FROM rated_works x WHERE x.work_id = w.work_id))
                   ORDER BY coalesce('w' || w.work_id, i.sha256), i.sha256 IS DISTINCT FROM k.canonical_sha256,
                            i.sha256, n.site, n.post_id
               ), ordered AS (
                   SELECT *, row_number() OVER (PARTITION BY stratum ORDER BY md5(sha256 || %(seed)s)) AS round,
                          md5(stratum || %(seed)s) AS stratum_order
                   FROM candidates
               )
               SELECT %(set)s, row_number() OVER (ORDER BY round, stratum_order), sha256, site, post_id, stratum
               FROM ordered ORDER BY round, stratum_order LIMIT %(n)s""",
            {"run": run_id, "seed": str(seed), "n": n, "set": set_id, "previous": include_previous},
        )
        size = cur.rowcount
        if size == 0:  # raised inside the transaction: the empty set is rolled back
            raise LookupError(f"no image to sample: none has a normalised score in run {run_id} (fetch images and "
                              "run the normalisation first)" + ("" if include_previous else
                                                                 ", or every one is in an earlier rating set"))
        cur.execute("UPDATE rating_set SET size = %s WHERE set_id = %s", (size, set_id))
        cur.execute("SELECT stratum FROM rating_set_item WHERE set_id = %s", (set_id,))
        strata = [row[0].split("|") for row in cur.fetchall()]
    return RatingSetResult(
        set_id,
        size,
        len({tuple(s) for s in strata}),
        dict(Counter(s[0] for s in strata)),
        dict(sorted(Counter(int(s[2]) for s in strata).items())),
    )
