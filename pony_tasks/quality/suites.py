"""The expectation suites: what each pipeline stage's output must satisfy.

Each suite is a function returning a :class:`SuiteInput` for one batch: a SQL query whose rows become a batch table
that Great Expectations validates in PostgreSQL (its SQL datasource: every expectation an aggregate query there —
memory bounded whatever the table's size, 28M captions included), or, for what is not a table (a sample of embedding
vectors) or is small by nature (one row per style cluster), a pandas frame. Severity ``critical`` = blocking (the
task fails, downstream tasks do not run); ``warning`` = alert only. Great Expectations is imported here, never at
DAG parse time (it costs ~5 s).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import psycopg2.extensions

from pony_tasks.captions.render import RATING_TAGS
from pony_tasks.storage import ObjectStore

RATINGS = ("general", "sensitive", "questionable", "explicit")
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "WEBP")
MAX_CAPTION_CHARS = 4000
MAX_CAPTION_TAGS = 250
EMBEDDING_SAMPLE_ROWS = 50_000  # unit-norm and finiteness are checked on at most this many vectors per run
SCORE_DRIFT_LIMIT = 0.15  # mean aesthetic score may move this much between versions before a warning


@dataclass(frozen=True)
class SuiteInput:
    name: str
    frame: pd.DataFrame | None  # a batch small by nature, validated in pandas …
    expectations: list  # great_expectations Expectation objects
    batch: dict
    rows: int | None = None  # … or the batch as a table in PostgreSQL, validated there: its rows
    table: str | None = None  # the batch table (dropped once validated)

    @property
    def row_count(self) -> int:
        return len(self.frame) if self.frame is not None else int(self.rows or 0)


BATCH_TABLE_PREFIX = "quality_batch_"
STALE_BATCH_SECONDS = 86_400  # a batch table this old was left by a check that died: the next check drops it


def _batch_table(query: str, conn: psycopg2.extensions.connection, params: dict) -> tuple[int, str]:
    """(how many rows, the batch table): the query's rows computed once into an UNLOGGED table that GX validates as a
    table asset (committed: GX reads it on its own connection; :func:`drop_batch_table` removes it), so each
    expectation's aggregates scan its few narrow columns instead of evaluating the query again (GX runs one or more
    queries per expectation: with the caption suite's regular expressions that was 13× the work)."""
    _drop_stale_batch_tables(conn)
    table = f"{BATCH_TABLE_PREFIX}{int(time.time())}_{os.getpid()}_{secrets.token_hex(3)}"
    with conn.cursor() as cur:
        cur.execute(f"CREATE UNLOGGED TABLE {table} AS {cur.mogrify(query, params).decode()}")
        rows = cur.rowcount
    conn.commit()
    return rows, table


def drop_batch_table(conn: psycopg2.extensions.connection, table: str) -> None:
    if not table.startswith(BATCH_TABLE_PREFIX):
        raise ValueError(f"not a quality batch table: {table!r}")
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
    conn.commit()


def _drop_stale_batch_tables(conn: psycopg2.extensions.connection) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE %s",
                    (BATCH_TABLE_PREFIX.replace("_", r"\_") + "%",))  # fmt: skip
        names = [name for (name,) in cur.fetchall()]
    for name in names:
        stamp = name.removeprefix(BATCH_TABLE_PREFIX).split("_", 1)[0]
        if stamp.isdigit() and int(stamp) < time.time() - STALE_BATCH_SECONDS:
            drop_batch_table(conn, name)


def _frame(query: str, conn: psycopg2.extensions.connection, params: dict) -> pd.DataFrame:
    with conn.cursor() as cur:
        cur.execute(query, params)
        columns = [d.name for d in cur.description]
        return pd.DataFrame(cur.fetchall(), columns=columns)


def _gxe():
    import great_expectations.expectations as gxe

    return gxe


def scraped_posts(
    conn: psycopg2.extensions.connection, store: ObjectStore, *, site: str, since: datetime
) -> SuiteInput:
    """Posts of ``site`` observed since ``since`` (one scrape batch)."""
    rows, table = _batch_table(
        """SELECT p.site, p.post_id, p.rating, p.created_at, coalesce(array_length(p.tags, 1), 0) AS tags,
                  p.created_at > now() + interval '1 day' AS created_in_future
           FROM booru_post p
           WHERE p.site = %(site)s AND NOT p.deleted AND EXISTS (SELECT 1 FROM booru_score_snapshot s
                 WHERE s.site = p.site AND s.post_id = p.post_id AND s.observed_at >= %(since)s)""",
        conn, params={"site": site, "since": since},
    )  # fmt: skip
    gxe = _gxe()
    expectations = [
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["site", "post_id"], severity="critical"),
        gxe.ExpectColumnValuesToBeInSet(column="rating", value_set=list(RATINGS), mostly=0.99, severity="critical"),
        gxe.ExpectColumnValuesToBeInSet(column="created_in_future", value_set=[False], severity="critical"),
        gxe.ExpectColumnValuesToBeBetween(column="tags", min_value=1, mostly=0.95, severity="warning"),
    ]
    batch = {"site": site, "since": since.isoformat()}
    return SuiteInput("scraped_posts", None, expectations, batch, rows=rows, table=table)


def images(conn: psycopg2.extensions.connection, store: ObjectStore, *, since: datetime) -> SuiteInput:
    rows, table = _batch_table(
        "SELECT sha256, byte_size, width, height, format FROM image WHERE stored_at >= %(since)s",
        conn, params={"since": since},
    )  # fmt: skip
    gxe = _gxe()
    expectations = [
        gxe.ExpectColumnValuesToBeUnique(column="sha256", severity="critical"),
        gxe.ExpectColumnValuesToMatchRegex(column="sha256", regex=r"^[0-9a-f]{64}$", severity="critical"),
        gxe.ExpectColumnValuesToBeBetween(column="byte_size", min_value=1, severity="critical"),
        gxe.ExpectColumnValuesToBeBetween(column="width", min_value=1, severity="critical"),
        gxe.ExpectColumnValuesToBeBetween(column="height", min_value=1, severity="critical"),
        gxe.ExpectColumnValuesToBeInSet(column="format", value_set=list(IMAGE_FORMATS), severity="warning"),
    ]
    return SuiteInput("images", None, expectations, {"since": since.isoformat()}, rows=rows, table=table)


def embeddings(conn: psycopg2.extensions.connection, store: ObjectStore, *, model_id: int) -> SuiteInput:
    """Dimension, finiteness and unit norm of the model's vectors (the newest shards, up to a sample size)."""
    import io

    with conn.cursor() as cur:
        cur.execute("SELECT dimension FROM embedding_model WHERE model_id = %s", (model_id,))
        row = cur.fetchone()
        if row is None:
            raise LookupError(f"embedding model {model_id} does not exist")
        cur.execute("SELECT storage_key FROM embedding_shard WHERE model_id = %s ORDER BY shard_id DESC", (model_id,))
        keys = [r[0] for r in cur.fetchall()]
    dimension, parts, total = row[0], [], 0
    for key in keys:
        matrix = np.load(io.BytesIO(store.get_bytes(key)), allow_pickle=False)
        parts.append(matrix)
        total += len(matrix)
        if total >= EMBEDDING_SAMPLE_ROWS:
            break
    vectors = [m.astype(np.float32) for m in parts]
    frame = pd.DataFrame({
        "dimension": np.concatenate([np.full(len(v), v.shape[1] if v.ndim == 2 else 0) for v in vectors]) if vectors
        else np.zeros(0, int),
        "finite": np.concatenate([np.isfinite(v).all(axis=1) for v in vectors]) if vectors else np.zeros(0, bool),
        "norm": np.concatenate([np.linalg.norm(np.nan_to_num(v), axis=1) for v in vectors]) if vectors
        else np.zeros(0),
    })  # fmt: skip
    gxe = _gxe()
    expectations = [
        gxe.ExpectColumnValuesToBeInSet(column="dimension", value_set=[dimension], severity="critical"),
        gxe.ExpectColumnValuesToBeInSet(column="finite", value_set=[True], severity="critical"),
        # float16 storage: a unit vector's norm comes back within ~1e-3 of 1
        gxe.ExpectColumnValuesToBeBetween(column="norm", min_value=0.99, max_value=1.01, severity="critical"),
    ]
    return SuiteInput("embeddings", frame, expectations, {"model_id": model_id, "dimension": dimension})


def aesthetic_scores(conn: psycopg2.extensions.connection, store: ObjectStore, *, version_id: int) -> SuiteInput:
    """Range, spread (a collapsed model gives every image the same score) and drift against the previous version."""
    rows, table = _batch_table("SELECT score, percentile FROM aesthetic_score WHERE version_id = %(v)s", conn,
                         params={"v": version_id})  # fmt: skip
    with conn.cursor() as cur:
        cur.execute(
            """SELECT avg(s.score) FROM aesthetic_score s
               WHERE s.version_id = (SELECT max(version_id) FROM aesthetic_model m WHERE m.version_id < %s
                                     AND EXISTS (SELECT 1 FROM aesthetic_score x WHERE x.version_id = m.version_id))""",
            (version_id,),
        )
        previous_mean = cur.fetchone()[0]
    gxe = _gxe()
    expectations = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1, severity="critical"),
        gxe.ExpectColumnValuesToBeBetween(column="score", min_value=0, max_value=1, severity="critical"),
        gxe.ExpectColumnValuesToBeBetween(column="percentile", min_value=0, max_value=1, severity="critical"),
        gxe.ExpectColumnStdevToBeBetween(column="score", min_value=0.01, severity="critical"),
    ]
    if previous_mean is not None:
        expectations.append(gxe.ExpectColumnMeanToBeBetween(
            column="score", min_value=max(0.0, previous_mean - SCORE_DRIFT_LIMIT),
            max_value=min(1.0, previous_mean + SCORE_DRIFT_LIMIT), severity="warning"))  # fmt: skip
    return SuiteInput("aesthetic_scores", None, expectations,
                      {"version_id": version_id, "previous_mean": previous_mean}, rows=rows, table=table)  # fmt: skip


def captions(conn: psycopg2.extensions.connection, store: ObjectStore, *, set_id: int) -> SuiteInput:
    """Exactly one band tag (``score_N``, not ``_up``), nothing empty, length limits, and every caption within the
    set's token limit (captions.tokens: the cost bounds any training sample's CLIP token count)."""
    rows, table = _batch_table(
        r"""SELECT band, rating_tag, length(text) AS chars,
                   cardinality(regexp_split_to_array(text, ',| \|\|\| ')) AS tags,
                   (SELECT count(*) FROM regexp_matches(text, '(^|, )score_[1-9](,| |$)', 'g')) AS band_tags,
                   cardinality(content) AS content_tags, tokens, tags_dropped
            FROM caption WHERE set_id = %(s)s""",
        conn, params={"s": set_id},
    )  # fmt: skip
    with conn.cursor() as cur:
        cur.execute("SELECT token_limit FROM caption_set WHERE set_id = %s", (set_id,))
        row = cur.fetchone()
    token_limit = row[0] if row else None
    gxe = _gxe()
    expectations = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1, severity="critical"),  # an empty set is never right
        gxe.ExpectColumnValuesToBeInSet(column="band_tags", value_set=[1], severity="critical"),
        gxe.ExpectColumnValuesToBeBetween(column="band", min_value=1, max_value=9, severity="critical"),
        gxe.ExpectColumnValuesToBeInSet(
            column="rating_tag", value_set=sorted(set(RATING_TAGS.values())), severity="critical"
        ),  # fmt: skip
        gxe.ExpectColumnValuesToBeBetween(
            column="chars", min_value=1, max_value=MAX_CAPTION_CHARS, severity="critical"
        ),
        gxe.ExpectColumnValuesToBeBetween(column="tags", max_value=MAX_CAPTION_TAGS, severity="warning"),
        gxe.ExpectColumnValuesToBeBetween(column="content_tags", min_value=1, mostly=0.99, severity="warning"),
    ]
    if token_limit is not None:  # sets made before migration 0018 have no token count
        expectations += [
            gxe.ExpectColumnValuesToNotBeNull(column="tokens", severity="critical"),
            gxe.ExpectColumnValuesToBeBetween(
                column="tokens", min_value=1, max_value=token_limit, severity="critical"
            ),  # fmt: skip
        ]
    batch = {"set_id": set_id, "token_limit": token_limit}
    return SuiteInput("captions", None, expectations, batch, rows=rows, table=table)


MAX_MERGED_SHARE = 0.5  # share of works with more than one image: above this the matcher is suspect
MAX_MERGE_JUMP = 0.05  # that share may move this much between two runs of the matcher before a warning


def works(conn: psycopg2.extensions.connection, store: ObjectStore) -> SuiteInput:
    """Every work (one row each): its images, how many sites, and how many sites hold more than one of its images
    (a site rarely reposts the same picture under another file: a warning, not an error), plus the merged share —
    in a band, and near the share the previous matcher run left (a sudden jump: the matcher or its input changed)."""
    with conn.cursor() as cur:  # the run before the newest one: the newest made what is checked here
        cur.execute("""SELECT (summary ->> 'merged_share')::float FROM pipeline_run
                       WHERE stage = 'works' AND status = 'succeeded' AND summary ? 'merged_share'
                       ORDER BY run_id DESC OFFSET 1 LIMIT 1""")  # fmt: skip
        row = cur.fetchone()
    previous = row[0] if row else None
    rows, table = _batch_table(
        """WITH per_site AS (  -- one pass: the files each site holds of each work (aggregates, no subquery a work)
               SELECT i.work_id, p.site, count(DISTINCT i.sha256) AS files FROM work_image i
               JOIN booru_post_image p USING (sha256) GROUP BY 1, 2),
           sites AS (
               SELECT work_id, count(*) AS sites, count(*) FILTER (WHERE files > 1) AS sites_with_two_files
               FROM per_site GROUP BY 1)
           SELECT w.work_id, w.images, coalesce(s.sites, 0) AS sites,
                  coalesce(s.sites_with_two_files, 0) AS sites_with_two_files,
                  (w.images > 1)::int::float AS merged,
                  -- its mean: the change of the merged share since the previous run
                  (w.images > 1)::int::float - %(previous)s::float AS merged_share_change
           FROM (SELECT work_id, count(DISTINCT sha256) AS images FROM work_image GROUP BY 1) w
           LEFT JOIN sites s USING (work_id)""",
        conn,
        params={"previous": previous},
    )
    gxe = _gxe()
    expectations = [
        gxe.ExpectColumnValuesToBeUnique(column="work_id", severity="critical"),
        gxe.ExpectColumnValuesToBeBetween(column="images", min_value=1, severity="critical"),
        gxe.ExpectColumnValuesToBeInSet(
            column="sites_with_two_files", value_set=[0], mostly=0.99, severity="warning"
        ),  # fmt: skip
        gxe.ExpectColumnMeanToBeBetween(
            column="merged", min_value=0, max_value=MAX_MERGED_SHARE, severity="warning"
        ),  # fmt: skip
    ]
    if rows and previous is not None:
        expectations.append(gxe.ExpectColumnMeanToBeBetween(
            column="merged_share_change", min_value=-MAX_MERGE_JUMP, max_value=MAX_MERGE_JUMP,
            severity="warning"))  # fmt: skip
    return SuiteInput("works", None, expectations, {"previous_merged_share": previous}, rows=rows, table=table)


MAX_STYLE_CLUSTER_SHARE = 0.5  # one cluster holding more of the images: the embeddings have collapsed
MIN_STYLE_KEPT_SHARE = 0.5  # fewer images keeping their cluster id than this: the styles changed meaning


def style_clusters(conn: psycopg2.extensions.connection, store: ObjectStore, *, version_id: int) -> SuiteInput:
    """One row per cluster of a style clustering: none empty (critical), none holding most images, every embedded
    image of its model in a cluster, and — against the version its ids continue — most images keeping their id."""
    frame = _frame(
        """SELECT c.cluster_id, c.images, c.images::float / greatest(v.images, 1) AS share,
                  (SELECT count(*) FROM style_cluster_member m WHERE m.version_id = v.version_id)::float
                      / greatest((SELECT count(*) FROM image_embedding e WHERE e.model_id = v.embedding_model_id), 1)
                      AS coverage,
                  (v.stability ->> 'same_id_share')::float AS kept_share
           FROM style_cluster c JOIN style_clustering v USING (version_id)
           WHERE c.version_id = %(version)s""",
        conn,
        params={"version": version_id},
    )
    gxe = _gxe()
    expectations = [
        gxe.ExpectColumnValuesToBeUnique(column="cluster_id", severity="critical"),
        gxe.ExpectColumnValuesToBeBetween(column="images", min_value=1, severity="critical"),
        gxe.ExpectColumnMaxToBeBetween(column="share", max_value=MAX_STYLE_CLUSTER_SHARE, severity="warning"),
        gxe.ExpectColumnMinToBeBetween(column="coverage", min_value=0.999, severity="warning"),
    ]
    if not frame.empty and frame["kept_share"].notna().all():
        expectations.append(gxe.ExpectColumnMinToBeBetween(column="kept_share", min_value=MIN_STYLE_KEPT_SHARE,
                                                           severity="warning"))  # fmt: skip
    return SuiteInput("style_clusters", frame, expectations, {"version_id": version_id})


SUITES: dict[str, Callable[..., SuiteInput]] = {
    "works": works,
    "style_clusters": style_clusters,
    "scraped_posts": scraped_posts,
    "images": images,
    "embeddings": embeddings,
    "aesthetic_scores": aesthetic_scores,
    "captions": captions,
}
