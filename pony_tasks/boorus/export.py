"""``pony posts export``: the unified post records as JSON lines, sorted by (site, post_id)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, TextIO

import psycopg2.extensions

from pony_tasks.boorus.records import EXPORT_KEYS, iso_z

_QUERY = """
SELECT p.site, p.post_id, p.created_at, p.rating, p.site_rating, p.tags, p.score, p.up_votes, p.down_votes,
       p.favorites, p.wilson_score, p.file_url, p.file_url_derived, p.md5, p.sha512, p.width, p.height, p.file_ext,
       p.sources, p.deleted, s.observed_at
FROM booru_post p
LEFT JOIN LATERAL (
    SELECT max(observed_at) AS observed_at FROM booru_score_snapshot
    WHERE site = p.site AND post_id = p.post_id
) s ON true
WHERE %(site)s::text IS NULL OR p.site = %(site)s
ORDER BY p.site, p.post_id
"""


def iter_unified_records(conn: psycopg2.extensions.connection, site: str | None = None) -> Iterator[dict[str, Any]]:
    """Stream export records from the database (a server-side cursor: memory stays flat)."""
    with conn.cursor(name="pony_posts_export") as cur:
        cur.itersize = 5000
        cur.execute(_QUERY, {"site": site})
        for row in cur:
            record = dict(zip(EXPORT_KEYS, row, strict=True))
            record["created_at"] = iso_z(record["created_at"])
            record["observed_at"] = iso_z(record["observed_at"])
            record["tags"] = list(record["tags"])
            record["sources"] = list(record["sources"])
            yield record


def export_jsonl(conn: psycopg2.extensions.connection, out: TextIO, site: str | None = None) -> int:
    count = 0
    for record in iter_unified_records(conn, site):
        out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        count += 1
    return count
