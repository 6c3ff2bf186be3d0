"""Caption sets: regenerate every caption for an aesthetic version and scheme, switch atomically, roll back.

``regenerate`` builds a complete new set (bulk COPY) without touching the active one, then ``switch_to`` flips the
single row of ``active_caption_set`` in one transaction. Readers of the ``active_caption`` view therefore see the
old set or the new one, never a mix. Old sets are kept; ``rollback`` switches back to the previous one.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import psycopg2.extensions
import psycopg2.extras

from pony_tasks.aesthetic.registry import get_version
from pony_tasks.captions.columnar import ColumnarContentEncoder
from pony_tasks.captions.lines import up_tag_cost
from pony_tasks.captions.periods import DEFAULT_PERIODS, Periods, date_tags
from pony_tasks.captions.quality import DEFAULT_THRESHOLDS, QualityTags, quality_tags
from pony_tasks.captions.render import (
    RATING_TAGS,
    SOURCE_TAGS,
    caption_form,
    content_parts,
    content_rules_key,
    quality_cost,
    source_tag,
    use_site_sources,
    with_style,
)
from pony_tasks.captions.tokens import DEFAULT_TOKEN_LIMIT, check_limit, cumulative_costs, prioritised, tags_cost
from pony_tasks.config import get_settings
from pony_tasks.db.bulk import copy_text, raise_work_mem
from pony_tasks.db.connection import sibling_connection
from pony_tasks.progress import progress_bar
from pony_tasks.styles import active_version, style_tag

STYLE_MODES = ("off", "add", "replace_artist")
# Posts per chunk of the content fill. Three chunks are in flight (fetched, encoded by polars, copied) and polars'
# intermediate frames for one chunk take ~7 KB a post: measured on 1M posts (benchmarks/scale.py), 50,000 peaked at
# 2.6 GiB and 10,000 at 1.6 GiB for 5 % more time.
CONTENT_CHUNK_ROWS = 10_000


@dataclass(frozen=True)
class RegenerateResult:
    set_id: int
    aesthetic_version_id: int
    scheme: str
    captions: int
    contents_computed: int  # posts whose caption content was not cached yet
    unchanged: bool = False  # the inputs were those of an existing set (set_id): no new set was made


# One row per work (an image not linked into a work yet is a work of its own), on the image the export will use:
# the work's canonical image when the version scored it and a live post shows it, else the work's first such image.
# The caption content is the work's, merged over its live posts (posts the site deleted are left out): the site of
# its first post (by site, post_id: the source tag), the strictest rating, every tag of every post in first-seen
# order, one per spelling up to case ("Smile" and "smile": the first seen), and the tag groups merged the same way
# (captions' clean_tag then writes "blue_eyes" and "blue eyes" alike). A work with one live post keeps that post's
# fields exactly, so its cached content (the digest over site | rating | tags | tag_groups | year | rules) stays
# valid; only works seen on several posts are aggregated (found from the few images with several post rows, and
# from work_image, before the one pass over all posts). The year (date tags) is the earliest live post's, in UTC.
# The style cluster is the chosen image's in the style clustering used (NULL: none; then the digest is as before).
SOURCE_QUERY = """
    CREATE TEMPORARY TABLE caption_source ON COMMIT DROP AS
    WITH several_images AS MATERIALIZED (  -- images that no work holds, shown by several live posts
        SELECT i.sha256 FROM booru_post_image i JOIN booru_post p ON p.site = i.site AND p.post_id = i.post_id
        WHERE i.sha256 IN (SELECT sha256 FROM booru_post_image GROUP BY sha256 HAVING count(*) > 1)
          AND p.rating IS NOT NULL AND NOT p.deleted
          AND NOT EXISTS (SELECT 1 FROM work_image wi WHERE wi.sha256 = i.sha256)
        GROUP BY i.sha256 HAVING count(*) > 1),
    several_works AS MATERIALIZED (  -- works shown by several live posts
        SELECT wi.work_id FROM work_image wi JOIN booru_post_image i ON i.sha256 = wi.sha256
        JOIN booru_post p ON p.site = i.site AND p.post_id = i.post_id
        WHERE p.rating IS NOT NULL AND NOT p.deleted
        GROUP BY wi.work_id HAVING count(*) > 1),
    single AS (  -- a work of one live post (most): that post, when the version scored its image
        SELECT s.sha256, s.percentile, p.site, p.rating, p.tags, p.tag_groups, p.created_at
        FROM booru_post_image i
        JOIN booru_post p ON p.site = i.site AND p.post_id = i.post_id
        JOIN aesthetic_score s ON s.sha256 = i.sha256 AND s.version_id = %(version)s
        LEFT JOIN work_image wi ON wi.sha256 = i.sha256
        WHERE p.rating IS NOT NULL AND NOT p.deleted
          AND NOT EXISTS (SELECT 1 FROM several_images k WHERE k.sha256 = i.sha256)
          AND NOT EXISTS (SELECT 1 FROM several_works k WHERE k.work_id = wi.work_id)),
    several AS MATERIALIZED (  -- the live posts of those images and works (reached from them: never every post)
        SELECT ('i' || i.sha256) COLLATE "C" AS work_key, i.sha256, p.site, p.post_id, p.rating, p.tags,
               p.tag_groups, p.created_at, NULL::text AS canonical_sha256, s.percentile
        FROM several_images k
        JOIN booru_post_image i ON i.sha256 = k.sha256
        JOIN booru_post p ON p.site = i.site AND p.post_id = i.post_id
        LEFT JOIN aesthetic_score s ON s.sha256 = i.sha256 AND s.version_id = %(version)s
        WHERE p.rating IS NOT NULL AND NOT p.deleted
        UNION ALL
        SELECT ('w' || k.work_id) COLLATE "C", i.sha256, p.site, p.post_id, p.rating, p.tags, p.tag_groups,
               p.created_at, w.canonical_sha256, s.percentile
        FROM several_works k
        JOIN work w ON w.work_id = k.work_id
        JOIN work_image wi ON wi.work_id = k.work_id
        JOIN booru_post_image i ON i.sha256 = wi.sha256
        JOIN booru_post p ON p.site = i.site AND p.post_id = i.post_id
        LEFT JOIN aesthetic_score s ON s.sha256 = i.sha256 AND s.version_id = %(version)s
        WHERE p.rating IS NOT NULL AND NOT p.deleted),
    chosen AS (
        SELECT DISTINCT ON (l.work_key) l.work_key, l.sha256, l.percentile
        FROM several l WHERE l.percentile IS NOT NULL
        ORDER BY l.work_key, l.sha256 IS NOT DISTINCT FROM l.canonical_sha256 DESC, l.sha256),
    ranked AS (
        SELECT l.*, row_number() OVER (PARTITION BY l.work_key ORDER BY l.site, l.post_id) AS post_rank
        FROM several l JOIN chosen c USING (work_key)),
    merged_tags AS (
        SELECT work_key, array_agg(tag ORDER BY first_seen) AS tags
        FROM (SELECT r.work_key, (array_agg(t.tag ORDER BY r.post_rank, t.n))[1] AS tag,
                     min(r.post_rank * 100000 + t.n) AS first_seen
              FROM ranked r, unnest(r.tags) WITH ORDINALITY AS t(tag, n)
              GROUP BY r.work_key, lower(t.tag)) x
        GROUP BY 1),
    merged_groups AS (
        SELECT work_key, jsonb_object_agg(tag_group, members) AS tag_groups
        FROM (SELECT work_key, tag_group, jsonb_agg(tag ORDER BY first_seen) AS members
              FROM (SELECT r.work_key, g.key AS tag_group, (array_agg(t.tag ORDER BY r.post_rank, t.n))[1] AS tag,
                           min(r.post_rank * 100000 + t.n) AS first_seen
                    FROM ranked r, jsonb_each(r.tag_groups) g, jsonb_array_elements_text(g.value)
                         WITH ORDINALITY AS t(tag, n)
                    WHERE jsonb_typeof(g.value) = 'array'
                    GROUP BY r.work_key, g.key, lower(t.tag)) y
              GROUP BY 1, 2) x
        GROUP BY 1),
    merged_facts AS (  -- one pass over works of several posts: strictest rating, first date, first site
        SELECT work_key, (ARRAY['general','sensitive','questionable','explicit'])[max(array_position(
                   ARRAY['general','sensitive','questionable','explicit'], rating))] AS rating,
               min(created_at) AS created_at, min(site) AS site  -- post_rank 1: ordered by site first
        FROM ranked GROUP BY work_key),
    merged AS (
        SELECT c.sha256, c.percentile, f.site, f.rating,
               coalesce(t.tags, '{}') AS tags, coalesce(g.tag_groups, '{}'::jsonb) AS tag_groups, f.created_at
        FROM merged_facts f JOIN chosen c USING (work_key)
        LEFT JOIN merged_tags t USING (work_key) LEFT JOIN merged_groups g USING (work_key)),
    works AS (SELECT * FROM single UNION ALL SELECT * FROM merged)
    SELECT m.sha256, m.percentile, m.site, m.rating, m.tags, m.tag_groups,
           extract(year FROM m.created_at AT TIME ZONE 'UTC')::int AS year, sc.cluster_id AS style_cluster,
           md5(m.site || '|' || m.rating || '|' || m.tags::text || '|' || m.tag_groups::text || '|'
               || coalesce(extract(year FROM m.created_at AT TIME ZONE 'UTC')::int::text, '') || '|' || %(rules)s
               || coalesce('|style=' || sc.cluster_id, '')) AS digest
    FROM works m
    LEFT JOIN style_cluster_member sc ON sc.version_id = %(style_version)s::int AND sc.sha256 = m.sha256"""

# One JSON object per row (parsed by polars in the columnar encoder, by json.loads in the row encoder), beside its
# digest: the fill skips a digest already seen (two works of identical content; only the digests
# REPEATED_DIGESTS_QUERY finds are remembered) instead of the server sorting every row for DISTINCT ON. Planned with
# no nested loop (_fill_missing_content): the anti-join must read caption_content once, before the fill grows it — a
# nested loop over its scan, the plan when it was analysed empty, would rescan every row copied so far for each post.
MISSING_CONTENT_QUERY = """
    SELECT cs.digest, json_build_object('d', cs.digest, 's', cs.site, 'r', cs.rating, 't', cs.tags, 'g', cs.tag_groups,
                                        'y', cs.year, 'c', cs.style_cluster)::text
    FROM caption_source cs
    WHERE NOT EXISTS (SELECT 1 FROM caption_content c WHERE c.digest = cs.digest)"""

# Digests that several rows of caption_source share (works of identical content): a hash aggregate over 33-byte keys.
REPEATED_DIGESTS_QUERY = """
    SELECT digest FROM caption_source GROUP BY digest HAVING count(*) > 1"""

# Every key the tag groups of caption_source have: the columnar encoder reads the JSON with this schema.
GROUP_KEYS_QUERY = """
    SELECT DISTINCT k FROM caption_source cs, jsonb_object_keys(cs.tag_groups) k
    WHERE jsonb_typeof(cs.tag_groups) = 'object' ORDER BY 1"""

# The caption text is rendered here exactly as render.render_text renders it, and its content cut to the token limit
# exactly as render.build_caption cuts it (a test compares every stored row with build_caption(...)): the content is
# cached in keep order with its running token cost, so the tags that fit beside the band's fixed part are a prefix,
# width_bucket() counts them, and the prefix joined with ', ' is the content's text. up_room is captions.lines.up_room:
# the score_K_up tags (each up_tokens) a line can carry beside the fixed part and the reserved content (the protected
# tags, and one more after a lone style cluster tag). rating is the merged rating the caption was written from.
INSERT_CAPTIONS = """
    INSERT INTO {partition} (set_id, sha256, band, band_tag, up_tags, independent, source_tag, rating_tag, content,
                             text, tokens, tags_dropped, date_tags, style_cluster, rating, up_room)
    SELECT %(set)s, f.sha256, f.band, f.band_tag, f.up_tags, f.independent, f.source_tag, f.rating_tag, f.kept_content,
           CASE WHEN f.fixed_quality <> '' THEN f.fixed_quality || ', ' ELSE '' END
               || f.source_tag || ', ' || f.rating_tag || CASE WHEN f.date_text <> '' THEN ', ' || f.date_text ELSE ''
               END || ' |||'
               || coalesce(' ' || nullif(concat_ws(', ', nullif(f.flexible_quality, ''),
                                                   nullif(f.kept_text, '')), ''), ''),
           f.quality_tokens + f.fixed_tokens + coalesce(f.cumulative_tokens[f.kept], 0), f.n - f.kept, f.date_tags,
           f.style_cluster, f.rating,
           CASE WHEN f.up_count > 0 THEN least(f.up_count, greatest(0, (%(limit)s - f.quality_tokens - f.fixed_tokens
               - coalesce(f.cumulative_tokens[least(f.kept, greatest(f.protected, CASE WHEN f.content[1]
                     LIKE 'style\\_cluster\\_%%' THEN 2 ELSE 1 END))], 0)) / f.up_tokens)) END
    FROM (SELECT j.*, array_to_string(j.kept_content, ', ') AS kept_text
          FROM (SELECT k.*, CASE WHEN k.kept = k.n THEN k.content ELSE k.content[1:k.kept] END AS kept_content
          FROM (SELECT cs.sha256, cs.style_cluster, cs.rating, b.band, b.band_tag, b.up_tags, b.independent,
                       b.fixed_quality, b.flexible_quality, b.quality_tokens, b.up_tokens, b.up_count, c.source_tag,
                       c.rating_tag, c.content, c.cumulative_tokens, c.fixed_tokens, c.date_tags, c.date_text,
                       c.protected, cardinality(c.content) AS n,
                       CASE WHEN cardinality(c.cumulative_tokens) = 0 THEN 0
                            ELSE width_bucket(%(limit)s - b.quality_tokens - c.fixed_tokens, c.cumulative_tokens)
                       END AS kept
                FROM caption_source cs
                JOIN caption_content c ON c.digest = cs.digest
                JOIN caption_band b
                  ON b.band = greatest(%(floor)s, 9 - %(edges)s + width_bucket(cs.percentile, %(ascending)s::float8[]))
               ) k
         ) j) f"""


def _rolled_back_on_error(function: Callable) -> Callable:
    """A failure rolls the connection's transaction back (the temporary tables, the advisory lock): the caller can
    use the connection again, e.g. to regenerate with a corrected limit."""

    @functools.wraps(function)
    def wrapper(conn: psycopg2.extensions.connection, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        try:
            return function(conn, *args, **kwargs)
        except BaseException:
            conn.rollback()
            raise

    return wrapper


@_rolled_back_on_error
def regenerate(
    conn: psycopg2.extensions.connection, *, scheme: str = "v7", aesthetic_version_id: int | None = None,
    floor: int = 1, include_artist: bool = True, activate: bool = True, chunk_rows: int = CONTENT_CHUNK_ROWS,
    token_limit: int = DEFAULT_TOKEN_LIMIT, refresh_frequencies: bool = False, periods: Periods = DEFAULT_PERIODS,
    encoder: str = "columnar", style_tags: str = "off", style_version: int | None = None,
    show_progress: bool | None = False, force: bool = False, site_sources: dict[str, str | None] | None = None,
) -> RegenerateResult:  # fmt: skip
    """Captions for every work scored by the aesthetic version (default: the active one), as a new set: one per
    work, from what all its posts say (see SOURCE_QUERY), each within ``token_limit`` CLIP tokens (captions.tokens:
    content tags dropped by priority; the set records how many).

    Set-based: content (source, rating, cleaned tags in keep order, their token costs) comes from
    ``caption_content``; only posts whose digest is not cached yet are computed (streamed in chunks of
    ``chunk_rows``; ``encoder``: ``columnar``, polars — captions.columnar — or ``rows``, the reference, a post at a
    time), then one INSERT … SELECT adds the quality tags per band, cuts the content to the band's budget and renders
    the text. The whole set is one transaction: a failure leaves no set. What stands on its own, committed on a
    connection of its own, stays: a new tag-frequency snapshot, and the computed content once the fill has finished
    (a cache entry valid for its digest; a failure during the fill leaves none of it).

    ``style_tags``: ``off``, ``add`` (each work's ``style_cluster_N`` beside its artist tags) or ``replace_artist``
    (instead of them) from ``style_version`` (default: the active style clustering; with none, no style tags and the
    artist tags stay).

    Inputs unchanged since an existing set (the same version, scheme, parameters, and every work's image, content
    and percentile: ``_inputs_digest``) make no new set: that set is returned (``unchanged``) and, with
    ``activate``, made active — unless ``force``."""
    if site_sources is None:  # each site's own source tag (its row in settings.sites)
        site_sources = {site: row.source for site, row in get_settings().sites.items()}
    sources_key = use_site_sources(site_sources)
    version = get_version(conn, aesthetic_version_id)
    if encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, not {encoder!r}")
    if style_tags not in STYLE_MODES:
        raise ValueError(f"style_tags must be one of {', '.join(STYLE_MODES)}, not {style_tags!r}")
    if style_tags != "off" and style_version is None:
        style_version = active_version(conn)
    if style_version is None:
        style_tags = "off"
    include_artist = include_artist and style_tags != "replace_artist"
    bands = {band: quality_tags(scheme, band, floor) for band in range(1, 10)}
    with conn.cursor() as cur:
        # one regeneration at a time, from before its set row to its commit: two fills never copy the same digest,
        # and no two wait on each other (the attach locks caption_set, which another's set row would hold). An
        # advisory lock: a table lock would also wait for autovacuum's, up to a second.
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (REGENERATION_LOCK,))
    with ThreadPoolExecutor(2, thread_name_prefix="caption-prepare") as helpers:
        # beside the server's caption_source pass: loading the tokenizer (imports torch: seconds) and, when due, a
        # new tag-frequency snapshot (on a second connection)
        costs = helpers.submit(_budget_costs, bands, floor)
        snapshot, frequencies_future = _start_tag_frequencies(conn, refresh_frequencies, helpers)
        parameters = {"floor": floor, "thresholds": list(DEFAULT_THRESHOLDS), "include_artist": include_artist,
                      "token_limit": token_limit, "tag_frequency_snapshot": snapshot,
                      "periods": [list(period) for period in periods], "style_tags": style_tags,
                      "style_version": style_version}  # fmt: skip
        set_id = _insert_set(conn, version.version_id, scheme, parameters)
        # what cached content depends on besides the post (the style cluster is in the digest)
        rules = content_rules_key(include_artist, frequency_snapshot=snapshot, periods=periods) + sources_key
        with conn.cursor() as cur:
            raise_work_mem(cur)
            cur.execute(SOURCE_QUERY, {"rules": rules, "version": version.version_id, "style_version": style_version})
        check_limit(token_limit, *costs.result())  # a limit too small fails here, before anything is written
        frequencies = frequencies_future()
    with conn.cursor() as cur:
        inputs = _inputs_digest(cur, version.version_id, scheme, parameters)
        cur.execute("SELECT set_id, captions FROM caption_set WHERE inputs_digest = %s ORDER BY set_id DESC LIMIT 1",
                    (inputs,))  # fmt: skip
        same = cur.fetchone()
    if same is not None and not force:  # nothing changed since that set: no new one (the set row, caption_source go)
        conn.rollback()
        if activate and active_set(conn) != same[0]:
            switch_to(conn, same[0], f"inputs unchanged since set {same[0]}: activated again")
        return RegenerateResult(same[0], version.version_id, scheme, same[1], 0, unchanged=True)
    with conn.cursor() as cur:
        cur.execute("ANALYZE caption_source")
        rows = ContentLineEncoder(include_artist=include_artist, frequencies=frequencies, periods=periods)
        columnar = None if encoder == "rows" else ColumnarContentEncoder(
            include_artist=include_artist, frequencies=frequencies, periods=periods, element=_csv_array_element)
        computed = _fill_missing_content(conn, rows, chunk_rows, show_progress, columnar)
        _create_band_table(cur, bands)
        # the set's own table, filled and then attached as caption's partition (migration 0020): the CHECK lets the
        # attach skip its scan; the primary key is built and the foreign key checked once, at the attach
        partition = f"caption_of_set_{int(set_id)}"
        cur.execute(f"""CREATE TABLE {partition} (LIKE caption INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
                            CHECK (set_id = {int(set_id)}))""")  # fmt: skip
        cur.execute(INSERT_CAPTIONS.format(partition=partition),
                    {"set": set_id, "floor": floor, "edges": len(DEFAULT_THRESHOLDS),
                     "ascending": sorted(DEFAULT_THRESHOLDS),
                     "limit": token_limit})  # fmt: skip
        written = cur.rowcount
        cur.execute(f"ALTER TABLE caption ATTACH PARTITION {partition} FOR VALUES IN ({int(set_id)})")
        cur.execute(
            """UPDATE caption_set SET captions = %(n)s, inputs_digest = %(inputs)s,
                   (captions_trimmed, tags_dropped, captions_thinnable) = (
                       SELECT count(*) FILTER (WHERE tags_dropped > 0), coalesce(sum(tags_dropped), 0),
                              count(*) FILTER (WHERE up_room < cardinality(up_tags))
                       FROM caption WHERE set_id = %(set)s)
               WHERE set_id = %(set)s""",
            {"n": written, "set": set_id, "inputs": inputs},
        )
    conn.commit()
    if activate:
        switch_to(conn, set_id, f"regenerated for aesthetic version {version.version_id}, scheme {scheme}")
    return RegenerateResult(set_id, version.version_id, scheme, written, computed)


def _inputs_digest(cur: psycopg2.extensions.cursor, version_id: int, scheme: str, parameters: dict) -> str:
    """What a set is made from: the version, scheme and parameters (the tag-frequency snapshot among them), and every
    work's image, content digest (its posts' site, rating, tags, groups, year, style cluster and the rules) and
    percentile — an order-independent sum of row hashes over caption_source (no sort: ~0.3 s for 1M rows)."""
    cur.execute("""SELECT count(*), coalesce(sum(hashtextextended(sha256 || '|' || digest || '|'
                                                                || coalesce(percentile::text, ''), 0)::numeric), 0)
                   FROM caption_source""")  # fmt: skip
    rows, total = cur.fetchone()
    text = f"{version_id}|{scheme}|{json.dumps(parameters, sort_keys=True)}|{rows}|{total}"
    return hashlib.md5(text.encode()).hexdigest()


def _budget_costs(bands: dict[int, QualityTags], floor: int) -> tuple[dict[int, int], int]:
    """check_limit's arguments: each band's quality-tag cost, the most the source and rating tags can cost."""
    return ({band: quality_cost(q) for band, q in bands.items() if band >= floor},
            max(tags_cost((source, rating)) for source in SOURCE_TAGS for rating in RATING_TAGS.values()))  # fmt: skip


def _insert_set(conn: psycopg2.extensions.connection, version_id: int, scheme: str, parameters: dict) -> int:
    """The set's row (committed with the set); returns its id."""
    with conn.cursor() as cur:
        cur.execute(
            """INSERT INTO caption_set (aesthetic_version_id, scheme, parameters, token_limit, style_version,
                                        style_mode)
               VALUES (%s, %s, %s, %s, %s, %s) RETURNING set_id""",
            (version_id, scheme, json.dumps(parameters), parameters["token_limit"], parameters["style_version"],
             parameters["style_tags"]),
        )
        return cur.fetchone()[0]


def tag_frequencies(conn: psycopg2.extensions.connection, *, refresh: bool = False) -> tuple[int, dict[str, int]]:
    """(snapshot id, {caption tag: live posts carrying it}) — the drop order's key (captions.tokens). A new snapshot
    is taken when there is none, when the live posts have doubled since the last, or when ``refresh``."""
    with ThreadPoolExecutor(1) as pool:
        snapshot, frequencies = _start_tag_frequencies(conn, refresh, pool)
        return snapshot, frequencies()


def _start_tag_frequencies(
    conn: psycopg2.extensions.connection, refresh: bool, pool: ThreadPoolExecutor
) -> tuple[int, Callable[[], dict[str, int]]]:
    """(snapshot id, a call returning its frequencies), as :func:`tag_frequencies` decides. A new snapshot's id is
    drawn at once; its counts are made in ``pool`` on a second connection, which commits them (a snapshot stands on
    its own, whatever becomes of the caption set that asked for it), while ``conn`` goes on."""
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM booru_post WHERE NOT deleted")
        live = cur.fetchone()[0]
        cur.execute("""SELECT snapshot_id, live_posts FROM caption_tag_frequency_snapshot
                       ORDER BY snapshot_id DESC LIMIT 1""")  # fmt: skip
        row = cur.fetchone()
        if not (refresh or row is None or live >= 2 * max(row[1], 1)):
            snapshot = row[0]

            def stored() -> dict[str, int]:
                with conn.cursor() as cur:
                    cur.execute("SELECT tag, posts FROM caption_tag_frequency WHERE snapshot_id = %s", (snapshot,))
                    return dict(cur.fetchall())

            return snapshot, stored
        cur.execute("SELECT nextval(pg_get_serial_sequence('caption_tag_frequency_snapshot', 'snapshot_id'))")
        snapshot = cur.fetchone()[0]
    return snapshot, pool.submit(_take_snapshot, conn, snapshot, live).result


def _take_snapshot(conn: psycopg2.extensions.connection, snapshot: int, live: int) -> dict[str, int]:
    with sibling_connection(conn) as sibling, sibling.cursor() as cur:
        cur.execute("SELECT t, count(*) FROM booru_post p, unnest(p.tags) t WHERE NOT p.deleted GROUP BY t")
        counts: dict[str, int] = {}
        for raw, posts in cur.fetchall():
            form = caption_form(raw)
            if form:
                counts[form] = counts.get(form, 0) + posts
        cur.execute("""INSERT INTO caption_tag_frequency_snapshot (snapshot_id, live_posts) OVERRIDING SYSTEM VALUE
                       VALUES (%s, %s)""", (snapshot, live))  # fmt: skip
        psycopg2.extras.execute_values(  # not COPY: a tag may be spelt \\N, COPY's NULL
            cur, "INSERT INTO caption_tag_frequency (snapshot_id, tag, posts) VALUES %s",
            [(snapshot, tag, posts) for tag, posts in counts.items()], page_size=10_000)  # fmt: skip
    return counts


def _create_band_table(cur: psycopg2.extensions.cursor, bands: dict[int, QualityTags]) -> None:
    """caption_band: per band the quality fields, the joined fixed/flexible quality text (from quality.py), the token
    cost of the quality tags every line carries (render.quality_cost) and what one of its independent ``score_K_up``
    tags costs, and how many it has (captions.lines)."""
    cur.execute(
        """CREATE TEMPORARY TABLE caption_band (band smallint PRIMARY KEY, band_tag text, up_tags text[],
               independent boolean, fixed_quality text, flexible_quality text, quality_tokens integer,
               up_tokens integer, up_count integer)
           ON COMMIT DROP"""
    )
    rows = [(band, q.band_tag, list(q.up_tags), q.independent, ", ".join(q.fixed_tokens()),
             ", ".join(q.flexible_tokens()), quality_cost(q), up_tag_cost(q.flexible_tokens()),
             len(q.flexible_tokens())) for band, q in bands.items()]  # fmt: skip
    psycopg2.extras.execute_values(cur, "INSERT INTO caption_band VALUES %s", rows)


REGENERATION_LOCK = 0x70_6F6E_7963  # pg_advisory_xact_lock key of a regeneration ("ponyc")
ENCODERS = ("columnar", "rows")


def _fill_missing_content(
    conn: psycopg2.extensions.connection, encoder: ContentLineEncoder, chunk_rows: int, show_progress: bool | None,
    columnar: ColumnarContentEncoder | None = None,
) -> int:
    """Compute caption content for digests not cached yet; returns how many were added. One regeneration runs at a
    time (REGENERATION_LOCK, held to the set's commit), so the rows are copied straight into ``caption_content``.

    A pipeline of three threads, each chunk passing through all three: this one fetches it, a second encodes it
    (``columnar``: polars, with its own threads; ``encoder``, the row encoder, takes a chunk polars cannot read, and
    all of them when ``columnar`` is None), a third copies it on a sibling connection — a second server process, so
    the server parses and indexes one chunk while it builds the next. The sibling commits when every chunk is in
    (before the set is inserted, which reads the content): a failure before then leaves nothing; one after leaves
    the content cached, valid for its digest whatever becomes of the set."""
    group_keys: list[str] | None = None
    computed = 0
    with (
        conn.cursor(name="caption_missing_content") as source, conn.cursor() as cur,
        sibling_connection(conn) as sibling, sibling.cursor() as sink,
        progress_bar(show_progress, desc="caption content", unit="post") as bar,
        ThreadPoolExecutor(1, thread_name_prefix="caption-encode") as encoding,
        ThreadPoolExecutor(1, thread_name_prefix="caption-copy") as copying,
    ):  # fmt: skip
        cur.execute("SET LOCAL cursor_tuple_fraction = 1")  # all rows are read: a hash anti-join, not 1M probes
        cur.execute("SET LOCAL enable_nestloop = off")  # see MISSING_CONTENT_QUERY
        source.execute(MISSING_CONTENT_QUERY)  # no count first: when all is cached, this finds nothing just as fast
        cur.execute("SET LOCAL enable_nestloop TO DEFAULT")  # the cursor's plan is made: the rest plans as it would
        # the digests several works share (identical content: a few): the only ones the fill must remember, so its
        # memory does not grow with the corpus (a set of every digest: ~100 bytes a work, 3 GB at 30M)
        cur.execute(REPEATED_DIGESTS_QUERY)
        repeated = {digest for (digest,) in cur.fetchall()}
        seen: set[str] = set()
        in_flight: deque[Future] = deque()

        def copy(count: int, encoded: Future) -> None:
            copy_text(sink, "caption_content", CONTENT_COLUMNS, encoded.result())
            bar.update(count)

        for rows in iter(lambda: source.fetchmany(chunk_rows), []):
            fresh = [line for digest, line in rows
                     if digest not in repeated or (digest not in seen and not seen.add(digest))]  # fmt: skip
            if not fresh:
                continue
            computed += len(fresh)
            if group_keys is None:  # asked once, when there is something to compute
                cur.execute(GROUP_KEYS_QUERY)
                group_keys = [key for (key,) in cur.fetchall()]
            encoded = encoding.submit(_encode_chunk, fresh, group_keys, columnar, encoder)
            in_flight.append(copying.submit(copy, len(fresh), encoded))
            while len(in_flight) > 2:  # a chunk fetched, one encoded, one copied: no more held in memory
                in_flight.popleft().result()  # an encoding or copy error surfaces here
        while in_flight:
            in_flight.popleft().result()
    return computed


def _encode_chunk(lines: list[str], group_keys: list[str], columnar: ColumnarContentEncoder | None,
                  encoder: ContentLineEncoder) -> str:  # fmt: skip
    if columnar is not None:
        import polars.exceptions

        try:
            return columnar.encode(lines, group_keys)
        except (polars.exceptions.PolarsError, polars.exceptions.PanicException):
            pass  # a shape polars' schema does not take (a tag group that is not a list), or a polars bug: the row
            # encoder's turn
    return "".join(encoder.encode(lines)[1])


CONTENT_COLUMNS = ("digest", "source_tag", "rating_tag", "content", "cumulative_tokens", "fixed_tokens", "date_tags",
                   "date_text", "protected")  # fmt: skip


class ContentLineEncoder:
    """caption_content rows as COPY CSV lines, written out by hand (the cold path: every tag of every new post): the
    content in keep order (captions.tokens.prioritised by ``frequencies``) with its running token cost and how many
    of its tags lead it protected; each distinct cleaned tag's quoted array element is cached."""

    def __init__(
        self, *, include_artist: bool = True, frequencies: Mapping[str, int] | None = None,
        periods: Periods = DEFAULT_PERIODS,
    ) -> None:  # fmt: skip
        self.include_artist = include_artist
        self.frequencies = defaultdict(int, frequencies or {})  # tokens.prioritised's C-level key
        self.periods = periods
        self._forms: dict[str, str | None] = {}  # raw tag → caption form
        self._costs: dict[str, int] = {}  # caption tag → token cost
        self._elements: dict[str, str] = {}

    def encode(self, json_lines: list[str]) -> tuple[int, list[str]]:
        """(rows, COPY lines) for the JSON objects of MISSING_CONTENT_QUERY."""
        rows = []
        for post in map(json.loads, json_lines):
            rows.append((post["d"], post["s"], post["r"], post["t"] or [], post["g"], post["y"], post["c"]))
        return len(rows), self.lines(rows)

    def lines(self, rows: Iterable[Sequence]) -> list[str]:
        """COPY lines for (digest, site, rating, tags, tag groups, year, style cluster) rows."""
        elements, include_artist, frequencies = self._elements, self.include_artist, self.frequencies
        forms, costs, periods = self._forms, self._costs, self.periods
        element_of = elements.__getitem__
        out = []
        for digest, site, rating, tags, groups, year, style in rows:
            content, protected = content_parts(groups, tags, include_artist=include_artist, forms=forms)
            if style is not None:
                content, protected = with_style(content, protected, style_tag(style))
            content = prioritised(content, protected, frequencies)
            for tag in set(content).difference(elements):
                elements[tag] = _csv_array_element(tag)
            array = ",".join(map(element_of, content))
            source, rating_tag, date = source_tag(site, tags), RATING_TAGS[rating], date_tags(year, periods)
            running = ",".join(map(str, cumulative_costs(content, costs)))
            fixed = self._fixed_cost(source, rating_tag, date)
            dates = ",".join(date)  # "year 2023", "newest": no quotes or commas inside
            out.append(f'{digest},{source},{rating_tag},"{{{array}}}","{{{running}}}",{fixed},"{{{dates}}}",'
                       f'"{", ".join(date)}",{protected}\n')  # fmt: skip
        return out

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - a few hundred (source, rating, date) combinations per run
    def _fixed_cost(self, source: str, rating_tag: str, date: tuple[str, ...]) -> int:
        return tags_cost((source, rating_tag, *date))


def _csv_array_element(value: str) -> str:
    """One text[] element inside a quoted CSV field: array-quoted (``\\`` and ``\"`` escaped), then ``"`` doubled."""
    return '""' + value.replace("\\", "\\\\").replace('"', '\\""') + '""'


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
