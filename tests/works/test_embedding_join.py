"""Works' embedding signals in bounded memory, on shards written by the embedder's own shard writer: the cell join
finds what an exact search finds whatever the number of spill groups the budget makes, matches only new images in
an incremental run, and the cosines of other candidate pairs are exact, also when the budget splits them into
several passes. The thumbnail cells above the flat limit find the flat index's pairs, with exact distances."""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import pytest

from pony_tasks.db import connect
from pony_tasks.embed.run import _write_shard
from pony_tasks.storage import open_store
from pony_tasks.works.catalogue import number_images
from pony_tasks.works.embedding_join import embedding_pairs, pair_cosines, usable_model
from pony_tasks.works.neighbours import thumbnail_pairs
from tests.works.test_neighbours import _corpus, _exact

COUNT = 24_000  # above neighbours.EXACT_LIMIT: k-means cells, not one exact block
SHARD_ROWS = 5_000


def _sha(i: int) -> str:
    return hashlib.sha256(f"image {i}".encode()).hexdigest()


@pytest.fixture
def embedded(migrated):
    """COUNT images with signatures and a 128-d embedding each (planted near-copies among topic clusters); the
    last image has no embedding. Returns (settings, vectors in image-number order, planted pairs by number)."""
    vectors, planted = _corpus(COUNT, planted=300, seed=3)
    shas = [_sha(i) for i in range(COUNT)]
    with connect(migrated) as conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO image (sha256, storage_key, byte_size, width, height, format, phash, colour_thumb,
                                          detail, inner_phash, inner_colour_thumb, inner_detail)
                       SELECT sha, 'images/' || sha, 1, 64, 64, 'PNG', 0, '\\x00', '\\x00', 0, '\\x00', '\\x00'
                       FROM unnest(%s::text[]) AS s(sha)""", (shas,))  # fmt: skip
        cur.execute("INSERT INTO embedding_model (name, pretrained, dimension, image_size) "
                    "VALUES ('test', 'none', 128, 224) RETURNING model_id")  # fmt: skip
        model_id = cur.fetchone()[0]
        conn.commit()
        store = open_store(settings=migrated)
        for start in range(0, COUNT - 1, SHARD_ROWS):  # the last image is left without a vector
            stop = min(start + SHARD_ROWS, COUNT - 1)
            _write_shard(store, conn, model_id, "test", shas[start:stop], vectors[start:stop], [])
    order = np.argsort(shas)  # image numbers follow sha256
    number_of = np.empty(COUNT, np.int64)
    number_of[order] = np.arange(COUNT)
    renumbered = {tuple(sorted((int(number_of[a]), int(number_of[b])))) for a, b in planted}
    return migrated, vectors[order], renumbered, int(number_of[COUNT - 1])


@pytest.mark.parametrize("budget_mib", [1, 256])
def test_the_bounded_cell_join_finds_what_the_exact_search_finds(embedded, budget_mib) -> None:
    settings, vectors, planted, _ = embedded
    exact = _exact(vectors, 0.9)
    assert planted <= exact
    with connect(settings) as conn:
        assert number_images(conn) == COUNT
        model = usable_model(conn, open_store(settings=settings))
        assert model is not None and model.vectors == COUNT - 1 and model.dim == 128 and model.median_cosine < 0.8
        pairs, cosines = embedding_pairs(conn, open_store(settings=settings), model, 0.9, per_row=None, new=None,
                                         budget_bytes=budget_mib * 2**20)  # fmt: skip
    found = set(map(tuple, pairs.tolist()))
    assert found <= exact and len(found) >= 0.97 * len(exact), (len(found), len(exact))
    assert len(planted - found) <= 3
    direct = np.einsum("ij,ij->i", vectors[pairs[:, 0]].astype(np.float32), vectors[pairs[:, 1]].astype(np.float32))
    np.testing.assert_allclose(cosines, direct, atol=1e-4)


def test_a_join_in_passes_under_a_scratch_budget_finds_the_same_pairs(embedded, caplog) -> None:
    settings, _, _, _ = embedded
    caplog.set_level(logging.INFO, logger="pony_tasks.works.embedding_join")
    with connect(settings) as conn:
        number_images(conn)
        store = open_store(settings=settings)
        model = usable_model(conn, store)
        whole = embedding_pairs(conn, store, model, 0.9, per_row=4, new=None, budget_bytes=2**20)
        passes = embedding_pairs(conn, store, model, 0.9, per_row=4, new=None, budget_bytes=2**20,
                                 scratch_bytes=model.vectors * 2 * (model.dim * 2 + 8) // 3)  # three passes
    assert ": 3 passes over the shards" in caplog.text
    assert len(whole[0]) > 100
    np.testing.assert_array_equal(passes[0], whole[0])
    np.testing.assert_array_equal(passes[1], whole[1])


def test_an_incremental_join_pairs_only_new_images(embedded) -> None:
    settings, vectors, planted, _ = embedded
    new = np.zeros(COUNT, bool)
    new[np.unique(np.array(sorted(planted))[:40, 1])] = True
    with connect(settings) as conn:
        number_images(conn)
        store = open_store(settings=settings)
        pairs, _ = embedding_pairs(conn, store, usable_model(conn, store), 0.9, per_row=None, new=new,
                                   budget_bytes=2**20)  # fmt: skip
    found = set(map(tuple, pairs.tolist()))
    assert found and all(new[a] or new[b] for a, b in found)
    assert {p for p in planted if new[p[1]]} <= found


def test_an_incremental_join_in_memory_finds_what_the_spilled_join_finds(embedded) -> None:
    settings, _, _, _ = embedded
    new = np.zeros(COUNT, bool)
    new[np.random.default_rng(5).choice(COUNT, 2_000, replace=False)] = True
    with connect(settings) as conn:
        number_images(conn)
        store = open_store(settings=settings)
        model = usable_model(conn, store)
        # 2,000 new vectors do not fit a third of 1 MiB: the cells are spilled; at 256 MiB they are held in memory
        spilled = embedding_pairs(conn, store, model, 0.7, per_row=4, new=new, budget_bytes=2**20)
        held = embedding_pairs(conn, store, model, 0.7, per_row=4, new=new, budget_bytes=256 * 2**20)
        everything = embedding_pairs(conn, store, model, 0.7, per_row=None, new=new, budget_bytes=256 * 2**20)
    assert len(spilled[0]) > 50 and len(everything[0]) > len(held[0])  # per_row leaves some out
    np.testing.assert_array_equal(held[0], spilled[0])
    np.testing.assert_allclose(held[1], spilled[1], atol=1e-5)


def test_pair_cosines_are_exact_across_passes_and_missing_vectors_are_nan(embedded) -> None:
    settings, vectors, _, missing = embedded
    rng = np.random.default_rng(5)
    pairs = np.sort(rng.integers(0, COUNT, (3_000, 2)), axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    pairs = np.concatenate([pairs, [[0, missing] if missing else [1, missing]]])
    with connect(settings) as conn:
        number_images(conn)
        store = open_store(settings=settings)
        model = usable_model(conn, store)
        cosines = pair_cosines(conn, store, model, pairs, budget_bytes=512 * 128 * 2)  # 256 images a pass
    assert np.isnan(cosines[-1])
    direct = np.einsum("ij,ij->i", vectors[pairs[:-1, 0]].astype(np.float32),
                       vectors[pairs[:-1, 1]].astype(np.float32))  # fmt: skip
    np.testing.assert_allclose(cosines[:-1], direct, atol=1e-4)


def test_the_thumbnail_cells_find_the_flat_indexs_pairs() -> None:
    rng = np.random.default_rng(7)
    centres = rng.integers(0, 256, (3_000, 48))
    thumbs = np.clip(centres[rng.integers(0, 3_000, 30_000)] + rng.integers(-6, 7, (30_000, 48)), 0, 255)
    thumbs = thumbs.astype(np.uint8)
    bound = 48 * 12**2
    flat, _ = thumbnail_pairs(thumbs, k=8, bound=bound, exact=True)
    inverted, distances = thumbnail_pairs(thumbs, k=8, bound=bound, exact=False)  # cells of ~500 thumbnails
    assert len(flat) > 25_000
    flat_set, inverted_set = set(map(tuple, flat.tolist())), set(map(tuple, inverted.tolist()))
    assert len(inverted_set & flat_set) >= 0.95 * len(flat_set)
    direct = ((thumbs[inverted[:, 0]].astype(np.int64) - thumbs[inverted[:, 1]]) ** 2).sum(axis=1)
    np.testing.assert_array_equal(distances, direct)  # integer thumbnails: float32 distances are exact
    queried, _ = thumbnail_pairs(thumbs, k=8, bound=bound, exact=True, query=np.arange(10))
    assert queried.size and all(a < 10 or b < 10 for a, b in queried.tolist())
