from __future__ import annotations

import hashlib
import io

import pytest

from pony_tasks.db import connect
from pony_tasks.embed.models import save_random_model
from pony_tasks.fakes.images import encode, render_image
from pony_tasks.storage import open_store


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """A seeded random-init pony-tiny-vit checkpoint (no real weights can be downloaded here)."""
    return save_random_model(tmp_path_factory.mktemp("weights") / "pony-tiny-vit-seed0.pt")


def store_images(settings, count: int, corrupt: int = 0) -> list[str]:
    """Images written straight into the store and the image table; ``corrupt`` of them rotten in storage."""
    store = open_store(settings=settings)
    rows = []
    for index in range(count + corrupt):
        data = encode(render_image(index, 72, 90, "flat"), "png" if index % 2 else "jpg", 85)
        if index >= count:
            data = data[: len(data) // 3]
        sha = hashlib.sha256(data).hexdigest()
        key = f"images/{sha[:2]}/{sha[2:4]}/{sha}.{'png' if index % 2 else 'jpg'}"
        store.put_bytes(key, data)
        rows.append((sha, key, len(data), 72, 90, "PNG" if index % 2 else "JPEG"))
    with connect(settings) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO image (sha256, storage_key, byte_size, width, height, format) VALUES (%s, %s, %s, %s, %s, %s)",
            rows,
        )
    return [r[0] for r in rows]


@pytest.fixture
def images(migrated):
    return store_images(migrated, 40, corrupt=2)


def png_bytes(seed: int) -> bytes:
    buffer = io.BytesIO()
    render_image(seed, 72, 90, "flat").save(buffer, "PNG")
    return buffer.getvalue()
