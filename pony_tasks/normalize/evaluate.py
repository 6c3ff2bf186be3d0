"""How well does the provisional predictor work? Checked on matured posts that also have an early snapshot.

Held-back posts (a fixed hash share) are predicted from their earliest snapshot with a growth curve fitted on the
others, placed in their own cohort, and compared with their final normalised score (Spearman). The same ranking
without the growth correction is reported beside it as the baseline.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import psycopg2.extensions
from scipy.stats import spearmanr

from pony_tasks.normalize.run import AGE_BUCKETS, metric_expression


@dataclass(frozen=True)
class PredictorCheck:
    pairs: int
    held_back: int
    spearman: float | None
    spearman_uncorrected: float | None

    def describe(self) -> str:
        if self.spearman is None:
            return (
                f"provisional predictor: not measurable ({self.held_back} held-back posts with an early snapshot; "
                "needs ≥ 10 — scrape with --mode refresh over time to collect them)"
            )
        return (
            f"provisional predictor on {self.held_back} held-back matured posts (of {self.pairs} with an early "
            f"snapshot): Spearman {self.spearman:.3f} with their final normalised score "
            f"(uncorrected early rank: {self.spearman_uncorrected:.3f})"
        )


MAX_CHECKED_POSTS = 200_000  # posts the check reads at most (a hash sample of the run's posts beyond that)
COHORT_QUANTILES = 1000  # a cohort's distribution, as this many quantiles (ranks to ±0.05 %)


def _bucket(age: float) -> float:
    return max(edge for edge in AGE_BUCKETS if edge <= age)


def evaluate_provisional(
    conn: psycopg2.extensions.connection,
    run_id: int,
    metrics: dict[str, str],
    maturity_days: float,
    holdout_percent: int = 20,
) -> PredictorCheck:
    snapshot_metric = metric_expression(metrics, "s")
    with conn.cursor() as cur:
        # Memory bounded at any corpus size: at most about MAX_CHECKED_POSTS posts (those whose post id hashes into
        # the sampled share), and each cohort as its quantiles rather than every member's value.
        cur.execute("SELECT count(*) FROM normalized_score WHERE run_id = %s AND NOT provisional", (run_id,))
        share = min(1.0, MAX_CHECKED_POSTS / max(1, cur.fetchone()[0]))
        cur.execute(
            f"""SELECT DISTINCT ON (n.site, n.post_id)
                       n.site, n.post_id, n.rating, n.cohort, n.log_metric, n.normalized_score,
                       extract(epoch FROM s.observed_at - p.created_at) / 86400.0 AS age, {snapshot_metric} AS metric
                FROM normalized_score n
                JOIN booru_post p USING (site, post_id)
                JOIN booru_score_snapshot s USING (site, post_id)
                WHERE n.run_id = %s AND NOT n.provisional
                  AND (n.post_id * 2654435761 + 12345) %% 1000003 < %s * 1000003
                  AND s.observed_at >= p.created_at
                  AND s.observed_at < p.created_at + make_interval(secs => %s * 86400)
                ORDER BY n.site, n.post_id, s.observed_at""",
            (run_id, share, maturity_days),
        )
        rows = [r for r in cur.fetchall() if r[7] is not None]
        groups = {(r[0], r[2], r[3]) for r in rows}
        cur.execute(
            """SELECT site, rating, cohort, percentile_disc(%s::float8[]) WITHIN GROUP (ORDER BY log_metric)
               FROM normalized_score WHERE run_id = %s AND NOT provisional GROUP BY 1, 2, 3""",
            ([i / COHORT_QUANTILES for i in range(COHORT_QUANTILES + 1)], run_id),
        )
        cohorts = {(site, rating, cohort): np.array(values) for site, rating, cohort, values in cur.fetchall()
                   if (site, rating, cohort) in groups}  # fmt: skip
    held = [r for r in rows if (r[1] * 2654435761) % 100 < holdout_percent]
    fit = [r for r in rows if (r[1] * 2654435761) % 100 >= holdout_percent]
    growth: dict[tuple[str, float], list[float]] = defaultdict(list)
    for site, _, _, _, final_log, _, age, metric in fit:
        growth[(site, _bucket(age))].append(final_log - np.sign(metric) * np.log1p(abs(metric)))
    offsets = {key: float(np.median(values)) for key, values in growth.items()}
    predicted, uncorrected, actual = [], [], []
    for site, _, rating, cohort, _, final_score, age, metric in held:
        early_log = float(np.sign(metric) * np.log1p(abs(metric)))
        values = cohorts[(site, rating, cohort)]
        for target, log_value in (
            (predicted, early_log + offsets.get((site, _bucket(age)), 0.0)),
            (uncorrected, early_log),
        ):
            target.append((np.searchsorted(values, log_value, "left") + np.searchsorted(values, log_value, "right"))
                          / (2 * len(values)))  # fmt: skip
        actual.append(final_score)
    if len(held) < 10:
        return PredictorCheck(len(rows), len(held), None, None)
    return PredictorCheck(
        len(rows),
        len(held),
        float(spearmanr(predicted, actual).statistic),
        float(spearmanr(uncorrected, actual).statistic),
    )
