"""The aesthetic model on embeddings that carry a known quality signal (so learning can be checked)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from pony_tasks.aesthetic.registry import PromotionRefused, get_version, promote
from pony_tasks.aesthetic.score import score_all
from pony_tasks.aesthetic.train import TrainParameters, train_aesthetic
from pony_tasks.db import connect
from pony_tasks.db.bulk import copy_rows
from pony_tasks.embed.run import _write_shard
from pony_tasks.storage import open_store

DIM = 32


def _setup(settings, count: int = 400, rated: int = 300, seed: int = 0) -> tuple[int, dict[str, float]]:
    """Images with embeddings = normalise(common + quality·direction + noise) and two raters' 1–5 ratings."""
    rng = np.random.default_rng(seed)
    shas = [hashlib.sha256(f"img{i}".encode()).hexdigest() for i in range(count)]
    quality = dict(zip(shas, rng.uniform(0, 1, count), strict=True))
    common, direction = rng.normal(size=DIM), rng.normal(size=DIM)
    vectors = np.array([common * 3 + direction * quality[s] * 2 + rng.normal(size=DIM) * 0.6 for s in shas])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with connect(settings) as conn, conn.cursor() as cur:
        copy_rows(cur, "image", ("sha256", "storage_key", "byte_size", "width", "height", "format"),
                  [(s, f"images/{s}.png", 1, 1, 1, "PNG") for s in shas])  # fmt: skip
        cur.execute("""INSERT INTO embedding_model (name, pretrained, weights_sha256, dimension, image_size)
                       VALUES ('synthetic', 'none', NULL, %s, 1) RETURNING model_id""", (DIM,))  # fmt: skip
        model_id = cur.fetchone()[0]
        conn.commit()
        embedded = shas[: count - 10]  # ten images have no embedding
        _write_shard(open_store(settings=settings), conn, model_id, "synthetic", embedded,
                     vectors[: count - 10].astype(np.float16), [])  # fmt: skip
        when = datetime(2026, 11, 1, tzinfo=UTC)
        rows = []
        for index, sha in enumerate(embedded[:rated]):
            for rater in ("a", "b"):
                value = int(np.clip(round(1 + 4 * quality[sha] + rng.normal(0, 0.4)), 1, 5))
                rows.append((sha, value, rater, when + timedelta(seconds=index)))
        copy_rows(cur, "human_rating", ("sha256", "rating", "rater", "rated_at"), rows)
    return model_id, quality


def test_training_learns_the_signal_and_reports_heldout_metrics(migrated) -> None:
    model_id, _ = _setup(migrated)
    result = train_aesthetic(model_id, TrainParameters(epochs=200), settings=migrated)
    m = result.metrics
    assert result.heldout_images == pytest.approx(60, abs=3) and result.training_images + result.heldout_images == 300
    assert m["spearman"] > 0.8 and m["pairwise_accuracy"] > 0.75 and m["mae"] < 0.15
    assert np.array(m["confusion"]).sum() == result.heldout_images
    with connect(migrated) as conn, conn.cursor() as cur:
        cur.execute("SELECT status, length(training_set_sha256), cardinality(score_cdf) FROM aesthetic_model")
        assert cur.fetchone() == ("candidate", 64, 1001)
    again = train_aesthetic(model_id, TrainParameters(epochs=200), settings=migrated)
    assert again.version_id == result.version_id, "same data and settings give the same version, not a copy"
    linear = train_aesthetic(model_id, TrainParameters(architecture="linear", epochs=200), settings=migrated)
    assert linear.version_id != result.version_id and linear.metrics["spearman"] > 0.8


def test_promotion_compares_on_the_same_heldout_images_and_needs_a_reason_to_go_backwards(migrated) -> None:
    model_id, _ = _setup(migrated)
    store = open_store(settings=migrated)
    good = train_aesthetic(model_id, TrainParameters(epochs=200), settings=migrated)
    bad = train_aesthetic(model_id, TrainParameters(epochs=1, learning_rate=1e-6, seed=3), settings=migrated)
    with connect(migrated) as conn:
        promote(conn, store, good.version_id)
        with pytest.raises(PromotionRefused, match="worse"):
            promote(conn, store, bad.version_id)
        assert get_version(conn).version_id == good.version_id
        comparison = promote(conn, store, bad.version_id, override_reason="testing a rollback path")
        assert comparison["candidate"]["n"] == comparison["active"]["n"]
        assert get_version(conn).version_id == bad.version_id
        with conn.cursor() as cur:
            cur.execute("SELECT promoted, override_reason FROM aesthetic_promotion ORDER BY promotion_id")
            assert cur.fetchall() == [(True, None), (False, None), (True, "testing a rollback path")]


def test_scoring_covers_every_embedding_reports_the_rest_and_is_idempotent(migrated) -> None:
    model_id, quality = _setup(migrated)
    version = train_aesthetic(model_id, TrainParameters(epochs=200), settings=migrated)
    with connect(migrated) as conn:
        with pytest.raises(LookupError, match="no active aesthetic model"):
            get_version(conn)
        promote(conn, open_store(settings=migrated), version.version_id)
    first = score_all(settings=migrated)
    assert (first.scored, first.without_embedding) == (390, 10)
    again = score_all(settings=migrated)
    assert (again.scored, again.already_scored) == (0, 390)
    with connect(migrated) as conn, conn.cursor() as cur:  # a partly scored version scores only what it lacks
        cur.execute("DELETE FROM aesthetic_score WHERE sha256 IN (SELECT sha256 FROM aesthetic_score LIMIT 40)")
    partly = score_all(settings=migrated)
    assert (partly.scored, partly.already_scored) == (40, 350)
    with connect(migrated) as conn, conn.cursor() as cur:
        cur.execute("SELECT sha256, score, percentile FROM aesthetic_score")
        rows = cur.fetchall()
    percentiles = np.array([p for _, _, p in rows])
    assert 0 <= percentiles.min() < 0.02 and 0.98 < percentiles.max() <= 1
    scores = {sha: score for sha, score, _ in rows}
    order = sorted(scores, key=scores.get)
    assert np.corrcoef(np.arange(len(order)), [quality[s] for s in order])[0, 1] > 0.8


def test_a_work_is_held_out_whole_or_not_at_all() -> None:
    """The same picture on several sites lands on one side of the split, also across strata."""
    from pony_tasks.aesthetic.train import split_heldout

    targets = {f"{i:064x}": (0.5, ("danbooru|general", "e621|explicit", "gelbooru|sensitive")[i % 3])
               for i in range(600)}  # fmt: skip
    shas = sorted(targets)
    work_of = {sha: i // 3 for i, sha in enumerate(shas[:300])}  # 100 works of three images on three strata
    for seed in range(5):
        held = split_heldout(targets, 20, seed, work_of)
        for work in range(100):
            members = [s for s in shas[:300] if work_of[s] == work]
            assert len({s in held for s in members}) == 1, (seed, work)
        assert 0.15 < len(held) / len(targets) < 0.3
    assert split_heldout(targets, 20, 0) == split_heldout(targets, 20, 0, {})  # no works: the split as before
