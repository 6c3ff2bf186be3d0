"""A tiny diffusers model family built from configs and a small kohya export in the test's object store."""

from __future__ import annotations

import io
import json
import random

import pytest

from pony_tasks.storage import open_store


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    from pony_tasks.finetune.tiny import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd") / "base")


CAPTIONS = [
    "score_9, source_pony, rating_safe ||| score_8_up, score_7_up, pony, smile",
    "score_3, source_anime, rating_safe ||| score_2_up, score_1_up, 1girl, sitting",
    "score_6, source_furry, rating_explicit ||| score_5_up, score_4_up, anthro, fox",
]


def write_export(settings, name: str = "tiny", count: int = 12, aesthetic_version: int | None = None,
                 caption_set: int | None = None) -> dict:  # fmt: skip
    """A kohya export like `pony export dataset` writes: images of two aspect ratios, .txt, meta.json, manifest."""
    from PIL import Image

    store = open_store(settings=settings)
    rng = random.Random(0)
    meta, files = {}, {}
    for index in range(count):
        size = (40, 32) if index % 2 else (32, 48)
        image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        sha = f"{index:064x}"
        store.put_bytes(f"exports/{name}/{sha}.png", buffer.getvalue())
        caption = CAPTIONS[index % len(CAPTIONS)]
        store.put_bytes(f"exports/{name}/{sha}.txt", caption.encode())
        meta[f"{sha}.png"] = {"caption": caption}
        files[f"exports/{name}/{sha}.png"] = sha
    store.put_bytes(f"exports/{name}/meta.json", json.dumps(meta).encode())
    manifest = {"name": name, "format": "kohya", "samples": count, "caption_set": caption_set,
                "aesthetic_version": aesthetic_version, "files": files}  # fmt: skip
    store.put_bytes(f"exports/{name}/manifest.json", json.dumps(manifest).encode())
    return manifest
