"""The rating tool's logic (used by the Airflow UI plugin, usable without it): which image to show next, storing
a rating with the rater's name, undoing the rater's last rating.

Next-image modes: ``stratified`` — the rating set in its stored round-robin order (every stratum early);
``uncertain`` — images of the set whose active-model score is closest to the middle band (the model is least sure);
``disagree`` — images whose aesthetic percentile differs most from their normalised booru percentile; ``weakest``
— images of the style clusters where the model is weakest (``ratings.sample.focus_on_weakest``) first. Images the
rater already rated, and those the client skipped this session, are never offered again — except the share
``repeat_share`` (setting ``rating_repeat_share``, 3 %) that comes back unannounced: every ~1/share-th image is one
the rater rated once, at least ``REPEAT_GAP`` ratings ago, so their test–retest agreement can be measured
(``ratings.consistency``).

A rating carries the key the page made when it showed the image: sent twice (a retry after a dropped connection, a
double press), it is stored once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg2.extensions

MODES = ("stratified", "uncertain", "disagree", "weakest")
SOURCE = "airflow-ui"
REPEAT_GAP = 20  # a repeat is an image rated at least this many of the rater's ratings ago


@dataclass(frozen=True)
class NextImage:
    sha256: str | None
    position: int | None
    rated_by_rater: int
    set_size: int
    site: str | None = None
    tags: list[str] | None = None
    repeat: bool = False  # shown again for test–retest (the page does not say so)


def next_image(
    conn: psycopg2.extensions.connection, set_id: int, rater: str, mode: str = "stratified",
    exclude: list[str] | None = None, repeat_share: float = 0.0,
) -> NextImage:  # fmt: skip
    return next_images(conn, set_id, rater, mode, exclude, repeat_share)[0]


_ORDER = {
    "weakest": "(m.cluster_id = ANY(%(weak)s::int[])) IS NOT TRUE, r.position",
    "stratified": "r.position",
    "uncertain": "abs(coalesce(a.percentile, 0.5) - 0.5), r.position",
    "disagree": "abs(coalesce(a.percentile, 0.5) - coalesce(n.value, 0.5)) DESC, r.position",
}


def next_images(
    conn: psycopg2.extensions.connection, set_id: int, rater: str, mode: str = "stratified",
    exclude: list[str] | None = None, repeat_share: float = 0.0, count: int = 1,
) -> list[NextImage]:  # fmt: skip
    """The next ``count`` images, in order (the page shows the first and loads the others ahead): each as it would
    come once the ones before it are rated. The set's size, the rater's progress and the weakest clusters are read
    once for all of them."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    weak = _weakest(conn) if mode == "weakest" else []
    with conn.cursor() as cur:
        cur.execute("SELECT size FROM rating_set WHERE set_id = %s", (set_id,))
        row = cur.fetchone()
        if row is None:
            raise LookupError(f"rating set {set_id} does not exist (see `pony ratings sample`)")
        size = row[0]
        cur.execute("""SELECT count(DISTINCT sha256), count(*) FROM human_rating
                       WHERE rater = %s AND sha256 IN (SELECT sha256 FROM rating_set_item WHERE set_id = %s)""",
                    (rater, set_id))  # fmt: skip
        done, given = cur.fetchone()
        shown: list[NextImage] = []
        excluded = list(exclude or [])
        for ahead in range(count):
            again = _repeat(cur, set_id, rater, excluded, repeat_share, given + ahead)
            found = again or _next(cur, set_id, rater, mode, excluded, weak)
            if found is None:
                break
            shown.append(NextImage(found[0], found[1], done, size, found[2], list(found[3]), repeat=again is not None))
            excluded.append(found[0])
    return shown or [NextImage(None, None, done, size)]


def _next(cur, set_id: int, rater: str, mode: str, exclude: list[str], weak: list[int]) -> tuple | None:  # noqa: ANN001
    """(sha256, position, site, tags) of the first image of the set the rater has not rated, in ``mode``'s order."""
    cur.execute(
        f"""SELECT r.sha256, r.position, p.site, p.tags
            FROM rating_set_item r
            JOIN booru_post p ON p.site = r.site AND p.post_id = r.post_id
            LEFT JOIN aesthetic_score a ON a.sha256 = r.sha256
                 AND a.version_id = (SELECT version_id FROM aesthetic_model WHERE status = 'active')
            LEFT JOIN LATERAL (SELECT s.normalized_score AS value FROM normalized_score s WHERE s.site = r.site
                               AND s.post_id = r.post_id ORDER BY s.run_id DESC LIMIT 1) n ON true
            LEFT JOIN style_cluster_member m ON m.sha256 = r.sha256
                 AND m.version_id = (SELECT version_id FROM style_clustering WHERE status = 'active')
            WHERE r.set_id = %(set)s AND NOT (r.sha256 = ANY(%(exclude)s))
              AND NOT EXISTS (SELECT 1 FROM human_rating h WHERE h.sha256 = r.sha256 AND h.rater = %(rater)s)
            ORDER BY {_ORDER[mode]} LIMIT 1""",
        {"set": set_id, "exclude": exclude, "rater": rater, "weak": weak},
    )
    return cur.fetchone()


def progress(conn: psycopg2.extensions.connection, rater: str) -> dict[str, int]:
    """The rater's ratings in all, and in the last hour (the page's pace and time left)."""
    with conn.cursor() as cur:
        cur.execute("""SELECT count(*), count(*) FILTER (WHERE rated_at > now() - interval '1 hour')
                       FROM human_rating WHERE rater = %s""", (rater,))  # fmt: skip
        total, last_hour = cur.fetchone()
    return {"rated": total, "last_hour": last_hour}


def _weakest(conn: psycopg2.extensions.connection) -> list[int]:
    """The style clusters ``--focus weakest`` would sample (none without an active clustering: the set's order)."""
    from pony_tasks.ratings.sample import focus_on_weakest

    try:
        return focus_on_weakest(conn).clusters
    except LookupError:
        return []


def _repeat(cur, set_id: int, rater: str, exclude: list[str], share: float, given: int) -> tuple | None:  # noqa: ANN001
    """(sha256, position, site, tags) of the image to show again now — every ~1/share-th rating in the set;
    ``given``: the rater's ratings in the set by the time this one shows — or None."""
    if share <= 0:
        return None
    if math.floor((given + 1) * share) <= math.floor(given * share):
        return None
    cur.execute(
        """WITH recent AS (SELECT rating_id FROM human_rating WHERE rater = %(rater)s ORDER BY rating_id DESC
                           OFFSET %(gap)s LIMIT 1)
           SELECT h.sha256 FROM human_rating h
           WHERE h.rater = %(rater)s AND NOT (h.sha256 = ANY(%(exclude)s))
             AND h.sha256 IN (SELECT sha256 FROM rating_set_item WHERE set_id = %(set)s)
           GROUP BY h.sha256
           HAVING count(*) = 1 AND max(h.rating_id) <= (SELECT rating_id FROM recent)
           ORDER BY md5(h.sha256 || %(rater)s) LIMIT 1""",
        {"rater": rater, "gap": REPEAT_GAP, "set": set_id, "exclude": exclude},
    )
    row = cur.fetchone()
    if row is None:
        return None
    cur.execute("""SELECT r.sha256, r.position, p.site, p.tags FROM rating_set_item r
                   JOIN booru_post p ON p.site = r.site AND p.post_id = r.post_id
                   WHERE r.set_id = %s AND r.sha256 = %s ORDER BY r.position LIMIT 1""", (set_id, row[0]))  # fmt: skip
    return cur.fetchone()


def record_rating(
    conn: psycopg2.extensions.connection, sha256: str, rating: int, rater: str, key: str | None = None
) -> int:
    """Store a rating; ``key`` (made by the page when it showed the image): the same key again stores nothing and
    returns the first one's id."""
    if not isinstance(rating, int) or not 1 <= rating <= 5:
        raise ValueError(f"a rating is an integer from 1 to 5, got {rating!r}")
    if not rater:
        raise ValueError("a rating needs a rater")
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM image WHERE sha256 = %s", (sha256,))
        if cur.fetchone() is None:
            raise LookupError(f"no stored image {sha256}")
        cur.execute("""INSERT INTO human_rating (sha256, rating, rater, rated_at, source, client_key)
                       VALUES (%s, %s, %s, %s, %s, %s)
                       ON CONFLICT (client_key) WHERE client_key IS NOT NULL DO NOTHING
                       RETURNING rating_id""", (sha256, rating, rater, datetime.now(UTC), SOURCE, key))  # fmt: skip
        row = cur.fetchone()
        if row is None:  # sent before: the first one stands
            cur.execute("SELECT rating_id FROM human_rating WHERE client_key = %s", (key,))
            row = cur.fetchone()
        return row[0]


def undo_last(conn: psycopg2.extensions.connection, rater: str) -> str | None:
    """Delete the rater's newest rating made in the tool; returns its image (to show again) or None."""
    with conn.cursor() as cur:
        cur.execute("""DELETE FROM human_rating WHERE rating_id = (SELECT rating_id FROM human_rating
                       WHERE rater = %s AND source = %s ORDER BY rating_id DESC LIMIT 1) RETURNING sha256""",
                    (rater, SOURCE))  # fmt: skip
        row = cur.fetchone()
    return row[0] if row else None
