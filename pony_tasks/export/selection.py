"""What an export holds: one sample per work from the active caption set, with everything a loader may want."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg2.extensions

from pony_tasks.captions.sets import active_set


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
    text: str  # the stored caption: fixed part ||| shuffleable part
    band: int
    band_tag: str
    up_tags: tuple[str, ...]
    independent: bool
    storage_key: str
    format: str  # Pillow's name of the stored file's format
    width: int
    height: int
    rating: str  # the strictest rating of the work's live posts (the caption's rating tag says the same)
    aesthetic_score: float
    percentile: float
    posts: tuple[tuple[str, int], ...]  # (site, post_id) of every live post showing this image, by site, post id
    work: str  # the work key (members.work_key): what fine-tune gates count

    @property
    def extension(self) -> str:
        return self.storage_key.rsplit(".", 1)[-1]

    def metadata(self, caption_set: CaptionSetInfo) -> dict:
        """The per-sample JSON of webdataset and Parquet exports."""
        site, post_id = self.posts[0]
        return {"sha256": self.sha256, "work": self.work, "width": self.width, "height": self.height,
                "format": self.format, "rating": self.rating, "band": self.band, "site": site, "post_id": post_id,
                "aesthetic_score": self.aesthetic_score, "percentile": self.percentile,
                "posts": [{"site": s, "post_id": p} for s, p in self.posts], "caption_set": caption_set.set_id,
                "scheme": caption_set.scheme, "aesthetic_version": caption_set.aesthetic_version_id}  # fmt: skip


# One sample per work: an image whose work's canonical image is captioned in this set is left out (the canonical
# one is exported instead). Posts the site deleted are left out; a work's rating is the strictest of its posts.
SELECTION_QUERY = """
    SELECT c.sha256, c.text, c.band, c.band_tag, c.up_tags, c.independent, i.storage_key, i.format, i.width, i.height,
           (ARRAY['general','sensitive','questionable','explicit'])[max(array_position(
               ARRAY['general','sensitive','questionable','explicit'], p.rating))] AS rating,
           s.score, s.percentile, array_agg(p.site ORDER BY p.site, p.post_id) AS sites,
           array_agg(p.post_id ORDER BY p.site, p.post_id) AS post_ids,
           coalesce('w' || min(wi.work_id), 'i' || c.sha256) AS work
    FROM caption c
    JOIN image i ON i.sha256 = c.sha256
    JOIN aesthetic_score s ON s.sha256 = c.sha256 AND s.version_id = %(version)s
    JOIN booru_post_image bi ON bi.sha256 = c.sha256
    JOIN booru_post p ON p.site = bi.site AND p.post_id = bi.post_id
    LEFT JOIN work_image wi ON wi.sha256 = c.sha256
    WHERE c.set_id = %(set)s AND NOT p.deleted
      AND NOT EXISTS (SELECT 1 FROM work_image w JOIN work k ON k.work_id = w.work_id
                      JOIN caption kc ON kc.set_id = c.set_id AND kc.sha256 = k.canonical_sha256
                      WHERE w.sha256 = c.sha256 AND k.canonical_sha256 <> c.sha256)
      AND (%(band)s::int IS NULL OR c.band >= %(band)s)
    GROUP BY c.sha256, c.text, c.band, c.band_tag, c.up_tags, c.independent, i.storage_key, i.format, i.width,
             i.height, s.score, s.percentile
    HAVING (%(sites)s::text[] IS NULL OR bool_or(p.site = ANY(%(sites)s)))
       AND (%(ratings)s::text[] IS NULL OR (ARRAY['general','sensitive','questionable','explicit'])[max(
               array_position(ARRAY['general','sensitive','questionable','explicit'], p.rating))] = ANY(%(ratings)s))
    ORDER BY c.sha256"""


def select_samples(
    conn: psycopg2.extensions.connection, min_band: int | None, ratings: list[str] | None, sites: list[str] | None
) -> tuple[CaptionSetInfo, list[ExportSample]]:
    """The active caption set and its samples for the selection, by sha256: ``ratings`` — the work's strictest
    rating is one of them; ``sites`` — one of its live posts is on one of them."""
    set_id = active_set(conn)
    if set_id is None:
        raise LookupError("no active caption set: run `pony captions regenerate` first")
    with conn.cursor() as cur:
        cur.execute("SELECT scheme, aesthetic_version_id, parameters, token_limit FROM caption_set WHERE set_id = %s",
                    (set_id,))  # fmt: skip
        info = CaptionSetInfo(set_id, *cur.fetchone())
        cur.execute(SELECTION_QUERY, {"set": set_id, "version": info.aesthetic_version_id, "band": min_band,
                                      "ratings": ratings, "sites": sites})  # fmt: skip
        samples = [ExportSample(sha, text, band, band_tag, tuple(ups), independent, key, fmt, width, height, rating,
                                score, percentile, tuple(zip(site_list, post_ids, strict=True)), work)
                   for (sha, text, band, band_tag, ups, independent, key, fmt, width, height, rating, score,
                        percentile, site_list, post_ids, work) in cur.fetchall()]  # fmt: skip
    return info, samples
