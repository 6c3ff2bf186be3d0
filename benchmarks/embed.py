"""Embedding and scoring benchmarks (CPU here; CUDA when present).

1. End-to-end images/s from stored booru-sized JPEG/PNG files (1280×960, 3 JPEG : 1 PNG) with the demo model
   (pony-tiny-vit, seeded random init):
   ``pony embed``'s pipeline (DataLoader workers decoding with draft(), batches, shards, registration) against a naive
   loop in the same run (read one file, decode fully, preprocess, encode a batch of one). Target ≥ 3×.
2. Scoring 1,000,000 embeddings (768-d, ViT-L-14's width, LAION-layout MLP) with ``pony aesthetic score``: shards
   read from the object store, scores and percentiles written to PostgreSQL. Target ≤ 60 s on CPU.

    .venv/bin/python benchmarks/embed.py [--images 2000] [--embeddings 1000000] [--database-url …]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from pony_tasks.config import load_settings
from pony_tasks.db import connect, upgrade
from pony_tasks.db.bulk import copy_rows
from pony_tasks.db.embedded import throwaway_server
from pony_tasks.storage import open_store


def stored_images(settings, count: int, side: int = 1280) -> list[tuple[str, str]]:
    """``count`` booru-sized files (about side × 0.75·side px; three JPEGs to one PNG, as on the sites) in the store."""
    from pony_tasks.fakes.images import STYLES, encode, render_image

    store = open_store(settings=settings)
    rows, items = [], []
    for index in range(count):
        ext = "png" if index % 4 == 0 else "jpg"
        data = encode(render_image(index, side, side * 3 // 4, STYLES[index % len(STYLES)]), ext, 90)
        sha = hashlib.sha256(data).hexdigest()
        key = f"images/{sha[:2]}/{sha[2:4]}/{sha}.{ext}"
        store.put_bytes(key, data)
        rows.append((sha, key, len(data), side, side * 3 // 4, "PNG" if ext == "png" else "JPEG"))
        items.append((sha, key))
    with connect(settings) as conn, conn.cursor() as cur:
        copy_rows(cur, "image", ("sha256", "storage_key", "byte_size", "width", "height", "format"), rows)
    return items


def naive_loop(settings, items: list[tuple[str, str]], weights: Path) -> float:
    import torch
    from PIL import Image

    from pony_tasks.embed.models import load_model

    loaded = load_model("pony-tiny-vit", str(weights), device="cpu", settings=settings)
    store = open_store(settings=settings)
    started = time.perf_counter()
    with torch.inference_mode():
        for _, key in items:
            image = Image.open(io.BytesIO(store.get_bytes(key))).convert("RGB")
            vector = loaded.model.encode_image(loaded.preprocess(image)[None])
            torch.nn.functional.normalize(vector, dim=-1).numpy().astype(np.float16)
    return time.perf_counter() - started


def embedding_benchmark(settings, count: int) -> None:
    from pony_tasks.embed.models import save_random_model
    from pony_tasks.embed.run import embed_images

    items = stored_images(settings, count)
    weights = save_random_model(settings.resolved_home / "models" / "tiny.pt")
    naive = naive_loop(settings, items, weights)
    started = time.perf_counter()
    report = embed_images("pony-tiny-vit", str(weights), settings=settings, device="auto", batch_size=256,
                          shard_size=10_000, workers=2, show_progress=False)  # fmt: skip
    pipeline = time.perf_counter() - started
    print(f"\nembedding {count:,} stored 1280×960 JPEG/PNG files with pony-tiny-vit ({report.embedded:,} embedded):")
    print(f"  naive one-at-a-time loop: {count / naive:8.1f} images/s")
    print(f"  pony embed pipeline:      {count / pipeline:8.1f} images/s (model load and registration included)")
    print(f"  ratio: {naive / pipeline:.1f}× (target ≥ 3×)")


def scoring_benchmark(settings, count: int, dimension: int = 768, shard_rows: int = 50_000) -> None:
    import torch

    from pony_tasks.aesthetic.head import build_head
    from pony_tasks.aesthetic.score import score_all

    store = open_store(settings=settings)
    rng = np.random.default_rng(0)
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO image (sha256, storage_key, byte_size, width, height, format)
               SELECT md5(i::text) || md5((-i)::text), 'bench/' || i, 1, 1, 1, 'PNG'
               FROM generate_series(1, %s) i""",
            (count,),
        )
        cur.execute("""INSERT INTO embedding_model (name, pretrained, dimension, image_size)
                       VALUES ('bench-768', 'random', %s, 224) RETURNING model_id""", (dimension,))  # fmt: skip
        model_id = cur.fetchone()[0]
        sample = None
        for shard, start in enumerate(range(1, count + 1, shard_rows)):
            n = min(shard_rows, count + 1 - start)
            vectors = rng.normal(size=(n, dimension)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            sample = vectors[:5000] if sample is None else sample
            buffer = io.BytesIO()
            np.save(buffer, vectors.astype(np.float16))
            store.put_bytes(f"bench/shard-{shard}.npy", buffer.getvalue())
            cur.execute("""INSERT INTO embedding_shard (model_id, storage_key, index_key, rows)
                           VALUES (%s, %s, '', %s) RETURNING shard_id""",
                        (model_id, f"bench/shard-{shard}.npy", n))  # fmt: skip
            shard_id = cur.fetchone()[0]
            cur.execute(
                """INSERT INTO image_embedding (model_id, sha256, shard_id, row)
                   SELECT %s, md5(i::text) || md5((-i)::text), %s, i - %s FROM generate_series(%s, %s) i""",
                (model_id, shard_id, start, start, start + n - 1),
            )
        head = build_head("mlp", dimension)
        head[0].fit(torch.from_numpy(sample))
        buffer = io.BytesIO()
        torch.save({"architecture": "mlp", "dimension": dimension, "state_dict": head.state_dict()}, buffer)
        store.put_bytes("bench/head.pt", buffer.getvalue())
        cur.execute(
            """INSERT INTO aesthetic_model (embedding_model_id, architecture, hyperparameters, metrics,
                   training_set_sha256, training_images, weights_key, score_cdf)
               VALUES (%s, 'mlp', '{}', '{}', 'bench', 0, 'bench/head.pt', %s) RETURNING version_id""",
            (model_id, np.linspace(0.3, 0.7, 1001).tolist()),
        )
        version_id = cur.fetchone()[0]
    started = time.perf_counter()
    result = score_all(version_id, settings=settings)
    elapsed = time.perf_counter() - started
    print(f"\nscoring {count:,} embeddings ({dimension}-d, LAION-layout MLP, shards from the object store, "
          "scores + percentiles COPYed to PostgreSQL):")  # fmt: skip
    print(f"  {result.scored:,} scored in {elapsed:.1f} s = {result.scored / elapsed:,.0f} embeddings/s "
          "(target ≤ 60 s for 1,000,000)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--embeddings", type=int, default=1_000_000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="pony-bench-"))
    with throwaway_server(home / "pg", url=args.database_url) as url:
        with connect(url) as conn:
            upgrade(conn)
        settings = load_settings(home=home, database_url=url)
        embedding_benchmark(settings, args.images)
        scoring_benchmark(settings, args.embeddings)
        print("\n" + json.dumps({"device": "cpu (no GPU lent to this session)"}))


if __name__ == "__main__":
    main()
