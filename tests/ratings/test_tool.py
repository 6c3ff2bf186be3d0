"""The rating tool's library side: next-image modes, rater-scoped progress, validation, undo."""

from __future__ import annotations

import pytest

from pony_tasks.db import connect
from pony_tasks.ratings.tool import next_image, record_rating, undo_last


def _rating_set(cur, shas: list[str]) -> int:  # noqa: ANN001
    """A rating set of these images (posts e621 1…n, in this order); returns its id."""
    cur.execute("INSERT INTO normalize_run (as_of, parameters, status) VALUES (now(), '{}', 'complete') "
                "RETURNING run_id")  # fmt: skip
    cur.execute("INSERT INTO rating_set (normalize_run_id, parameters, size) VALUES (%s, '{}', %s) RETURNING set_id",
                (cur.fetchone()[0], len(shas)))  # fmt: skip
    set_id = cur.fetchone()[0]
    for i, sha in enumerate(shas):
        cur.execute("INSERT INTO booru_post (site, post_id, rating, tags) VALUES ('e621', %s, 'general', '{a}')",
                    (i + 1,))  # fmt: skip
        cur.execute("INSERT INTO image (sha256, storage_key, byte_size, width, height, format) "
                    "VALUES (%s, 'k', 1, 1, 1, 'PNG')", (sha,))  # fmt: skip
        cur.execute("INSERT INTO rating_set_item (set_id, position, sha256, site, post_id, stratum) "
                    "VALUES (%s, %s, %s, 'e621', %s, 's')", (set_id, i, sha, i + 1))  # fmt: skip
    return set_id


@pytest.fixture
def rated_set(migrated):
    """Four images in a rating set, scored by an active aesthetic version at 0.1, 0.45, 0.9, 0.55."""
    shas = [f"{i:064x}" for i in range(1, 5)]
    with connect(migrated) as conn, conn.cursor() as cur:
        set_id = _rating_set(cur, shas)
        cur.execute("INSERT INTO embedding_model (name, pretrained, dimension, image_size) VALUES ('m', 'x', 4, 1) "
                    "RETURNING model_id")  # fmt: skip
        cur.execute("""INSERT INTO aesthetic_model (embedding_model_id, architecture, hyperparameters, metrics,
                           training_set_sha256, training_images, weights_key, score_cdf, status)
                       VALUES (%s, 'mlp', '{}', '{}', 'h', 0, 'k', '{0,1}', 'active') RETURNING version_id""",
                    (cur.fetchone()[0],))  # fmt: skip
        version = cur.fetchone()[0]
        for sha, pct in zip(shas, (0.1, 0.45, 0.9, 0.55), strict=True):
            cur.execute("INSERT INTO aesthetic_score (version_id, sha256, score, percentile) VALUES (%s, %s, %s, %s)",
                        (version, sha, pct, pct))  # fmt: skip
    return migrated, set_id, shas


def test_modes_order_the_set_and_progress_is_per_rater(rated_set) -> None:
    settings, set_id, shas = rated_set
    with connect(settings) as conn:
        assert next_image(conn, set_id, "ana").sha256 == shas[0]  # stratified: stored order
        assert next_image(conn, set_id, "ana", "uncertain").sha256 == shas[1]  # 0.45: nearest the middle
        assert next_image(conn, set_id, "ana", "uncertain", exclude=[shas[1]]).sha256 == shas[3]
        record_rating(conn, shas[0], 4, "ana")
        assert next_image(conn, set_id, "ana").sha256 == shas[1]
        assert (
            next_image(conn, set_id, "ana").rated_by_rater == 1 and next_image(conn, set_id, "bob").rated_by_rater == 0
        )
        assert undo_last(conn, "bob") is None and undo_last(conn, "ana") == shas[0]
        with pytest.raises(ValueError, match="1 to 5"):
            record_rating(conn, shas[0], 6, "ana")
        with pytest.raises(LookupError):
            record_rating(conn, "f" * 64, 3, "ana")
        with pytest.raises(ValueError, match="mode"):
            next_image(conn, set_id, "ana", "random")
        for sha in shas:
            record_rating(conn, sha, 3, "ana")
        assert next_image(conn, set_id, "ana").sha256 is None  # all rated


@pytest.fixture
def big_set(migrated):
    """A rating set of 200 images (no model)."""
    shas = [f"{i:064x}" for i in range(1, 201)]
    with connect(migrated) as conn, conn.cursor() as cur:
        set_id = _rating_set(cur, shas)
    return migrated, set_id


def test_a_share_of_images_comes_back_unannounced_and_a_rating_sent_twice_is_stored_once(big_set) -> None:
    settings, set_id = big_set
    shown: list[tuple[str, bool]] = []
    with connect(settings) as conn:
        for index in range(300):
            found = next_image(conn, set_id, "ana", repeat_share=0.05)
            if found.sha256 is None:
                break
            shown.append((found.sha256, found.repeat))
            key = f"key-{index:06d}"
            first = record_rating(conn, found.sha256, 1 + index % 5, "ana", key)
            assert record_rating(conn, found.sha256, 1 + index % 5, "ana", key) == first  # a retry: stored once
        with conn.cursor() as cur:
            cur.execute("SELECT count(*), count(DISTINCT client_key) FROM human_rating")
            rows, keys = cur.fetchone()
    repeats = [(i, sha) for i, (sha, again) in enumerate(shown) if again]
    assert rows == keys == len(shown)
    assert 5 <= len(repeats) <= 12, len(repeats)  # ~5 % of ~210 ratings
    first_seen = {}
    for i, (sha, again) in enumerate(shown):
        if not again:
            first_seen.setdefault(sha, i)
    for i, sha in repeats:
        assert i - first_seen[sha] > 20, "a repeat comes at least 20 ratings after the first"
    assert len({sha for _, sha in repeats}) == len(repeats), "an image comes back once"
    assert len({sha for sha, again in shown if not again}) == 200, "every image of the set is still shown"


def test_weakest_mode_without_a_clustering_keeps_the_sets_order(rated_set) -> None:
    settings, set_id, shas = rated_set
    with connect(settings) as conn:
        assert next_image(conn, set_id, "ana", "weakest").sha256 == shas[0]
