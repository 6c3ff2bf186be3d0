"""Is each rater consistent with themself, and where do the ratings fall?

- **Test–retest**: images a rater rated twice (the rating page brings a share back unannounced,
  ``rating_repeat_share``): Krippendorff's alpha (ordinal) between the first and the second rating, the share of
  exact repeats and the mean absolute difference, per rater.
- **Drift**: each rater's mean rating per day of rating.
- **Coverage**: ratings per site, normalised-score decile and style cluster (of the active clustering): count, mean,
  spread — a style with few ratings is a style the aesthetic model cannot judge.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import psycopg2.extensions


@dataclass(frozen=True)
class Retest:
    rater: str
    images: int  # rated twice or more
    alpha: float | None  # ordinal, first vs second rating; None with fewer than two such images
    exact: float | None
    mean_abs_difference: float | None


@dataclass(frozen=True)
class Group:
    key: str
    ratings: int
    mean: float
    spread: float  # standard deviation


@dataclass
class Consistency:
    retest: list[Retest] = field(default_factory=list)
    drift: dict[str, list[tuple[str, int, float]]] = field(default_factory=dict)  # rater → (day, n, mean)
    by_site: list[Group] = field(default_factory=list)
    by_decile: list[Group] = field(default_factory=list)
    by_cluster: list[Group] = field(default_factory=list)
    style_version: int | None = None

    def describe(self) -> str:
        lines = ["test–retest (images a rater rated again, unannounced):"]
        for r in self.retest:
            if r.alpha is None:
                lines.append(f"  {r.rater}: {r.images} repeated images — too few to measure")
            else:
                lines.append(f"  {r.rater}: {r.images} repeated images, Krippendorff's alpha (ordinal) {r.alpha:.3f}, "
                             f"{r.exact:.0%} identical, mean |difference| {r.mean_abs_difference:.2f}")  # fmt: skip
        if not self.retest:
            lines.append("  no image was rated twice by the same rater yet")
        lines.append("drift (mean rating per day of rating):")
        for rater, days in sorted(self.drift.items()):
            shown = ", ".join(f"{day} {mean:.2f} (n={n})" for day, n, mean in days[-7:])
            lines.append(f"  {rater}: {shown}" + (f" … ({len(days)} days)" if len(days) > 7 else ""))
        for title, groups in (("site", self.by_site), ("normalised-score decile", self.by_decile)):
            lines.append(f"ratings by {title}: " + ", ".join(f"{g.key} {g.ratings} (mean {g.mean:.2f} ± {g.spread:.2f})"
                                                             for g in groups))  # fmt: skip
        if self.style_version is None:
            lines.append("ratings by style cluster: no active style clustering (`pony styles run`)")
        else:
            thin = sorted(self.by_cluster, key=lambda g: g.ratings)[:5]
            lines.append(f"ratings by style cluster (clustering v{self.style_version}, {len(self.by_cluster)} clusters "
                         "rated; fewest first): " + ", ".join(f"style_cluster_{g.key} {g.ratings} (mean {g.mean:.2f} "
                                                              f"± {g.spread:.2f})" for g in thin))  # fmt: skip
        return "\n".join(lines)


def consistency(conn: psycopg2.extensions.connection) -> Consistency:
    result = Consistency()
    with conn.cursor() as cur:
        cur.execute(
            """SELECT rater, sha256, array_agg(rating ORDER BY rated_at, rating_id) FROM human_rating
               GROUP BY rater, sha256 HAVING count(*) >= 2 ORDER BY rater"""
        )
        repeated: dict[str, list[tuple[int, int]]] = {}
        for rater, _, ratings in cur.fetchall():
            repeated.setdefault(rater, []).append((ratings[0], ratings[1]))
        for rater, pairs in repeated.items():
            result.retest.append(_retest(rater, pairs))
        cur.execute(
            """SELECT rater, to_char(date_trunc('day', rated_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD'), count(*),
                      avg(rating)::float8
               FROM human_rating GROUP BY 1, 2 ORDER BY 1, 2"""
        )
        for rater, day, n, mean in cur.fetchall():
            result.drift.setdefault(rater, []).append((day, n, mean))
        # each image's site and decile: its post in the newest normalisation run that scored it
        cur.execute(
            """WITH placed AS (
                   SELECT DISTINCT ON (i.sha256) i.sha256, i.site, least(9, floor(n.normalized_score * 10))::int AS d
                   FROM booru_post_image i
                   LEFT JOIN normalized_score n ON n.site = i.site AND n.post_id = i.post_id
                        AND n.run_id = (SELECT max(run_id) FROM normalize_run WHERE status = 'complete')
                   WHERE i.sha256 IN (SELECT sha256 FROM human_rating)
                   ORDER BY i.sha256, n.normalized_score IS NULL, i.site, i.post_id
               )
               SELECT 's', p.site, count(*), avg(h.rating)::float8, coalesce(stddev_pop(h.rating), 0)::float8
               FROM human_rating h JOIN placed p USING (sha256) GROUP BY p.site
               UNION ALL
               SELECT 'd', coalesce(p.d::text, 'none'), count(*), avg(h.rating)::float8,
                      coalesce(stddev_pop(h.rating), 0)::float8
               FROM human_rating h JOIN placed p USING (sha256) GROUP BY p.d ORDER BY 1, 2"""
        )
        for kind, key, n, mean, spread in cur.fetchall():
            (result.by_site if kind == "s" else result.by_decile).append(Group(key, n, mean, spread))
        cur.execute("SELECT version_id FROM style_clustering WHERE status = 'active'")
        row = cur.fetchone()
        if row is not None:
            result.style_version = row[0]
            cur.execute(
                """SELECT m.cluster_id::text, count(h.rating), coalesce(avg(h.rating), 0)::float8,
                          coalesce(stddev_pop(h.rating), 0)::float8
                   FROM style_cluster c
                   LEFT JOIN style_cluster_member m ON m.version_id = c.version_id AND m.cluster_id = c.cluster_id
                   LEFT JOIN human_rating h ON h.sha256 = m.sha256
                   WHERE c.version_id = %s GROUP BY m.cluster_id ORDER BY m.cluster_id""",
                (row[0],),
            )
            result.by_cluster = [Group(*r) for r in cur.fetchall() if r[0] is not None]
    return result


def _retest(rater: str, pairs: list[tuple[int, int]]) -> Retest:
    if len(pairs) < 2:
        return Retest(rater, len(pairs), None, None, None)
    import krippendorff

    matrix = np.array(pairs, dtype=float).T  # row 0: first ratings, row 1: the repeats
    alpha = None
    if len(np.unique(matrix)) > 1:
        alpha = float(krippendorff.alpha(reliability_data=matrix, level_of_measurement="ordinal",
                                         value_domain=[1, 2, 3, 4, 5]))  # fmt: skip
    differences = np.abs(matrix[0] - matrix[1])
    return Retest(rater, len(pairs), alpha, float(np.mean(differences == 0)), float(differences.mean()))
