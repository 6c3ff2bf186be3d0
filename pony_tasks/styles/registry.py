"""Style clustering versions: cluster an embedding model's vectors, give the clusters stable ids, record, activate.

A version is a k-means of every embedding of one model (centroids learnt on a sample, every vector then assigned a
shard at a time: memory of the sample and one shard), its clusters matched to the previous version's
by shared images (``stable_ids``: the same image set under another seed or another embedding model keeps its ids),
stored as ``style_clustering`` + ``style_cluster`` + ``style_cluster_member`` rows and a centroids object. The same
input (model, images, parameters, previous version) returns the existing version: re-running changes nothing. At most
one version is active; activating one is what triggers caption regeneration (the DAG's ``style_clusters`` asset).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass

import numpy as np
import psycopg2.extensions

from pony_tasks.db.bulk import copy_rows
from pony_tasks.embed.run import iter_embeddings, load_embeddings
from pony_tasks.errors import PermanentError
from pony_tasks.storage import ObjectStore
from pony_tasks.styles import active_version  # noqa: F401 - re-exported for callers of the registry
from pony_tasks.styles.kmeans import (
    CONSENSUS_RUNS,
    RUN_ITERATIONS,
    RUN_SAMPLE_PER_CLUSTER,
    SAMPLE_PER_CLUSTER,
    fit_centroids,
)
from pony_tasks.styles.stable_ids import assign_ids_from_counts, stability_from_counts

DEFAULT_CLUSTERS = 32


class NothingToCluster(PermanentError, LookupError):
    """No embeddings for the model (or no embedding model at all)."""


@dataclass(frozen=True)
class StyleVersion:
    version_id: int
    embedding_model_id: int
    clusters: int
    seed: int
    images: int
    previous_version: int | None
    stability: dict
    status: str
    created: bool  # False: the same input had been clustered already; this is that version

    def kept(self) -> str:
        """How much of the version it continues it kept ("" for a first version)."""
        figures = self.stability
        if not figures.get("images_compared"):
            return ""
        return (f"; vs v{self.previous_version}: {figures['same_id_share']:.1%} of {figures['images_compared']} "
                f"images keep their id, ARI {figures['adjusted_rand_index']:.3f}, {figures['matched_clusters']} "
                f"clusters matched, {figures['new_clusters']} new")  # fmt: skip

    def describe(self) -> str:
        return (f"style clustering v{self.version_id} ({self.status}): {self.images} images of embedding model "
                f"{self.embedding_model_id} in {self.clusters} clusters, seed {self.seed}{self.kept()}")  # fmt: skip


def default_embedding_model(conn: psycopg2.extensions.connection) -> int:
    """The active aesthetic model's embedding model (what captions are scored with), else the newest one."""
    with conn.cursor() as cur:
        cur.execute("""SELECT embedding_model_id FROM aesthetic_model WHERE status = 'active'
                       UNION ALL (SELECT model_id FROM embedding_model ORDER BY model_id DESC LIMIT 1)""")
        row = cur.fetchone()
    if row is None:
        raise NothingToCluster("no embedding model yet: run `pony embed run` first")
    return row[0]


def members(conn: psycopg2.extensions.connection, version_id: int) -> dict[str, int]:
    """sha256 → stable cluster id of a version."""
    with conn.cursor() as cur:
        cur.execute("SELECT sha256, cluster_id FROM style_cluster_member WHERE version_id = %s", (version_id,))
        return dict(cur.fetchall())


def run_clustering(
    conn: psycopg2.extensions.connection, store: ObjectStore, *, embedding_model_id: int | None = None,
    clusters: int = DEFAULT_CLUSTERS, seed: int = 0, runs: int = CONSENSUS_RUNS, iterations: int = 50,
    match_to: int | None = None, cold: bool = False,
) -> StyleVersion:  # fmt: skip
    """Cluster every embedding of ``embedding_model_id`` (default: :func:`default_embedding_model`) into ``clusters``
    style clusters and record the result as a candidate version whose ids continue ``match_to`` (default: the
    active version, else the newest). When ``match_to`` clustered the same embedding model into as many clusters,
    k-means starts from its centroids (warm: a re-run on grown data keeps its partition but for what the new data
    moves); ``cold`` or another model starts from the consensus of ``runs`` seeded k-means++ runs. Either way the
    ids are matched to ``match_to``'s by shared images. The same images, model, cluster count, seed and settings
    return the version that clustered them (``created`` False): re-running changes nothing."""
    model_id = embedding_model_id or default_embedding_model(conn)
    if match_to is None:
        with conn.cursor() as cur:
            cur.execute("SELECT version_id FROM style_clustering ORDER BY status = 'active' DESC, version_id DESC "
                        "LIMIT 1")  # fmt: skip
            row = cur.fetchone()
        match_to = row[0] if row else None
    with conn.cursor() as cur:
        cur.execute("""SELECT s.shard_id, count(e.sha256) FROM embedding_shard s
                       JOIN image_embedding e ON e.shard_id = s.shard_id AND e.model_id = s.model_id
                       WHERE s.model_id = %s GROUP BY 1 ORDER BY 1""", (model_id,))  # fmt: skip
        shards = cur.fetchall()
    total = sum(rows for _, rows in shards)
    if not total:
        raise NothingToCluster(f"embedding model {model_id} has no embeddings: run `pony embed run` first")
    settings = {"runs": runs, "iterations": iterations, "run_iterations": RUN_ITERATIONS,
                "run_sample_per_cluster": RUN_SAMPLE_PER_CLUSTER, "sample_per_cluster": SAMPLE_PER_CLUSTER,
                "algorithm": "faiss spherical k-means, consensus of k-means++ runs, on a sha256-hash sample"}
    # the input: the model's shards (immutable: an image's vector is written once) and their rows
    digest = hashlib.sha256(json.dumps([model_id, clusters, seed, settings, shards]).encode())
    input_sha256 = digest.hexdigest()
    with conn.cursor() as cur:
        cur.execute("""SELECT version_id FROM style_clustering WHERE input_sha256 = %s""", (input_sha256,))
        row = cur.fetchone()
    if row:  # the same images, model and settings: the same clustering (however its ids would be matched)
        return get_version(conn, row[0], created=False)
    if total < clusters:
        raise ValueError(f"{total} embeddings cannot make {clusters} clusters; use --clusters {total} or fewer, or "
                         "embed more images first")  # fmt: skip
    initial = None if cold or match_to is None else _warm_start(conn, store, match_to, model_id, clusters)
    parameters = settings | {"start": f"warm from v{match_to}" if initial is not None else "cold"}

    # Memory of the training sample and one shard, whatever the number of images: k-means learns its centroids on a
    # sample (chosen by each image's sha256, so neither shard order nor other images change who is in it), every
    # vector is then assigned a shard at a time into a temporary table, and ids and stability are counted there.
    sample = _training_sample(conn, store, model_id, total, SAMPLE_PER_CLUSTER * clusters)
    centroids = fit_centroids(sample, clusters, seed=seed, iterations=iterations, runs=runs, initial=initial)
    del sample
    objective = _assign_all(conn, store, model_id, centroids)
    with conn.cursor() as cur:
        cur.execute("SELECT label, count(*) FROM style_assignment GROUP BY 1")
        new_sizes = dict(cur.fetchall())
        old_sizes, shared = {}, {}
        if match_to:
            cur.execute("SELECT cluster_id, count(*) FROM style_cluster_member WHERE version_id = %s GROUP BY 1",
                        (match_to,))  # fmt: skip
            old_sizes = dict(cur.fetchall())
            cur.execute("""SELECT a.label, m.cluster_id, count(*) FROM style_assignment a
                           JOIN style_cluster_member m ON m.version_id = %s AND m.sha256 = a.sha256
                           GROUP BY 1, 2""", (match_to,))  # fmt: skip
            shared = {(label, old): count for label, old, count in cur.fetchall()}
        cur.execute("SELECT coalesce(max(cluster_id) + 1, 0) FROM style_cluster")
        next_id = cur.fetchone()[0]
    assignment = assign_ids_from_counts(new_sizes, old_sizes, shared, next_id=next_id)
    figures = {}
    if old_sizes:
        figures = stability_from_counts({(old, assignment.ids[label]): count
                                         for (label, old), count in shared.items()})  # fmt: skip
        figures |= {"matched_clusters": len(assignment.matched_from),
                    "new_clusters": clusters - len(assignment.matched_from)}  # fmt: skip
    label_of_id = {cluster: label for label, cluster in assignment.ids.items()}
    cluster_ids = sorted(label_of_id)
    buffer = io.BytesIO()
    np.savez(buffer, cluster_ids=np.array(cluster_ids, np.int64),
             centroids=centroids[[label_of_id[c] for c in cluster_ids]].astype(np.float32))  # fmt: skip
    with conn.cursor() as cur:
        cur.execute(
            """INSERT INTO style_clustering (embedding_model_id, clusters, seed, parameters, input_sha256, images,
                   previous_version, stability, centroids_key)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, '') RETURNING version_id""",
            (model_id, clusters, seed, json.dumps(parameters | {"objective": round(objective, 3)}),
             input_sha256, total, match_to, json.dumps(figures)),
        )
        version_id = cur.fetchone()[0]
        key = f"styles/v{version_id}/centroids.npz"
        store.put_bytes(key, buffer.getvalue())
        cur.execute("UPDATE style_clustering SET centroids_key = %s WHERE version_id = %s", (key, version_id))
        copy_rows(cur, "style_cluster", ("version_id", "cluster_id", "images", "matched_from", "shared"),
                  [(version_id, c, int(new_sizes.get(label_of_id[c], 0)), assignment.matched_from.get(c),
                    assignment.shared.get(c, 0)) for c in cluster_ids])  # fmt: skip
        cur.execute("""INSERT INTO style_cluster_member (version_id, sha256, cluster_id, similarity)
                       SELECT %s, a.sha256, i.cluster_id, a.similarity
                       FROM style_assignment a JOIN unnest(%s::int[], %s::int[]) AS i(label, cluster_id)
                            ON i.label = a.label""",
                    (version_id, list(assignment.ids), list(assignment.ids.values())))  # fmt: skip
        cur.execute("DROP TABLE style_assignment")
    conn.commit()
    return get_version(conn, version_id, created=True)


def _training_sample(conn, store: ObjectStore, model_id: int, total: int, size: int) -> np.ndarray:
    """About ``size`` of the model's vectors (all of them up to that many), chosen by their sha256 (the first 13 hex
    digits below a threshold), in sha256 order: the same images give the same sample in any shard order."""
    keep = min(1.0, size / total)
    threshold = int(keep * 16**13)
    chosen_ids: list[str] = []
    parts: list[np.ndarray] = []
    for ids, matrix in iter_embeddings(conn, store, model_id):
        rows = [i for i, sha in enumerate(ids) if keep >= 1.0 or int(sha[:13], 16) < threshold]
        chosen_ids.extend(ids[i] for i in rows)
        parts.append(matrix[rows])  # a copy of those rows: the shard itself is let go
    order = np.argsort(np.array(chosen_ids))
    return np.concatenate(parts)[order]


def _assign_all(conn, store: ObjectStore, model_id: int, centroids: np.ndarray) -> float:
    """Every vector's nearest centroid (cosine) into the temporary table ``style_assignment`` (sha256, label,
    similarity), a shard at a time; returns the sum of the cosines (the clustering's objective)."""
    import faiss

    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, np.float32))
    objective = 0.0
    with conn.cursor() as cur:
        cur.execute("CREATE TEMPORARY TABLE style_assignment (sha256 text, label int, similarity double precision) "
                    "ON COMMIT DROP")  # fmt: skip
    for ids, matrix in iter_embeddings(conn, store, model_id):
        vectors = np.ascontiguousarray(matrix, dtype=np.float32)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        similarity, labels = index.search(vectors, 1)
        objective += float(similarity.sum())
        with conn.cursor() as cur:
            copy_rows(cur, "style_assignment", ("sha256", "label", "similarity"),
                      ((sha, int(label), round(float(cosine), 5))
                       for sha, label, cosine in zip(ids, labels[:, 0], similarity[:, 0], strict=True)))  # fmt: skip
    with conn.cursor() as cur:
        cur.execute("CREATE INDEX ON style_assignment (sha256)")
        cur.execute("ANALYZE style_assignment")
    return objective


def _warm_start(conn, store: ObjectStore, version_id: int, model_id: int, clusters: int) -> np.ndarray | None:
    """The centroids of ``version_id`` when it clustered ``model_id`` into ``clusters`` (else None: start cold)."""
    with conn.cursor() as cur:
        cur.execute("SELECT embedding_model_id, clusters, centroids_key FROM style_clustering WHERE version_id = %s",
                    (version_id,))  # fmt: skip
        row = cur.fetchone()
    if row is None or row[0] != model_id or row[1] != clusters:
        return None
    return np.load(io.BytesIO(store.get_bytes(row[2])))["centroids"]


def get_version(conn: psycopg2.extensions.connection, version_id: int | None = None, *, created: bool = False
                ) -> StyleVersion:  # fmt: skip
    """A version by id, or the active one."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT version_id, embedding_model_id, clusters, seed, images, previous_version, stability, status
               FROM style_clustering WHERE CASE WHEN %(v)s::int IS NULL THEN status = 'active'
                                                 ELSE version_id = %(v)s END""",
            {"v": version_id},
        )
        row = cur.fetchone()
    if row is None:
        raise LookupError("no active style clustering: run `pony styles run` and `pony styles activate`"
                          if version_id is None else f"style clustering version {version_id} does not exist")
    return StyleVersion(*row, created=created)


def activate(conn: psycopg2.extensions.connection, version_id: int) -> StyleVersion:
    """Make ``version_id`` the active clustering (the one captions use); the previous active one is retired."""
    version = get_version(conn, version_id)
    with conn.cursor() as cur:
        cur.execute("UPDATE style_clustering SET status = 'retired' WHERE status = 'active' AND version_id <> %s",
                    (version_id,))  # fmt: skip
        cur.execute("UPDATE style_clustering SET status = 'active', activated_at = now() WHERE version_id = %s",
                    (version_id,))  # fmt: skip
    conn.commit()
    return get_version(conn, version.version_id)


ASSIGN_PAGE = 100_000  # new images assigned per page (their vectors: ~150 MiB of float16 at 768-d)


def assign_new_images(conn: psycopg2.extensions.connection, store: ObjectStore, version_id: int) -> int:
    """Give images embedded after ``version_id`` was clustered their nearest cluster (by centroid cosine), so new
    posts get a style tag without a re-clustering; returns how many were added. The new images are read a page at a
    time in shard order (each page's vectors from its own shards): memory bounded however many arrived."""
    version = get_version(conn, version_id)
    saved = None
    added = 0
    with conn.cursor(name="styles_new_images") as new, conn.cursor() as cur:
        new.itersize = ASSIGN_PAGE
        # planned for the whole result, not its first rows (a cursor's default): usually nothing is new, and the
        # fast-start plan probed the member index once per embedded image (53.8 s at 10M)
        cur.execute("SET LOCAL cursor_tuple_fraction = 1.0")
        new.execute("""SELECT e.sha256 FROM image_embedding e WHERE e.model_id = %(model)s AND NOT EXISTS (
                           SELECT 1 FROM style_cluster_member m WHERE m.version_id = %(v)s AND m.sha256 = e.sha256)
                       ORDER BY e.shard_id, e.row""",
                    {"model": version.embedding_model_id, "v": version_id})  # fmt: skip
        while page := [row[0] for row in new.fetchmany(ASSIGN_PAGE)]:
            if saved is None:
                cur.execute("SELECT centroids_key FROM style_clustering WHERE version_id = %s", (version_id,))
                saved = np.load(io.BytesIO(store.get_bytes(cur.fetchone()[0])))
            ids, matrix = load_embeddings(conn, store, version.embedding_model_id, shas=page)  # only their shards
            vectors = matrix.astype(np.float32)
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            cosines = vectors @ saved["centroids"].T
            nearest = cosines.argmax(axis=1)
            copy_rows(cur, "style_cluster_member", ("version_id", "sha256", "cluster_id", "similarity"),
                      ((version_id, sha, int(saved["cluster_ids"][n]), round(float(cosines[i, n]), 5))
                       for i, (sha, n) in enumerate(zip(ids, nearest, strict=True))))  # fmt: skip
            added += len(ids)
    if not added:
        return 0
    with conn.cursor() as cur:
        cur.execute("""UPDATE style_cluster c SET images = m.n FROM (
                           SELECT cluster_id, count(*) AS n FROM style_cluster_member WHERE version_id = %(v)s
                           GROUP BY 1) m
                       WHERE c.version_id = %(v)s AND c.cluster_id = m.cluster_id""", {"v": version_id})  # fmt: skip
    conn.commit()
    return added
