"""Shared fixture for caption tests: scored images with posts under an active aesthetic version."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from pony_tasks.boorus.records import UnifiedPost
from pony_tasks.boorus.store import upsert_posts
from pony_tasks.db import connect
from pony_tasks.db.bulk import copy_rows

COUNT = 300
# content-addressed like every stored image: the sha256 is the file's (exports copy images and trust their names)
IMAGE_BYTES = [b"\x89PNG fake image bytes %d" % i for i in range(COUNT)]
SHAS = [hashlib.sha256(data).hexdigest() for data in IMAGE_BYTES]


@pytest.fixture
def scored(migrated):
    """Posts with images and aesthetic scores of an active version (inserted directly: captions only read them)."""
    posts = [
        UnifiedPost(site=("danbooru", "e621")[i % 2], post_id=i + 1, created_at=datetime(2024, 1, 1, tzinfo=UTC),
                    rating=("general", "explicit", "sensitive")[i % 3], site_rating="x",
                    tags=["smile", "looking_at_viewer", f"artist_{i % 7}"], score=1, up_votes=1, down_votes=0,
                    favorites=1, file_url=None, md5=None, sha512=None, width=1, height=1, file_ext="png", sources=[],
                    deleted=False,
                    tag_groups={"artist": [f"artist_{i % 7}"], "general": ["smile", "looking_at_viewer"]})
        for i in range(COUNT)
    ]  # fmt: skip
    shas = SHAS
    with connect(migrated) as conn:
        upsert_posts(conn, posts)
        with conn.cursor() as cur:
            copy_rows(cur, "image", ("sha256", "storage_key", "byte_size", "width", "height", "format"),
                      [(s, f"images/{s}.png", 1, 512, 768, "PNG") for s in shas])  # fmt: skip
            copy_rows(cur, "booru_post_image", ("site", "post_id", "sha256"),
                      [(p.site, p.post_id, s) for p, s in zip(posts, shas, strict=True)])  # fmt: skip
            cur.execute("""INSERT INTO embedding_model (name, pretrained, dimension, image_size)
                           VALUES ('m', 'x', 4, 1) RETURNING model_id""")  # fmt: skip
            model_id = cur.fetchone()[0]
            cur.execute(
                """INSERT INTO aesthetic_model (embedding_model_id, architecture, hyperparameters, metrics,
                       training_set_sha256, training_images, weights_key, score_cdf, status)
                   VALUES (%s, 'mlp', '{}', '{}', 'h', 0, 'k', '{0,1}', 'active') RETURNING version_id""",
                (model_id,),
            )
            version = cur.fetchone()[0]
            copy_rows(cur, "aesthetic_score", ("version_id", "sha256", "score", "percentile"),
                      [(version, s, i / COUNT, i / COUNT) for i, s in enumerate(shas)])  # fmt: skip
    return migrated
