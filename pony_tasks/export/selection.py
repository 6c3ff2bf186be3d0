"""What an export holds: one sample per work from the active caption set, with everything a loader may want."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg2.extensions

from pony_tasks.captions.lines import Line, draw_lines, split_text
from pony_tasks.captions.sets import active_set

KEEP_PROBABILITY = 0.5  # of each score_K_up tag per line: what our own trainer uses (finetune config)


@dataclass(frozen=True)
class CaptionSetInfo:
    set_id: int
    scheme: str
    aesthetic_version_id: int
    parameters: dict
    token_limit: int | None


@dataclass(frozen=True)
class ExportSample:
    sha256: str
    text: str  # the stored caption: fixed part ||| shuffleable part (every score_K_up tag, the stored content)
    band: int
    band_tag: str
    up_tags: tuple[str, ...]
    independent: bool
    storage_key: str
    format: str  # Pillow's name of the stored file's format
    width: int
    height: int
    rating: str  # the merged rating the caption was written from: the strictest of the work's live posts
    aesthetic_score: float
    percentile: float
    posts: tuple[tuple[str, int], ...]  # (site, post_id) of every live post of the work, by site, post id
    work: str  # the work key (members.work_key): what fine-tune gates count
    content: tuple[str, ...] = ()  # the stored content in keep order
    up_room: int | None = None  # score_K_up tags a line can carry (captions.lines); None: any draw fits

    @property
    def extension(self) -> str:
        return self.storage_key.rsplit(".", 1)[-1]

    def lines(self, count: int, token_limit: int | None, keep_probability: float = KEEP_PROBABILITY) -> list[Line]:
        """The caption's training lines (captions.lines.draw_lines, seeded by the sha256): ``count`` draws of its
        independent ``score_K_up`` tags (V7), each with the content that fits beside them; one line otherwise."""
        fixed, _ = split_text(self.text)
        ups = self.up_tags if self.independent else ()
        return draw_lines(fixed, ups, self.content, count, self.sha256, limit=token_limit, room=self.up_room,
                          keep_probability=keep_probability)  # fmt: skip

    def plain_captions(self, lines: list[Line]) -> tuple[str, list[str]]:
        """(the caption, every line) of ``lines`` (:meth:`lines`) for loaders that do not shuffle: each line's
        flexible part shuffled (seeded), no separator; the caption is one of them, drawn with the same seed — an
        export written twice is the same."""
        rng = random.Random(f"{self.sha256}:plain")
        plain = [line.plain(rng) for line in lines]
        return rng.choice(plain), plain

    def metadata(self, caption_set: CaptionSetInfo, captions: list[str] | None = None) -> dict:
        """The per-sample JSON of webdataset and Parquet exports (``captions``: every plain line)."""
        site, post_id = self.posts[0]
        return {"sha256": self.sha256, "work": self.work, "captions": captions or [], "width": self.width,
                "height": self.height, "format": self.format, "rating": self.rating, "band": self.band, "site": site,
                "post_id": post_id,
                "aesthetic_score": self.aesthetic_score, "percentile": self.percentile,
                "posts": [{"site": s, "post_id": p} for s, p in self.posts], "caption_set": caption_set.set_id,
                "scheme": caption_set.scheme, "aesthetic_version": caption_set.aesthetic_version_id}  # fmt: skip


# One sample per work: an image whose work's canonical image is captioned in this set is left out (the canonical
# one is exported instead). Filters and metadata use what the caption was written from (sets.SOURCE_QUERY): the
# work's rating is the caption's merged rating (sets made before migration 0022, which lack it: the strictest of the
# work's live posts), its posts are every live post of every image of the work.
SELECTION_QUERY = """
    WITH chosen AS (
        SELECT c.* FROM caption c
        WHERE c.set_id = %(set)s AND (%(band)s::int IS NULL OR c.band >= %(band)s)
          AND NOT EXISTS (SELECT 1 FROM work_image w JOIN work k ON k.work_id = w.work_id
                          JOIN caption kc ON kc.set_id = c.set_id AND kc.sha256 = k.canonical_sha256
                          WHERE w.sha256 = c.sha256 AND k.canonical_sha256 <> c.sha256)),
    member AS (  -- every image of the chosen image's work (itself when no work holds it)
        SELECT ch.sha256, coalesce(mw.sha256, ch.sha256) AS member_sha256, wi.work_id
        FROM chosen ch LEFT JOIN work_image wi ON wi.sha256 = ch.sha256
        LEFT JOIN work_image mw ON mw.work_id = wi.work_id)
    SELECT c.sha256, c.text, c.band, c.band_tag, c.up_tags, c.independent, i.storage_key, i.format, i.width, i.height,
           coalesce(c.rating, (ARRAY['general','sensitive','questionable','explicit'])[max(array_position(
               ARRAY['general','sensitive','questionable','explicit'], p.rating))]) AS rating,
           s.score, s.percentile, array_agg(p.site ORDER BY p.site, p.post_id) AS sites,
           array_agg(p.post_id ORDER BY p.site, p.post_id) AS post_ids,
           coalesce('w' || min(m.work_id), 'i' || c.sha256) AS work, c.content, c.up_room
    FROM chosen c
    JOIN image i ON i.sha256 = c.sha256
    JOIN aesthetic_score s ON s.sha256 = c.sha256 AND s.version_id = %(version)s
    JOIN member m ON m.sha256 = c.sha256
    JOIN booru_post_image bi ON bi.sha256 = m.member_sha256
    JOIN booru_post p ON p.site = bi.site AND p.post_id = bi.post_id
    WHERE NOT p.deleted
    GROUP BY c.sha256, c.text, c.band, c.band_tag, c.up_tags, c.independent, i.storage_key, i.format, i.width,
             i.height, s.score, s.percentile, c.rating, c.content, c.up_room
    HAVING (%(sites)s::text[] IS NULL OR bool_or(p.site = ANY(%(sites)s)))
       AND (%(ratings)s::text[] IS NULL OR coalesce(c.rating, (ARRAY['general','sensitive','questionable','explicit'])[
               max(array_position(ARRAY['general','sensitive','questionable','explicit'], p.rating))])
               = ANY(%(ratings)s))
    ORDER BY c.sha256"""


def active_set_info(conn: psycopg2.extensions.connection) -> CaptionSetInfo:
    """The active caption set (LookupError, saying what to run, when there is none)."""
    set_id = active_set(conn)
    if set_id is None:
        raise LookupError("no active caption set: run `pony captions regenerate` first")
    with conn.cursor() as cur:
        cur.execute("SELECT scheme, aesthetic_version_id, parameters, token_limit FROM caption_set WHERE set_id = %s",
                    (set_id,))  # fmt: skip
        return CaptionSetInfo(set_id, *cur.fetchone())


def iter_samples(
    conn: psycopg2.extensions.connection, info: CaptionSetInfo, min_band: int | None, ratings: list[str] | None,
    sites: list[str] | None,
) -> Iterator[ExportSample]:  # fmt: skip
    """The samples of caption set ``info`` for the selection, by sha256, streamed from a server-side cursor (bounded
    memory whatever the set's size): ``ratings`` — the caption's merged rating (the work's strictest) is one of
    them; ``sites`` — one of the work's live posts is on one of them."""
    with conn.cursor(name="export_samples") as cur:
        cur.itersize = 10_000
        cur.execute(SELECTION_QUERY, {"set": info.set_id, "version": info.aesthetic_version_id, "band": min_band,
                                      "ratings": ratings, "sites": sites})  # fmt: skip
        for (sha, text, band, band_tag, ups, independent, key, fmt, width, height, rating, score, percentile,
             site_list, post_ids, work, content, up_room) in cur:  # fmt: skip
            yield ExportSample(sha, text, band, band_tag, tuple(ups), independent, key, fmt, width, height, rating,
                               score, percentile, tuple(zip(site_list, post_ids, strict=True)), work, tuple(content),
                               up_room)  # fmt: skip


def chosen_extensions(conn: psycopg2.extensions.connection, info: CaptionSetInfo, min_band: int | None) -> list[str]:
    """The file extensions of the images of caption set ``info``'s captions in bands ≥ ``min_band``: a superset of
    any selection's (no work, post, site or rating filter), found without the selection's joins and grouping."""
    with conn.cursor() as cur:
        cur.execute("""SELECT DISTINCT regexp_replace(i.storage_key, '^.*[.]', '') FROM caption c
                       JOIN image i ON i.sha256 = c.sha256
                       WHERE c.set_id = %s AND (%s::int IS NULL OR c.band >= %s) ORDER BY 1""",
                    (info.set_id, min_band, min_band))  # fmt: skip
        return [extension for (extension,) in cur.fetchall()]


def selected_works(conn: psycopg2.extensions.connection, min_band: int | None) -> Iterator[str]:
    """The work of every sample an export of the active caption set (bands ≥ ``min_band``) would hold, streamed —
    what the fine-tune gates count before anything is exported."""
    if active_set(conn) is None:
        return
    for sample in iter_samples(conn, active_set_info(conn), min_band, None, None):
        yield sample.work
