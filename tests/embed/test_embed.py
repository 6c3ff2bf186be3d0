"""Embedding stored images with a seeded random-init open_clip model, loaded through pretrained=PATH."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import torch

from pony_tasks.db import connect
from pony_tasks.embed.decode import decode_image
from pony_tasks.embed.models import load_model
from pony_tasks.embed.run import embed_images, load_embeddings
from pony_tasks.storage import open_store
from tests.embed.conftest import store_images


def _count(settings, sql: str, *args) -> int:
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()[0]


def test_embeddings_are_normalised_fp16_shards_matching_the_model(migrated, images, tiny_weights) -> None:
    report = embed_images("pony-tiny-vit", str(tiny_weights), settings=migrated, device="cpu", batch_size=8,
                          shard_size=16, workers=2, show_progress=False)  # fmt: skip
    assert (report.pending, report.embedded, report.failed, report.shards) == (42, 40, 2, 3)
    store = open_store(settings=migrated)
    with connect(migrated) as conn:
        ids, matrix = load_embeddings(conn, store, report.model_id)
        with conn.cursor() as cur:
            cur.execute("SELECT index_key, storage_key FROM embedding_shard ORDER BY shard_id LIMIT 1")
            index_key, npy_key = cur.fetchone()
            cur.execute("SELECT count(*) FROM embedding_failure WHERE reason LIKE '%%truncated%%' OR reason LIKE "
                        "'%%Error%%'")  # fmt: skip
            assert cur.fetchone()[0] == 2
    assert matrix.dtype == np.float16 and matrix.shape == (40, 64) and sorted(ids) == sorted(images[:40])
    assert np.allclose(np.linalg.norm(matrix.astype(np.float32), axis=1), 1, atol=2e-3)
    index = pq.read_table(io.BytesIO(store.get_bytes(index_key))).to_pydict()
    shard = np.load(io.BytesIO(store.get_bytes(npy_key)))
    assert index["row"] == list(range(len(shard))) and len(index["sha256"]) == len(shard)
    # The pipeline applies the model's own preprocessing: a PNG gives what the model gives directly.
    loaded = load_model("pony-tiny-vit", str(tiny_weights), device="cpu", settings=migrated)
    png = next(sha for sha in images[:40] if sha in ids and store.exists(f"images/{sha[:2]}/{sha[2:4]}/{sha}.png"))
    image = decode_image(store.get_bytes(f"images/{png[:2]}/{png[2:4]}/{png}.png"), 64, 10**8)
    with torch.no_grad():
        direct = torch.nn.functional.normalize(loaded.model.encode_image(loaded.preprocess(image)[None]), dim=-1)
    assert np.allclose(matrix[ids.index(png)].astype(np.float32), direct[0].numpy(), atol=2e-3)


def test_rerunning_changes_nothing(migrated, images, tiny_weights) -> None:
    first = embed_images("pony-tiny-vit", str(tiny_weights), settings=migrated, device="cpu", shard_size=16,
                         workers=0, show_progress=False)  # fmt: skip
    objects = sorted(open_store(settings=migrated).list("embeddings/"))
    again = embed_images("pony-tiny-vit", str(tiny_weights), settings=migrated, device="cpu", shard_size=16,
                         workers=0, show_progress=False)  # fmt: skip
    assert again.model_id == first.model_id and (again.pending, again.embedded) == (0, 0)
    assert sorted(open_store(settings=migrated).list("embeddings/")) == objects
    assert _count(migrated, "SELECT count(*) FROM embedding_model") == 1


def test_a_run_killed_mid_shard_resumes_without_duplicates(migrated, tiny_weights) -> None:
    store_images(migrated, 120)
    env = {"PONY_DATABASE_URL": migrated.database_url.get_secret_value(), "PONY_HOME": str(migrated.home),
           "PATH": "/usr/bin:/bin"}  # fmt: skip
    child = subprocess.Popen(
        [sys.executable, "-m", "pony_tasks", "embed", "--model", "pony-tiny-vit", "--pretrained", str(tiny_weights),
         "--device", "cpu", "--shard-size", "10", "--batch-size", "2", "--workers", "0"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while _count(migrated, "SELECT count(*) FROM embedding_shard") < 3:
        assert child.poll() is None and time.monotonic() < deadline, "embedding never got going"
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    partial = _count(migrated, "SELECT count(*) FROM image_embedding")
    assert 0 < partial < 120 and partial % 10 == 0, "only whole shards are registered"
    report = embed_images("pony-tiny-vit", str(tiny_weights), settings=migrated, device="cpu", shard_size=10,
                          workers=0, show_progress=False)  # fmt: skip
    assert report.embedded == 120 - partial
    assert _count(migrated, "SELECT count(*) FROM image_embedding") == 120
    assert _count(migrated, "SELECT count(DISTINCT sha256) FROM image_embedding") == 120
    shards = _count(migrated, "SELECT count(*) FROM embedding_shard")
    assert len(list(open_store(settings=migrated).list("embeddings/"))) == 2 * shards, "no orphaned shard files"


def test_weights_load_from_an_object_store_uri(s3_settings, tiny_weights, migrated) -> None:
    from pony_tasks.storage import open_store as store_for

    s3 = store_for(settings=s3_settings)
    s3.put_file("models/tiny.pt", tiny_weights)
    uri = f"{s3_settings.effective_storage_url.rstrip('/')}/models/tiny.pt"
    settings = s3_settings.replace(home=migrated.home)
    from_s3 = load_model("pony-tiny-vit", uri, device="cpu", settings=settings)
    from_file = load_model("pony-tiny-vit", str(tiny_weights), device="cpu", settings=settings)
    assert from_s3.weights_sha256 == from_file.weights_sha256
    pixels = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(from_s3.model.encode_image(pixels), from_file.model.encode_image(pixels))
