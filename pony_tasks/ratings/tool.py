"""The rating tool's logic (used by the Airflow UI plugin, usable without it): which image to show next, storing
a rating with the rater's name, undoing the rater's last rating.

Next-image modes: ``stratified`` — the rating set in its stored round-robin order (every stratum early);
``uncertain`` — images of the set whose active-model score is closest to the middle band (the model is least sure);
``disagree`` — images whose aesthetic percentile differs most from their normalised booru percentile. Images the
rater already rated, and those the client skipped this session, are never offered again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg2.extensions

MODES = ("stratified", "uncertain", "disagree")
SOURCE = "airflow-ui"


@dataclass(frozen=True)
class NextImage:
    sha256: str | None
    position: int | None
    rated_by_rater: int
    set_size: int
    site: str | None = None
    tags: list[str] | None = None


def next_image(
    conn: psycopg2.extensions.connection, set_id: int, rater: str, mode: str = "stratified",
    exclude: list[str] | None = None,
) -> NextImage:  # fmt: skip
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    order = {
        "stratified": "r.position",
        "uncertain": "abs(coalesce(a.percentile, 0.5) - 0.5), r.position",
        "disagree": "abs(coalesce(a.percentile, 0.5) - coalesce(n.value, 0.5)) DESC, r.position",
    }[mode]
    with conn.cursor() as cur:
        cur.execute("SELECT size FROM rating_set WHERE set_id = %s", (set_id,))
        row = cur.fetchone()
        if row is None:
            raise LookupError(f"rating set {set_id} does not exist (see `pony ratings sample`)")
        size = row[0]
        cur.execute("""SELECT count(DISTINCT h.sha256) FROM human_rating h JOIN rating_set_item r USING (sha256)
                       WHERE r.set_id = %s AND h.rater = %s""", (set_id, rater))  # fmt: skip
        done = cur.fetchone()[0]
        cur.execute(
            f"""SELECT r.sha256, r.position, p.site, p.tags
                FROM rating_set_item r
                JOIN booru_post p ON p.site = r.site AND p.post_id = r.post_id
                LEFT JOIN aesthetic_score a ON a.sha256 = r.sha256
                     AND a.version_id = (SELECT version_id FROM aesthetic_model WHERE status = 'active')
                LEFT JOIN LATERAL (SELECT s.normalized_score AS value FROM normalized_score s WHERE s.site = r.site
                                   AND s.post_id = r.post_id ORDER BY s.run_id DESC LIMIT 1) n ON true
                WHERE r.set_id = %s AND NOT (r.sha256 = ANY(%s))
                  AND NOT EXISTS (SELECT 1 FROM human_rating h WHERE h.sha256 = r.sha256 AND h.rater = %s)
                ORDER BY {order} LIMIT 1""",
            (set_id, list(exclude or []), rater),
        )
        row = cur.fetchone()
    if row is None:
        return NextImage(None, None, done, size)
    return NextImage(row[0], row[1], done, size, row[2], list(row[3]))


def record_rating(conn: psycopg2.extensions.connection, sha256: str, rating: int, rater: str) -> int:
    if not isinstance(rating, int) or not 1 <= rating <= 5:
        raise ValueError(f"a rating is an integer from 1 to 5, got {rating!r}")
    if not rater:
        raise ValueError("a rating needs a rater")
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM image WHERE sha256 = %s", (sha256,))
        if cur.fetchone() is None:
            raise LookupError(f"no stored image {sha256}")
        cur.execute("""INSERT INTO human_rating (sha256, rating, rater, rated_at, source) VALUES (%s, %s, %s, %s, %s)
                       RETURNING rating_id""", (sha256, rating, rater, datetime.now(UTC), SOURCE))  # fmt: skip
        return cur.fetchone()[0]


def undo_last(conn: psycopg2.extensions.connection, rater: str) -> str | None:
    """Delete the rater's newest rating made in the tool; returns its image (to show again) or None."""
    with conn.cursor() as cur:
        cur.execute("""DELETE FROM human_rating WHERE rating_id = (SELECT rating_id FROM human_rating
                       WHERE rater = %s AND source = %s ORDER BY rating_id DESC LIMIT 1) RETURNING sha256""",
                    (rater, SOURCE))  # fmt: skip
        row = cur.fetchone()
    return row[0] if row else None
