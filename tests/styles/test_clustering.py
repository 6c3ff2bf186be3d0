"""Style clustering versions on real embeddings (the tiny random-init model) of stored images: recorded, idempotent,
ids kept across a re-clustering and across another embedding model, new images assigned, contact sheets drawn."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from pony_tasks.db import connect
from pony_tasks.embed.models import save_random_model
from pony_tasks.embed.run import embed_images, load_embeddings
from pony_tasks.fakes.images import STYLES, encode, render_image
from pony_tasks.storage import open_store
from pony_tasks.styles.kmeans import kmeans
from pony_tasks.styles.registry import (
    NothingToCluster,
    activate,
    assign_new_images,
    get_version,
    members,
    run_clustering,
)
from pony_tasks.styles.sheet import cluster_sheets
from pony_tasks.styles.stable_ids import stability


def _store_styled_images(settings, count: int, offset: int = 0) -> None:
    store = open_store(settings=settings)
    rows = []
    for index in range(offset, offset + count):
        data = encode(render_image(index, 64, 64, STYLES[index % len(STYLES)]), "png", 90)
        sha = hashlib.sha256(data).hexdigest()
        key = f"images/{sha[:2]}/{sha[2:4]}/{sha}.png"
        store.put_bytes(key, data)
        rows.append((sha, key, len(data), 64, 64, "PNG"))
    with connect(settings) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO image (sha256, storage_key, byte_size, width, height, format) "
                        "VALUES (%s, %s, %s, %s, %s, %s)", rows)  # fmt: skip


def _embed(settings, weights) -> int:
    return embed_images("pony-tiny-vit", str(weights), settings=settings, device="cpu", batch_size=64,
                        workers=0, show_progress=False).model_id  # fmt: skip


@pytest.fixture
def embedded(migrated, tiny_weights):
    _store_styled_images(migrated, 150)
    return migrated, _embed(migrated, tiny_weights)


def test_a_version_is_recorded_and_rerunning_changes_nothing(embedded) -> None:
    settings, model_id = embedded
    store = open_store(settings=settings)
    with connect(settings) as conn:
        first = run_clustering(conn, store, embedding_model_id=model_id, clusters=5, seed=0)
        assert first.created and first.previous_version is None and first.images == 150 and first.status == "candidate"
        assigned = members(conn, first.version_id)
        assert len(assigned) == 150 and set(assigned.values()) == set(range(5))
        with conn.cursor() as cur:
            cur.execute("SELECT cluster_id, images FROM style_cluster WHERE version_id = %s ORDER BY images DESC",
                        (first.version_id,))  # fmt: skip
            sizes = cur.fetchall()
            cur.execute("SELECT count(*) FROM style_clustering")
            assert cur.fetchone()[0] == 1
        assert sum(n for _, n in sizes) == 150 and [c for c, _ in sizes] == list(range(5))  # first ids: by size
        again = run_clustering(conn, store, embedding_model_id=model_id, clusters=5, seed=0)
        assert (again.version_id, again.created) == (first.version_id, False)
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM style_clustering")
            assert cur.fetchone()[0] == 1
        saved = np.load(io.BytesIO(store.get_bytes(f"styles/v{first.version_id}/centroids.npz")))
        assert list(saved["cluster_ids"]) == list(range(5)) and saved["centroids"].shape == (5, 64)


def test_ids_are_kept_across_reseeds_and_another_embedding_model(embedded, tmp_path) -> None:
    settings, model_id = embedded
    store = open_store(settings=settings)
    with connect(settings) as conn:
        first = run_clustering(conn, store, embedding_model_id=model_id, clusters=5, seed=0)
        activate(conn, first.version_id)
        before = members(conn, first.version_id)
        warm = run_clustering(conn, store, embedding_model_id=model_id, clusters=5, seed=7)  # from v1's centroids
        assert warm.previous_version == first.version_id
        assert warm.stability["same_id_share"] >= 0.9
        cold = run_clustering(conn, store, embedding_model_id=model_id, clusters=5, seed=11, cold=True)
        assert cold.stability == stability(before, members(conn, cold.version_id)) | {
            "matched_clusters": cold.stability["matched_clusters"], "new_clusters": cold.stability["new_clusters"]}
        # another embedding model (other random weights): clusters matched by shared images beat raw labels
        other = _embed(settings, save_random_model(tmp_path / "other.pt", seed=5))
        moved = run_clustering(conn, store, embedding_model_id=other, clusters=5, seed=0, match_to=first.version_id)
        assert moved.previous_version == first.version_id and moved.stability["images_compared"] == 150
        ids, matrix = load_embeddings(conn, store, other)  # without matching: k-means' own labels as the ids
        raw = dict(zip(ids, kmeans(matrix, 5, seed=0).labels.tolist(), strict=True))
        assert moved.stability["same_id_share"] > stability(before, raw)["same_id_share"]
        assert get_version(conn).version_id == first.version_id  # runs are candidates until activated


def test_new_images_join_their_nearest_cluster_and_sheets_show_each_cluster(embedded, tiny_weights,
                                                                            monkeypatch) -> None:  # fmt: skip
    from pony_tasks.styles import registry

    monkeypatch.setattr(registry, "ASSIGN_PAGE", 5)  # 12 new images: three pages
    settings, model_id = embedded
    store = open_store(settings=settings)
    with connect(settings) as conn:
        version = activate(conn, run_clustering(conn, store, embedding_model_id=model_id, clusters=5).version_id)
    _store_styled_images(settings, 12, offset=1000)
    _embed(settings, tiny_weights)
    with connect(settings) as conn:
        assert assign_new_images(conn, store, version.version_id) == 12
        assert assign_new_images(conn, store, version.version_id) == 0
        assert len(members(conn, version.version_id)) == 162
        with conn.cursor() as cur:
            cur.execute("SELECT sum(images) FROM style_cluster WHERE version_id = %s", (version.version_id,))
            assert cur.fetchone()[0] == 162
        keys = cluster_sheets(conn, store)
    assert keys[0].endswith("overview.png") and len(keys) == 6
    for key in keys:
        with Image.open(io.BytesIO(store.get_bytes(key))) as sheet:
            assert sheet.format == "PNG" and sheet.width >= 400


def test_nothing_to_cluster_says_what_to_run(migrated) -> None:
    with connect(migrated) as conn, pytest.raises(NothingToCluster, match="pony embed run"):
        run_clustering(conn, open_store(settings=migrated), clusters=4)


def test_the_gate_passes_a_clustering_and_blocks_an_empty_cluster_and_the_dag_activates_only_new_versions(
    embedded,
) -> None:
    from pony_tasks.orchestration.tasks import activate_style_version, style_version_to_activate
    from pony_tasks.quality.checks import run_check

    settings, model_id = embedded
    with connect(settings) as conn:
        version = run_clustering(conn, open_store(settings=settings), embedding_model_id=model_id, clusters=5)
    report = run_check("style_clusters", settings=settings, version_id=version.version_id)
    assert report.outcome in ("passed", "warnings") and report.rows_checked == 5 and not report.blocking
    line = f"style clustering v{version.version_id} (candidate): 150 images of embedding model {model_id} …"
    assert style_version_to_activate(line, settings) == version.version_id
    assert "is now active: 5 clusters of 150 images" in activate_style_version(version.version_id, settings)
    assert style_version_to_activate(line, settings) is None  # already active: no new captions
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("UPDATE style_cluster SET images = 0 WHERE version_id = %s AND cluster_id = 4",
                    (version.version_id,))  # fmt: skip
    broken = run_check("style_clusters", settings=settings, version_id=version.version_id)
    assert broken.outcome == "failed" and broken.blocking


def test_the_cli_clusters_activates_assigns_and_lists(embedded, tmp_path) -> None:
    from pony_tasks.db import database_url
    from tests.helpers import run_pony

    settings, _ = embedded
    env = {"PONY_HOME": str(settings.resolved_home), "PONY_DATABASE_URL": database_url(settings),
           "PONY_STORAGE_URL": open_store(settings=settings).url}  # fmt: skip
    nothing = run_pony("styles", "assign", env=env)
    assert nothing.returncode == 0 and "no active style clustering" in nothing.stdout
    ran = run_pony("styles", "run", "--clusters", "5", "--activate", env=env)
    assert ran.returncode == 0 and "style clustering v1 (active): 150 images" in ran.stdout, ran.stderr
    again = run_pony("styles", "run", "--clusters", "5", env=env)
    assert "unchanged: this input was clustered already" in again.stdout
    assert "0 new images assigned" in run_pony("styles", "assign", env=env).stdout
    assert "style clustering v1 (active)" in run_pony("styles", "list", env=env).stdout
    sheets = run_pony("styles", "sheets", "--out", str(tmp_path / "sheets"), env=env)
    assert sheets.returncode == 0 and len(list((tmp_path / "sheets").glob("*.png"))) == 6
