"""``pony ratings sample``: pick images for humans to rate, spread evenly over strata.

A stratum is (site, unified rating, normalised-score decile, upload year) from the latest normalisation run. Images
are drawn round-robin: one from every stratum, then a second from every stratum that has one, and so on, each
stratum's images in a seeded random order — so a small set still holds good, average and very bad images of every
kind instead of mostly the most common kind. Images already in an earlier set are skipped unless asked.

With an active style clustering (``pony styles``) the style cluster joins the stratum, and the set first covers
every cluster: up to ``per_cluster`` images of each (a cluster with fewer gives all it has; earlier rating sets
count towards it), drawn round-robin over its own strata, before the rest of the set is filled round-robin as
above — a style missing from the rated set is a style the aesthetic model cannot judge. Without a clustering the
strata are as before and the result says so.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from pony_tasks.config import Settings, get_settings
from pony_tasks.db import connect
from pony_tasks.normalize.run import latest_run_id
from pony_tasks.styles import active_version


@dataclass(frozen=True)
class RatingSetResult:
    set_id: int
    size: int
    strata: int
    by_site: dict[str, int]
    by_decile: dict[int, int]
    style_version: int | None = None  # the clustering whose clusters joined the strata; None: none was active
    by_cluster: dict[int, int] = field(default_factory=dict)
    clusters_short: dict[int, int] = field(default_factory=dict)  # cluster → images it has, where fewer than asked
    styles_off: bool = False  # asked to leave the style clusters out (--no-styles)

    def describe(self) -> str:
        text = (f"rating set {self.set_id}: {self.size} images from {self.strata} strata; by site {self.by_site}; "
                f"by normalised-score decile {self.by_decile}")  # fmt: skip
        if self.styles_off:
            return text + "; style clusters left out of the strata (--no-styles)"
        if self.style_version is None:
            return text + "; no active style clustering, so styles are not among the strata (`pony styles run`)"
        text += (f"; style clusters of clustering v{self.style_version}: {len(self.by_cluster)} covered, "
                 f"{min(self.by_cluster.values(), default=0)}–{max(self.by_cluster.values(), default=0)} images "
                 "each in this set")  # fmt: skip
        if self.clusters_short:
            text += "; given whole (fewer images than asked): " + ", ".join(
                f"style_cluster_{c} ({n})" for c, n in sorted(self.clusters_short.items()))
        return text


def weakest_clusters(
    heldout: dict[str, dict], rated: dict[int, int], clusters: list[int], share: float = 0.25, min_ratings: int = 10,
) -> list[int]:  # fmt: skip
    """Where the next ratings teach the model most: clusters with fewer than ``min_ratings`` ratings first (fewest
    first: the model cannot be judged there yet), then by held-out mean absolute error, highest first — the
    weakest ``share`` of ``clusters`` (at least one). ``heldout``: a version's ``heldout_by_cluster``."""
    def weakness(cluster: int) -> tuple:
        ratings = rated.get(cluster, 0)
        if ratings < min_ratings:
            return (0, ratings, 0.0)
        error = heldout.get(str(cluster), {}).get("mae")
        return (1, 0, -(error if error is not None else 1.0))

    ordered = sorted(clusters, key=lambda c: (weakness(c), c))
    return ordered[: max(1, round(share * len(ordered)))]


@dataclass(frozen=True)
class Focus:
    style_version: int
    aesthetic_version: int | None
    clusters: list[int]
    why: dict[int, str]


def focus_on_weakest(conn, share: float = 0.25, min_ratings: int = 10) -> Focus:  # noqa: ANN001
    """The weakest clusters of the active clustering by the active aesthetic model's held-out error (the newest
    version's when none is active) and by the ratings each holds."""
    with conn.cursor() as cur:
        style = active_version(conn)
        if style is None:
            raise LookupError("no active style clustering: `--focus weakest` needs one (`pony styles run`, then "
                              "`pony styles activate`)")  # fmt: skip
        cur.execute("SELECT cluster_id FROM style_cluster WHERE version_id = %s ORDER BY cluster_id", (style,))
        clusters = [row[0] for row in cur.fetchall()]
        cur.execute("""SELECT version_id, metrics FROM aesthetic_model ORDER BY status = 'active' DESC,
                       version_id DESC LIMIT 1""")  # fmt: skip
        row = cur.fetchone()
        version, metrics = (row[0], row[1] or {}) if row else (None, {})
        heldout = metrics.get("heldout_by_cluster", {}) if metrics.get("style_version") == style else {}
        cur.execute("""SELECT m.cluster_id, count(*) FROM human_rating h
                       JOIN style_cluster_member m ON m.version_id = %s AND m.sha256 = h.sha256 GROUP BY 1""",
                    (style,))  # fmt: skip
        rated = dict(cur.fetchall())
    chosen = weakest_clusters(heldout, rated, clusters, share, min_ratings)
    why = {}
    for cluster in chosen:
        error = heldout.get(str(cluster), {}).get("mae")
        why[cluster] = (f"{rated.get(cluster, 0)} ratings" + (f", held-out error {error:.3f}" if error is not None
                                                               else ", no held-out error yet"))  # fmt: skip
    return Focus(style, version, chosen, why)


def sample_rating_set(
    n: int, *, settings: Settings | None = None, seed: int = 0, include_previous: bool = False,
    per_cluster: int = 20, styles: bool = True, clusters: list[int] | None = None,
) -> RatingSetResult:  # fmt: skip
    """``per_cluster``: images of every style cluster the set covers first (with an active clustering and
    ``styles``). ``clusters``: only images of these clusters of the active clustering (``--focus weakest``)."""
    if n <= 0:
        raise ValueError(f"the rating set needs a positive size, got {n}")
    if per_cluster < 0:
        raise ValueError(f"per_cluster must be 0 or more, got {per_cluster}")
    settings = settings or get_settings()
    with connect(settings) as conn, conn.cursor() as cur:
        run_id = latest_run_id(conn)
        if run_id is None:
            raise LookupError("no normalisation run yet: run `pony normalize run` first (strata use its deciles)")
        style_version = active_version(conn) if styles else None
        if clusters is not None and style_version is None:
            raise LookupError("sampling from some style clusters needs an active style clustering")
        parameters = {"n": n, "seed": seed, "include_previous": include_previous, "normalize_run_id": run_id,
                      "style_version": style_version, "per_cluster": per_cluster, "clusters": clusters}  # fmt: skip
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
                                    extract(year FROM p.created_at)::int, 'c' || m.cluster_id) AS stratum,
                          m.cluster_id
                   FROM booru_post_image i
                   LEFT JOIN style_cluster_member m ON m.version_id = %(style)s AND m.sha256 = i.sha256
                   JOIN normalized_score n ON n.run_id = %(run)s AND n.site = i.site AND n.post_id = i.post_id
                   JOIN booru_post p ON p.site = i.site AND p.post_id = i.post_id AND NOT p.deleted
                   LEFT JOIN work_image w ON w.sha256 = i.sha256
                   LEFT JOIN work k ON k.work_id = w.work_id
                   -- two anti-joins (hashed: linear), not one subquery with an OR (a scan of every earlier
                   -- set's items for each candidate)
                   WHERE (%(previous)s OR (NOT EXISTS (SELECT 1 FROM rated_images x WHERE x.sha256 = i.sha256)
                                           AND NOT EXISTS (SELECT 1 FROM rated_works x WHERE x.work_id = w.work_id)))
                     AND (%(only)s::int[] IS NULL OR m.cluster_id = ANY(%(only)s::int[]))
                   ORDER BY coalesce('w' || w.work_id, i.sha256), i.sha256 IS DISTINCT FROM k.canonical_sha256,
                            i.sha256, n.site, n.post_id
               ), ordered AS (
                   SELECT *, row_number() OVER (PARTITION BY stratum ORDER BY md5(sha256 || %(seed)s)) AS round,
                          md5(stratum || %(seed)s) AS stratum_order
                   FROM candidates
               ), rated_per_cluster AS (  -- what earlier sets already hold of each cluster (they count towards k)
                   SELECT m.cluster_id, count(DISTINCT r.sha256) AS rated FROM rating_set_item r
                   JOIN style_cluster_member m ON m.version_id = %(style)s AND m.sha256 = r.sha256
                   WHERE NOT %(previous)s GROUP BY m.cluster_id
               ), ranked AS (
                   SELECT o.*, row_number() OVER (PARTITION BY o.cluster_id ORDER BY o.round, o.stratum_order)
                               + coalesce(c.rated, 0) AS in_cluster
                   FROM ordered o LEFT JOIN rated_per_cluster c USING (cluster_id)
               ), chosen AS (
                   -- first every cluster's first k (round-robin over its strata), then everything round-robin
                   SELECT *, (cluster_id IS NOT NULL AND in_cluster <= %(k)s) AS covers FROM ranked
               )
               SELECT %(set)s, row_number() OVER (ORDER BY covers DESC, CASE WHEN covers THEN in_cluster END,
                                                  round, stratum_order),
                      sha256, site, post_id, stratum
               FROM chosen ORDER BY covers DESC, CASE WHEN covers THEN in_cluster END, round, stratum_order
               LIMIT %(n)s""",
            {"run": run_id, "seed": str(seed), "n": n, "set": set_id, "previous": include_previous,
             "style": style_version, "k": per_cluster, "only": clusters},
        )  # fmt: skip
        size = cur.rowcount
        if size == 0:  # raised inside the transaction: the empty set is rolled back
            raise LookupError(f"no image to sample: none has a normalised score in run {run_id} (fetch images and "
                              "run the normalisation first)" + ("" if include_previous else
                                                                 ", or every one is in an earlier rating set"))
        cur.execute("UPDATE rating_set SET size = %s WHERE set_id = %s", (size, set_id))
        cur.execute("SELECT stratum FROM rating_set_item WHERE set_id = %s", (set_id,))
        strata = [row[0].split("|") for row in cur.fetchall()]
        short: dict[int, int] = {}
        if style_version is not None:
            cur.execute("""SELECT cluster_id, images FROM style_cluster WHERE version_id = %s AND images < %s""",
                        (style_version, per_cluster))  # fmt: skip
            short = dict(cur.fetchall())
    clusters = Counter(int(s[4][1:]) for s in strata if len(s) > 4 and s[4].startswith("c"))
    return RatingSetResult(
        set_id,
        size,
        len({tuple(s) for s in strata}),
        dict(Counter(s[0] for s in strata)),
        dict(sorted(Counter(int(s[2]) for s in strata).items())),
        style_version,
        dict(sorted(clusters.items())),
        short,
        not styles,
    )
