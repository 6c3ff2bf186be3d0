"""Caption sets: regenerate every caption for an aesthetic version and scheme, switch atomically, roll back.

``regenerate`` builds a complete new set (bulk COPY) without touching the active one, then ``switch_to`` flips the
single row of ``active_caption_set`` in one transaction. Readers of the ``active_caption`` view therefore see the
old set or the new one, never a mix. Old sets are kept; ``rollback`` switches back to the previous one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import psycopg2.extensions

from pony_tasks.aesthetic.registry import get_version
from pony_tasks.captions.quality import DEFAULT_THRESHOLDS, band_for, quality_tags
from pony_tasks.captions.render import build_caption
from pony_tasks.db.bulk import copy_rows

CAPTION_COLUMNS = ("set_id", "sha256", "band", "band_tag", "up_tags", "independent", "source_tag", "rating_tag",
                   "content", "text")  # fmt: skip


@dataclass(frozen=True)
class RegenerateResult:
    set_id: int
    aesthetic_version_id: int
    scheme: str
    captions: int


def regenerate(
    conn: psycopg2.extensions.connection, *, scheme: str = "v7", aesthetic_version_id: int | None = None,
    floor: int = 1, include_artist: bool = True, activate: bool = True,
) -> RegenerateResult:  # fmt: skip
    """Captions for every image scored by the aesthetic version (default: the active one)."""
    version = get_version(conn, aesthetic_version_id)
    tags_by_band = {band: quality_tags(scheme, band, floor) for band in range(1, 10)}
    parameters = {"floor": floor, "thresholds": list(DEFAULT_THRESHOLDS), "include_artist": include_artist}
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO caption_set (aesthetic_version_id, scheme, parameters) VALUES (%s, %s, %s) RETURNING set_id",
            (version.version_id, scheme, json.dumps(parameters)),
        )
        set_id = cur.fetchone()[0]
        cur.execute(
            """SELECT DISTINCT ON (s.sha256) s.sha256, s.percentile, p.site, p.rating, p.tags, p.tag_groups
               FROM aesthetic_score s
               JOIN booru_post_image i ON i.sha256 = s.sha256
               JOIN booru_post p ON p.site = i.site AND p.post_id = i.post_id
               WHERE s.version_id = %s AND p.rating IS NOT NULL
               ORDER BY s.sha256, p.site, p.post_id""",
            (version.version_id,),
        )
        rows = []
        for sha, percentile, site, rating, tags, groups in cur.fetchall():
            band = band_for(percentile, floor=floor)
            caption = build_caption(tags_by_band[band], site, rating, groups, tags, include_artist=include_artist)
            quality = caption.quality
            rows.append((set_id, sha, band, quality.band_tag, list(quality.up_tags), quality.independent,
                         caption.source, caption.rating, list(caption.content), caption.render()))  # fmt: skip
        copy_rows(cur, "caption", CAPTION_COLUMNS, rows)
        cur.execute("UPDATE caption_set SET captions = %s WHERE set_id = %s", (len(rows), set_id))
    conn.commit()
    if activate:
        switch_to(conn, set_id, f"regenerated for aesthetic version {version.version_id}, scheme {scheme}")
    return RegenerateResult(set_id, version.version_id, scheme, len(rows))


def active_set(conn: psycopg2.extensions.connection) -> int | None:
    with conn.cursor() as cur:
        cur.execute("SELECT set_id FROM active_caption_set")
        row = cur.fetchone()
    return row[0] if row else None


def switch_to(conn: psycopg2.extensions.connection, set_id: int, reason: str) -> None:
    """Make ``set_id`` the active set: one row changes, in one transaction."""
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM caption_set WHERE set_id = %s", (set_id,))
        if cur.fetchone() is None:
            raise LookupError(f"caption set {set_id} does not exist (see `pony captions list`)")
        cur.execute("SELECT set_id FROM active_caption_set FOR UPDATE")
        previous = cur.fetchone()
        cur.execute(
            """INSERT INTO active_caption_set (singleton, set_id) VALUES (true, %s)
               ON CONFLICT (singleton) DO UPDATE SET set_id = EXCLUDED.set_id, switched_at = now()""",
            (set_id,),
        )
        cur.execute("INSERT INTO caption_set_switch (from_set, to_set, reason) VALUES (%s, %s, %s)",
                    (previous[0] if previous else None, set_id, reason))  # fmt: skip
    conn.commit()


def rollback(conn: psycopg2.extensions.connection, set_id: int | None = None) -> int:
    """Restore ``set_id``, or the set that was active before the current one; returns the set now active."""
    if set_id is None:
        with conn.cursor() as cur:
            cur.execute("SELECT from_set FROM caption_set_switch ORDER BY switch_id DESC LIMIT 1")
            row = cur.fetchone()
        if row is None or row[0] is None:
            raise LookupError("no earlier caption set to roll back to")
        set_id = row[0]
    switch_to(conn, set_id, "rollback")
    return set_id
