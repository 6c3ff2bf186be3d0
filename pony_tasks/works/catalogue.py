"""The images works are made of, numbered 0…n-1 in sha256 order (the temporary table ``works_image``), and what
candidate search and judging need of them — compact numpy arrays of a few bytes per image for the search, full
facts only for the images of one batch of pairs. Nothing here holds every image's facts at once: at 28M images
that alone would be tens of GB."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import psycopg2.extensions

from pony_tasks.images.validate import Signatures
from pony_tasks.works.decide import ImageFacts
from pony_tasks.works.synonyms import common_spelling

FETCH_ROWS = 20_000  # rows per round trip of the server-side cursors


def number_images(conn: psycopg2.extensions.connection, *, artists: bool = True) -> int:
    """Create ``works_image`` (n, sha256, heap: the image row's place in its table, what writes that check
    foreign keys into ``image`` are ordered by) for every image with signatures (``pony images hash``; images
    without them are left out) and ``works_artists`` (sha256, tags): the artist tags each image's posts credit —
    a post without tag groups (Gelbooru's API gives no tag types) credits the tags of its own that other sites'
    posts file as artists (Gelbooru mirrors Danbooru's tag names).
    Both dropped at commit (``artists`` False: only ``works_image``); returns the number of images."""
    with conn.cursor() as cur:
        cur.execute("""CREATE TEMPORARY TABLE works_image ON COMMIT DROP AS
                       SELECT (row_number() OVER (ORDER BY sha256) - 1)::int AS n, sha256, ctid AS heap FROM image
                       WHERE phash IS NOT NULL AND inner_detail IS NOT NULL""")
        count = cur.rowcount
        cur.execute("CREATE UNIQUE INDEX ON works_image (n) INCLUDE (sha256)")
        cur.execute("CREATE UNIQUE INDEX ON works_image (sha256) INCLUDE (n)")
        cur.execute("ANALYZE works_image")
        if not artists:
            return count
        # Set-based (every step a scan, a hash or a sort, linear in posts and tags): the artists each image's posts
        # credit, aggregated once per image — no subquery per post.
        cur.execute("""CREATE TEMPORARY TABLE works_artists ON COMMIT DROP AS
                       WITH known_artist AS MATERIALIZED (
                           SELECT DISTINCT lower(replace(regexp_replace(a.tag, '^artist:', ''), ' ', '_')) AS name
                           FROM booru_post p, jsonb_array_elements_text(p.tag_groups -> 'artist') AS a(tag)
                           WHERE jsonb_typeof(p.tag_groups -> 'artist') = 'array'),
                       credits AS (
                           SELECT b.sha256, g.tag
                           FROM booru_post_image b JOIN booru_post p ON p.site = b.site AND p.post_id = b.post_id,
                                jsonb_array_elements_text(p.tag_groups -> 'artist') AS g(tag)
                           WHERE jsonb_typeof(p.tag_groups -> 'artist') = 'array'
                           UNION ALL
                           SELECT b.sha256, t.tag
                           FROM booru_post_image b JOIN booru_post p ON p.site = b.site AND p.post_id = b.post_id,
                                unnest(p.tags) AS t(tag)
                           WHERE p.tag_groups = '{}'::jsonb AND lower(t.tag) IN (SELECT name FROM known_artist))
                       SELECT sha256, array_agg(DISTINCT tag) AS tags FROM credits GROUP BY sha256""")  # fmt: skip
        cur.execute("CREATE UNIQUE INDEX ON works_artists (sha256)")
        cur.execute("ANALYZE works_artists")
    return count


def unlinked(conn: psycopg2.extensions.connection, count: int) -> np.ndarray:
    """A bool per image: not in a work yet (what an incremental run matches against everything)."""
    new = np.zeros(count, dtype=bool)
    with conn.cursor(name="works_unlinked") as cur:
        cur.itersize = FETCH_ROWS
        cur.execute("""SELECT w.n FROM works_image w
                       WHERE NOT EXISTS (SELECT 1 FROM work_image i WHERE i.sha256 = w.sha256)""")
        while rows := cur.fetchmany(FETCH_ROWS):
            new[np.fromiter((r[0] for r in rows), np.int64, len(rows))] = True
    return new


@dataclass
class SearchSignals:
    """Every image's pHash views (``codes``, uint64, several per image, ``owners`` the image numbers) and inner
    colour thumbnail (``thumbs``: uint8, 48 per image): 8 bytes a view and 48 an image."""

    codes: np.ndarray
    owners: np.ndarray
    thumbs: np.ndarray


def search_signals(conn: psycopg2.extensions.connection, count: int) -> SearchSignals:
    """Read the pHash views (the inside only when it differs from the whole picture, as ``Signatures.views``) and
    inner thumbnails of every numbered image, a cursor page at a time into preallocated arrays."""
    thumbs = np.zeros((count, 48), dtype=np.uint8)
    code_parts: list[np.ndarray] = []
    owner_parts: list[np.ndarray] = []
    with conn.cursor(name="works_signals") as cur:
        cur.itersize = FETCH_ROWS
        cur.execute("""SELECT w.n, i.phash,
                              CASE WHEN (i.inner_phash, i.inner_colour_thumb, i.inner_detail)
                                        IS DISTINCT FROM (i.phash, i.colour_thumb, i.detail)
                                   THEN i.inner_phash END,
                              coalesce(i.crop_phash, '{}'), i.inner_colour_thumb
                       FROM works_image w JOIN image i ON i.sha256 = w.sha256""")
        while rows := cur.fetchmany(FETCH_ROWS):
            codes, owners = [], []
            for n, phash, inner, crops, thumb in rows:
                thumbs[n] = np.frombuffer(thumb, dtype=np.uint8)
                for value in (phash, inner, *crops):
                    if value is not None:
                        codes.append(value & 0xFFFFFFFFFFFFFFFF)
                        owners.append(n)
            code_parts.append(np.array(codes, dtype=np.uint64))
            owner_parts.append(np.array(owners, dtype=np.int32))
    empty_codes, empty_owners = np.zeros(0, np.uint64), np.zeros(0, np.int32)
    return SearchSignals(np.concatenate(code_parts) if code_parts else empty_codes,
                         np.concatenate(owner_parts) if owner_parts else empty_owners, thumbs)  # fmt: skip


FACT_COLUMNS = """w.n, i.sha256, i.width, i.height, i.format, i.byte_size, i.phash, i.colour_thumb, i.detail,
                  i.inner_phash, i.inner_colour_thumb, i.inner_detail, coalesce(i.crop_phash, '{}'),
                  coalesce(i.crop_colour_thumb, '{}'), coalesce(i.crop_detail, '{}'), coalesce(a.tags, '{}')"""
# joined after "works_image w"
FACT_JOINS = "JOIN image i ON i.sha256 = w.sha256 LEFT JOIN works_artists a ON a.sha256 = w.sha256"


def image_facts(row: tuple) -> tuple[int, ImageFacts]:
    """(n, facts) of one row of FACT_COLUMNS."""
    (n, sha, width, height, fmt, size, phash, thumb, detail, inner_phash, inner_thumb, inner_detail, crop_phash,
     crop_thumb, crop_detail, artists) = row  # fmt: skip
    signatures = Signatures(phash, bytes(thumb), bytes(detail), inner_phash, bytes(inner_thumb), bytes(inner_detail),
                            tuple(crop_phash), tuple(map(bytes, crop_thumb)),
                            tuple(map(bytes, crop_detail)))  # fmt: skip
    return n, ImageFacts(sha, width, height, fmt, size, signatures,
                         frozenset(common_spelling(t.removeprefix("artist:")) for t in artists))  # fmt: skip


# For a batch of images: each image's credits found through works_artists' index. A join let the planner scan and
# hash every image's credits for every batch (1M images: 115 ms a batch; the judging's batches grow with the images).
_BATCH_FACT_COLUMNS = FACT_COLUMNS.replace(
    "coalesce(a.tags, '{}')", "coalesce((SELECT a.tags FROM works_artists a WHERE a.sha256 = w.sha256), '{}')")


def facts_of(conn: psycopg2.extensions.connection, numbers: Iterable[int]) -> dict[int, ImageFacts]:
    """The full facts of some images (one batch of pairs), by number."""
    with conn.cursor() as cur:
        cur.execute(f"""SELECT {_BATCH_FACT_COLUMNS} FROM works_image w JOIN image i ON i.sha256 = w.sha256
                        WHERE w.n = ANY(%s::int[])""", (list(numbers),))  # fmt: skip
        return dict(image_facts(row) for row in cur.fetchall())
