"""``pony embed``: CLIP image embeddings for stored images, written as shards to object storage.

Images without an embedding (or a recorded failure) for the model are taken in sha256 order, ``shard_size`` at a
time. Each shard is decoded by DataLoader worker processes, embedded in batches (bf16 autocast on CUDA),
L2-normalised, stored as ``embeddings/<model>/<digest>.npy`` (float16) plus ``.parquet`` (row, sha256), and
registered in PostgreSQL in one transaction with its rows. A run killed mid-shard registers nothing for that
shard; the next run recomputes the same images into the same keys (the key is a digest of the shard's images), so
nothing is duplicated. Images that cannot be decoded are recorded in ``embedding_failure`` and skipped.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import psycopg2.extensions

from pony_tasks.config import Settings, get_settings
from pony_tasks.db import connect
from pony_tasks.db.bulk import copy_rows
from pony_tasks.embed.decode import StoredImages, collate, init_worker
from pony_tasks.embed.models import LoadedModel, load_model
from pony_tasks.progress import progress_bar
from pony_tasks.runs import recorded_run
from pony_tasks.storage import ObjectStore, open_store

logger = logging.getLogger(__name__)


@dataclass
class EmbedReport:
    model_id: int
    pending: int = 0
    embedded: int = 0
    failed: int = 0
    shards: int = 0
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"embeddings (model {self.model_id}): {self.pending} images to embed, {self.embedded} embedded in "
            f"{self.shards} shards, {self.failed} could not be decoded"
        )


def register_model(conn: psycopg2.extensions.connection, loaded: LoadedModel) -> int:
    with conn.cursor() as cur:
        cur.execute(
            """INSERT INTO embedding_model (name, pretrained, weights_sha256, dimension, image_size)
               VALUES (%s, %s, %s, %s, %s)
               ON CONFLICT (name, pretrained, weights_sha256) DO UPDATE SET dimension = EXCLUDED.dimension
               RETURNING model_id""",
            (loaded.name, loaded.pretrained, loaded.weights_sha256, loaded.dimension, loaded.image_size),
        )
        model_id = cur.fetchone()[0]
    conn.commit()
    return model_id


def _pending(
    conn: psycopg2.extensions.connection, model_id: int, limit: int | None, sha_range: tuple[str, str] | None = None
) -> list[tuple[str, str]]:
    first, last = sha_range or ("", "g")  # hex digests sort between "" and "g"
    with conn.cursor() as cur:
        cur.execute(
            """SELECT i.sha256, i.storage_key FROM image i
               WHERE NOT EXISTS (SELECT 1 FROM image_embedding e WHERE e.model_id = %(m)s AND e.sha256 = i.sha256)
                 AND NOT EXISTS (SELECT 1 FROM embedding_failure f WHERE f.model_id = %(m)s AND f.sha256 = i.sha256)
                 AND i.sha256 BETWEEN %(first)s AND %(last)s
               ORDER BY i.sha256 LIMIT %(limit)s""",
            {"m": model_id, "limit": limit, "first": first, "last": last},
        )
        return cur.fetchall()


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def embed_batches(loaded: LoadedModel, loader) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
    """Run the model over a DataLoader; returns image ids, L2-normalised float16 vectors and decode failures."""
    import torch

    ids: list[str] = []
    vectors: list[np.ndarray] = []
    failures: list[tuple[str, str]] = []
    autocast = loaded.device.startswith("cuda")
    with torch.inference_mode():
        for batch_ids, pixels, failed in loader:
            failures.extend(failed)
            if pixels is None:
                continue
            pixels = pixels.to(loaded.device, non_blocking=True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                features = loaded.model.encode_image(pixels)
            features = torch.nn.functional.normalize(features.float(), dim=-1)
            vectors.append(features.cpu().numpy().astype(np.float16))
            ids.extend(batch_ids)
    matrix = np.concatenate(vectors) if vectors else np.zeros((0, loaded.dimension), np.float16)
    return ids, matrix, failures


def _write_shard(
    store: ObjectStore, conn: psycopg2.extensions.connection, model_id: int, model_name: str,
    ids: list[str], matrix: np.ndarray, failures: list[tuple[str, str]],
) -> None:  # fmt: skip
    import pyarrow as pa
    import pyarrow.parquet as pq

    with conn.cursor() as cur:
        if ids:
            digest = hashlib.sha256("".join(ids).encode()).hexdigest()[:24]
            base = f"embeddings/{_slug(model_name)}-{model_id}/{digest}"
            buffer = io.BytesIO()
            np.save(buffer, matrix, allow_pickle=False)
            store.put_bytes(f"{base}.npy", buffer.getvalue())
            table = pa.table({"row": pa.array(range(len(ids)), pa.int32()), "sha256": pa.array(ids, pa.string())})
            buffer = io.BytesIO()
            pq.write_table(table, buffer)
            store.put_bytes(f"{base}.parquet", buffer.getvalue())
            cur.execute(
                """INSERT INTO embedding_shard (model_id, storage_key, index_key, rows) VALUES (%s, %s, %s, %s)
                   ON CONFLICT (model_id, storage_key) DO UPDATE SET rows = EXCLUDED.rows RETURNING shard_id""",
                (model_id, f"{base}.npy", f"{base}.parquet", len(ids)),
            )
            shard_id = cur.fetchone()[0]
            copy_rows(cur, "image_embedding", ("model_id", "sha256", "shard_id", "row"),
                      [(model_id, sha, shard_id, row) for row, sha in enumerate(ids)])  # fmt: skip
        if failures:
            copy_rows(cur, "embedding_failure", ("model_id", "sha256", "reason"),
                      [(model_id, sha, reason[:2000]) for sha, reason in failures])  # fmt: skip
    conn.commit()  # the shard's objects are in place before its rows become visible


def embed_images(
    model_name: str,
    pretrained: str,
    *,
    settings: Settings | None = None,
    device: str = "auto",
    batch_size: int = 256,
    shard_size: int = 10_000,
    workers: int = 2,
    limit: int | None = None,
    sha_range: tuple[str, str] | None = None,
    show_progress: bool | None = None,
) -> EmbedReport:
    """Embed every stored image that has no embedding for this model yet (within ``sha_range``, inclusive, if
    given: the unit of one mapped Airflow task); safe to re-run and to kill."""
    from torch.utils.data import DataLoader

    settings = settings or get_settings()
    loaded = load_model(model_name, pretrained, device=device, settings=settings)
    store = open_store(settings=settings)
    with connect(settings) as conn:
        model_id = register_model(conn, loaded)
        report = EmbedReport(model_id)
        parameters = {"model": model_name, "pretrained": pretrained, "model_id": model_id, "shard_size": shard_size}
        with recorded_run(conn, "embed", parameters) as run:
            pending = _pending(conn, model_id, limit, sha_range)
            conn.commit()
            report.pending = len(pending)
            with progress_bar(show_progress, total=len(pending), desc=f"embed {model_name}", unit="img") as bar:
                for start in range(0, len(pending), shard_size):
                    items = pending[start : start + shard_size]
                    dataset = StoredImages(items, settings, loaded.preprocess, loaded.image_size)
                    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate,
                                        worker_init_fn=init_worker, pin_memory=loaded.device.startswith("cuda"),
                                        persistent_workers=False)  # fmt: skip
                    ids, matrix, failures = embed_batches(loaded, loader)
                    _write_shard(store, conn, model_id, model_name, ids, matrix, failures)
                    report.embedded += len(ids)
                    report.failed += len(failures)
                    report.shards += 1 if ids else 0
                    report.failures.extend(f"{sha[:12]}…: {reason}" for sha, reason in failures)
                    bar.update(len(items))
            run.summary = {"pending": report.pending, "embedded": report.embedded, "failed": report.failed}
    return report


def load_embeddings(
    conn: psycopg2.extensions.connection, store: ObjectStore, model_id: int, shas: list[str] | None = None
) -> tuple[list[str], np.ndarray]:
    """Every embedding of a model (or only those of ``shas``, reading only the shards that hold them): image ids
    and the float16 matrix, in shard order. Memory: the whole result — for a bounded set (``shas``: ratings,
    held-out images) or a stage that needs every vector at once; a pass over all of them is ``iter_embeddings``."""
    ids, parts = [], []
    for shard_ids, matrix in iter_embeddings(conn, store, model_id, shas=shas):
        ids.extend(shard_ids)
        parts.append(matrix)
    return ids, (np.concatenate(parts) if parts else np.zeros((0, 0), np.float16))


def iter_embeddings(
    conn: psycopg2.extensions.connection, store: ObjectStore, model_id: int, *, shas: list[str] | None = None,
    unscored_by: int | None = None,
) -> Iterator[tuple[list[str], np.ndarray]]:  # fmt: skip
    """(image ids, float16 rows) one shard at a time, in shard order: memory of one shard (10,000 × 768 × 2 bytes,
    15 MiB), whatever the number of shards. Either only the rows of ``shas`` (found in one query) or only images the
    aesthetic version ``unscored_by`` has not scored; a shard with no such row is not read from the object store."""
    if shas is not None and unscored_by is not None:
        raise ValueError("give shas or unscored_by, not both")
    if shas is not None:  # a bounded set (ratings, held-out images): its rows in one query, not one per shard
        with conn.cursor() as cur:
            cur.execute("""SELECT s.shard_id, s.storage_key, e.row, e.sha256 FROM image_embedding e
                           JOIN embedding_shard s ON s.shard_id = e.shard_id
                           WHERE e.model_id = %s AND e.sha256 = ANY(%s::text[]) ORDER BY 1, 3""",
                        (model_id, shas))  # fmt: skip
            wanted = cur.fetchall()
        for (_, key), rows in itertools.groupby(wanted, key=lambda r: (r[0], r[1])):
            rows = list(rows)
            yield [r[3] for r in rows], read_shard(store, key)[[r[2] for r in rows]]
        return
    anti_join = ("AND NOT EXISTS (SELECT 1 FROM aesthetic_score s WHERE s.version_id = %(version)s "
                 "AND s.sha256 = e.sha256)") if unscored_by is not None else ""  # fmt: skip
    params = {"model": model_id, "version": unscored_by}
    with conn.cursor() as cur:  # the shards that hold a wanted row (one scan; a few thousand shards at 30M images)
        cur.execute(f"""SELECT s.shard_id, s.storage_key FROM embedding_shard s
                        WHERE s.model_id = %(model)s AND EXISTS (
                            SELECT 1 FROM image_embedding e WHERE e.model_id = %(model)s
                            AND e.shard_id = s.shard_id {anti_join})
                        ORDER BY s.shard_id""", params)  # fmt: skip
        shards = cur.fetchall()
    for shard_id, key in shards:
        with conn.cursor() as cur:  # one shard's rows (at most its 10,000)
            cur.execute(f"""SELECT e.row, e.sha256 FROM image_embedding e
                            WHERE e.shard_id = %(shard)s AND e.model_id = %(model)s {anti_join}
                            ORDER BY e.row""", {**params, "shard": shard_id})  # fmt: skip
            rows = cur.fetchall()
        if rows:
            yield [sha for _, sha in rows], read_shard(store, key)[[row for row, _ in rows]]


def read_shard(store: ObjectStore, key: str) -> np.ndarray:
    return np.load(io.BytesIO(store.get_bytes(key)), allow_pickle=False)
