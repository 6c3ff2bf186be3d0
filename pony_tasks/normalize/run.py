"""``pony normalize run``: one versioned, set-based normalisation pass in PostgreSQL.

For every post with a date, a rating and its site's metric (``normalize_metrics``; deleted posts excluded):

1. metric from the post's latest values, ``log_metric = sign(m)·ln(1 + |m|)``, age at its latest observation;
2. cohorts: within (site, rating), consecutive upload months merge until each holds ``min_cohort_size`` matured
   posts (matured: last observed at least ``maturity_days`` after upload);
3. matured posts: ``normalized_score = (rank − ½) / n`` within (site, rating, cohort) by log_metric — ties broken by
   a fixed hash of the post id, so a block of equal scores spreads evenly instead of piling on one value. The score is
   a percentile, so the same percentile on two sites is the same value;
4. young posts: the site's own score-versus-age curve (``growth_curve``: median log-growth from a post's early
   snapshots to its settled value; where fewer than 20 such pairs exist in an age bucket, the gap between the median
   settled post and the median post of that age) predicts the settled log metric, which is placed among the latest
   cohort of matured posts of the same (site, rating). These rows are flagged ``provisional``.

Everything runs in one transaction: a run is visible (``status = 'complete'``) all at once or not at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg2.extensions
from psycopg2 import sql

from pony_tasks.config import Settings, get_settings
from pony_tasks.db import connect
from pony_tasks.db.bulk import raise_work_mem

AGE_BUCKETS = (0.0, 1.0, 2.0, 4.0, 7.0, 14.0, 21.0)  # lower edges in days, below maturity
MIN_PAIRS = 20

METRIC_SQL = {
    "favorites": "{t}.favorites::float8",
    "score": "{t}.score::float8",
    "up_votes": "{t}.up_votes::float8",
    "wilson_score": "pony_wilson({t}.up_votes, {t}.down_votes)",
}


@dataclass(frozen=True)
class NormalizeResult:
    run_id: int
    matured: int
    provisional: int
    excluded: dict[str, int]
    cohorts: int


def metric_expression(metrics: dict[str, str], table: str) -> str:
    """A CASE expression giving each site's configured metric from ``table`` (booru_post or a snapshot)."""
    cases = " ".join(
        f"WHEN '{site}' THEN {METRIC_SQL[metric].format(t=table)}" for site, metric in sorted(metrics.items())
    )
    return f"(CASE {table}.site {cases} END)"


def _bucket_expression(age: str) -> str:
    edges = list(AGE_BUCKETS)
    return (
        "(CASE "
        + " ".join(f"WHEN {age} < {b} THEN {a}" for a, b in zip(edges, edges[1:], strict=False))
        + (f" ELSE {edges[-1]} END)")
    )


def latest_run_id(conn: psycopg2.extensions.connection) -> int | None:
    with conn.cursor() as cur:
        cur.execute("SELECT max(run_id) FROM normalize_run WHERE status = 'complete'")
        return cur.fetchone()[0]


def normalize(
    settings: Settings | None = None,
    *,
    as_of: datetime | None = None,
    conn: psycopg2.extensions.connection | None = None,
) -> NormalizeResult:
    """Run one normalisation pass and return its summary; earlier runs are kept."""
    settings = settings or get_settings()
    if conn is None:
        with connect(settings) as own:
            return normalize(settings, as_of=as_of, conn=own)
    as_of = as_of or datetime.now(UTC)
    parameters = {
        "metrics": settings.normalize_metrics,
        "maturity_days": settings.maturity_days,
        "min_cohort_size": settings.min_cohort_size,
        "age_buckets": list(AGE_BUCKETS),
    }
    with conn.cursor() as cur:
        raise_work_mem(cur)  # sorts and hashes of a few million rows stay in memory
        cur.execute(
            "INSERT INTO normalize_run (as_of, parameters) VALUES (%s, %s) RETURNING run_id",
            (as_of, json.dumps(parameters)),
        )
        run_id = cur.fetchone()[0]
        partition = sql.Identifier(f"normalized_score_run_{run_id}")
        cur.execute(
            sql.SQL(
                "CREATE TABLE {p} (LIKE normalized_score INCLUDING DEFAULTS INCLUDING CONSTRAINTS, "
                "CHECK (run_id = {run}))"
            ).format(p=partition, run=sql.Literal(run_id))
        )
        _base(cur, settings)
        excluded = _exclusions(cur)
        _cohorts(cur, settings.min_cohort_size)
        matured = _rank_matured(cur, run_id, partition)
        _growth_curve(cur, run_id, settings)
        provisional = _place_young(cur, run_id, partition)
        cur.execute(
            sql.SQL("ALTER TABLE normalized_score ATTACH PARTITION {p} FOR VALUES IN ({run})").format(
                p=partition, run=sql.Literal(run_id)
            )
        )
        # statistics now, not when autovacuum gets round to it: the next stage's plans (rating-set sampling joins
        # this run's scores to every post) were planned for 3,586 rows instead of 817,691 at 1M posts
        cur.execute(sql.SQL("ANALYZE {p}").format(p=partition))
        cur.execute("SELECT count(DISTINCT (site, rating, cohort)) FROM norm_cohort_of")
        cohorts = cur.fetchone()[0]
        summary = {"matured": matured, "provisional": provisional, "excluded": excluded, "cohorts": cohorts}
        cur.execute(
            "UPDATE normalize_run SET status = 'complete', summary = %s WHERE run_id = %s",
            (json.dumps(summary), run_id),
        )
        cur.execute("DROP TABLE norm_base, norm_cohort_of")
    conn.commit()
    prune_runs(conn, settings.normalize_keep_runs)
    return NormalizeResult(run_id, matured, provisional, excluded, cohorts)


def prune_runs(conn: psycopg2.extensions.connection, keep: int) -> list[int]:
    """Drop the scores (the partition) of complete runs older than the newest ``keep``; their ``normalize_run`` rows
    stay, marked ``pruned``. Returns the pruned run ids. Storage stays that of ``keep`` runs however many run."""
    with conn.cursor() as cur:
        cur.execute("""SELECT run_id FROM normalize_run WHERE status = 'complete' ORDER BY run_id DESC OFFSET %s""",
                    (keep,))  # fmt: skip
        old = [row[0] for row in cur.fetchall()]
        for run_id in old:
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {p}").format(p=sql.Identifier(f"normalized_score_run_{run_id}")))
            cur.execute("UPDATE normalize_run SET status = 'pruned' WHERE run_id = %s", (run_id,))
    conn.commit()
    return old


def _base(cur: psycopg2.extensions.cursor, settings: Settings) -> None:
    """One row per post with its metric, log metric, age at its latest observation and why it is excluded, if so."""
    metric = metric_expression(settings.normalize_metrics, "p")
    cur.execute(
        f"""CREATE TEMP TABLE norm_base ON COMMIT DROP AS
            WITH latest AS (
                SELECT site, post_id, max(observed_at) AS observed_at FROM booru_score_snapshot GROUP BY site, post_id
            ), measured AS (
                SELECT p.site, p.post_id, p.rating, p.created_at, p.deleted, {metric} AS metric,
                       extract(epoch FROM l.observed_at - p.created_at) / 86400.0 AS age_days
                FROM booru_post p JOIN latest l USING (site, post_id)
            )
            SELECT site COLLATE "C" AS site, post_id, rating COLLATE "C" AS rating, metric, age_days,
                   date_trunc('month', created_at AT TIME ZONE 'UTC') AS month,
                   sign(metric) * ln(1 + abs(metric)) AS log_metric,
                   age_days >= %(maturity)s AS matured,
                   CASE WHEN deleted THEN 'deleted'
                        WHEN created_at IS NULL THEN 'no upload date'
                        WHEN rating IS NULL THEN 'no rating'
                        WHEN metric IS NULL THEN 'no metric'
                        WHEN age_days < 0 THEN 'observed before upload' END AS excluded
            FROM measured""",
        {"maturity": settings.maturity_days},
    )
    cur.execute("ANALYZE norm_base")


def _exclusions(cur: psycopg2.extensions.cursor) -> dict[str, int]:
    cur.execute("SELECT excluded, count(*) FROM norm_base WHERE excluded IS NOT NULL GROUP BY 1")
    return dict(cur.fetchall())


def _cohorts(cur: psycopg2.extensions.cursor, min_size: int) -> None:
    cur.execute(
        """CREATE TEMP TABLE norm_cohort_of ON COMMIT DROP AS
           WITH months AS (
               SELECT site, rating, month, count(*) FILTER (WHERE matured) AS matured
               FROM norm_base WHERE excluded IS NULL GROUP BY site, rating, month
           ), running AS (
               SELECT site, rating, month,
                      sum(matured) OVER (PARTITION BY site, rating ORDER BY month) - matured AS before,
                      sum(matured) OVER (PARTITION BY site, rating) AS total
               FROM months
           )
           SELECT site, rating, month,
                  least(floor(before / %(size)s), greatest(floor(total / %(size)s), 1) - 1)::int AS cohort
           FROM running""",
        {"size": min_size},
    )


def _rank_matured(cur: psycopg2.extensions.cursor, run_id: int, partition: sql.Identifier) -> int:
    query = sql.SQL(
        """INSERT INTO {partition}
               (run_id, site, post_id, rating, cohort, metric, log_metric, age_days, normalized_score, provisional)
           SELECT %(run)s, b.site, b.post_id, b.rating, c.cohort, b.metric, b.log_metric, b.age_days,
                  (row_number() OVER w - 0.5) / count(*) OVER (PARTITION BY b.site, b.rating, c.cohort),
                  false
           FROM norm_base b JOIN norm_cohort_of c USING (site, rating, month)
           WHERE b.excluded IS NULL AND b.matured
           WINDOW w AS (PARTITION BY b.site, b.rating, c.cohort
                        ORDER BY b.log_metric, hashint8(b.post_id), b.post_id)
"""
    ).format(partition=partition)
    cur.execute(query, {"run": run_id})
    return cur.rowcount


def _growth_curve(cur: psycopg2.extensions.cursor, run_id: int, settings: Settings) -> None:
    """Per site and age bucket: how much log_metric still grows before it settles."""
    snapshot_metric = metric_expression(settings.normalize_metrics, "s")
    bucket = _bucket_expression("age")
    cur.execute(
        f"""INSERT INTO growth_curve (run_id, site, age_bucket, log_offset, samples, method)
            WITH early AS (
                SELECT s.site, s.post_id, b.log_metric AS final_log,
                       extract(epoch FROM s.observed_at - p.created_at) / 86400.0 AS age, {snapshot_metric} AS metric
                FROM booru_score_snapshot s
                JOIN booru_post p USING (site, post_id)
                JOIN norm_base b USING (site, post_id)
                WHERE b.excluded IS NULL AND b.matured
                  AND s.observed_at < p.created_at + make_interval(secs => %(maturity)s * 86400)
                  AND s.observed_at >= p.created_at
            ), pairs AS (
                SELECT e.site, {bucket} AS age_bucket,
                       percentile_cont(0.5) WITHIN GROUP (
                           ORDER BY e.final_log - sign(e.metric) * ln(1 + abs(e.metric))) AS log_offset,
                       count(*) AS samples
                FROM early e
                WHERE e.metric IS NOT NULL
                GROUP BY 1, 2
            ), settled AS (
                SELECT site, percentile_cont(0.5) WITHIN GROUP (ORDER BY log_metric) AS median
                FROM norm_base WHERE excluded IS NULL AND matured GROUP BY site
            ), cross_section AS (
                SELECT b.site, {bucket.replace("age", "b.age_days")} AS age_bucket,
                       st.median - percentile_cont(0.5) WITHIN GROUP (ORDER BY b.log_metric) AS log_offset,
                       count(*) AS samples
                FROM norm_base b JOIN settled st USING (site)
                WHERE b.excluded IS NULL AND NOT b.matured
                GROUP BY b.site, 2, st.median
            )
            SELECT %(run)s, coalesce(p.site, x.site), coalesce(p.age_bucket, x.age_bucket),
                   CASE WHEN p.samples >= %(min_pairs)s THEN p.log_offset ELSE x.log_offset END,
                   CASE WHEN p.samples >= %(min_pairs)s THEN p.samples ELSE x.samples END,
                   CASE WHEN p.samples >= %(min_pairs)s THEN 'pairs' ELSE 'cross-section' END
            FROM pairs p FULL JOIN cross_section x USING (site, age_bucket)
            WHERE p.samples >= %(min_pairs)s OR x.samples IS NOT NULL""",
        {"run": run_id, "maturity": settings.maturity_days, "min_pairs": MIN_PAIRS},
    )


def _place_young(cur: psycopg2.extensions.cursor, run_id: int, partition: sql.Identifier) -> int:
    """Provisional scores: each young post's predicted settled log_metric, ranked against the newest matured cohort
    of its (site, rating) with a running count of matured posts."""
    bucket = _bucket_expression("b.age_days")
    query = sql.SQL(
        f"""INSERT INTO {{partition}}
               (run_id, site, post_id, rating, cohort, metric, log_metric, age_days, normalized_score, provisional)
            WITH newest AS (
                SELECT site, rating, max(cohort) AS cohort FROM {{partition}} GROUP BY site, rating
            ), young AS (
                SELECT b.site, b.post_id, b.rating, c.cohort AS own_cohort, b.metric, b.log_metric, b.age_days,
                       b.log_metric + coalesce(g.log_offset, 0) AS predicted
                FROM norm_base b
                JOIN norm_cohort_of c USING (site, rating, month)
                LEFT JOIN growth_curve g ON g.run_id = %(run)s AND g.site = b.site AND g.age_bucket = {bucket}
                WHERE b.excluded IS NULL AND NOT b.matured
            ), pool AS (
                SELECT y.site, y.rating, y.post_id, y.predicted AS value, false AS is_matured,
                       y.own_cohort, y.metric, y.log_metric, y.age_days
                FROM young y
                UNION ALL
                SELECT n.site, n.rating, n.post_id, n.log_metric, true, NULL, NULL, NULL, NULL
                FROM {{partition}} n JOIN newest USING (site, rating, cohort)
            ), placed AS (
                SELECT *,
                       count(*) FILTER (WHERE is_matured) OVER (
                           PARTITION BY site, rating ORDER BY value, is_matured DESC ROWS UNBOUNDED PRECEDING
                       ) AS below,
                       count(*) FILTER (WHERE is_matured) OVER (PARTITION BY site, rating) AS total
                FROM pool
            )
            SELECT %(run)s, site, post_id, rating, own_cohort, metric, log_metric, age_days,
                   CASE WHEN total = 0 THEN 0.5
                        ELSE least(1.0, greatest(0.0, (below + 0.5) / (total + 1.0))) END,
                   true
            FROM placed WHERE NOT is_matured"""
    ).format(partition=partition)
    cur.execute(query, {"run": run_id})
    return cur.rowcount
