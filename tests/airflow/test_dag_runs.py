"""``dag.test`` of every DAG on the bundled sample data (fake boorus over HTTP, real PostgreSQL), in pipeline order,
then a failing blocking expectation: downstream stops and the alert names the failed expectation."""

from __future__ import annotations

import io

import numpy as np
import pytest

from pony_tasks.config import get_settings
from pony_tasks.orchestration.stages import SITES

pytestmark = pytest.mark.slow


@pytest.fixture
def pipeline(airflow_db, dagbag, migrated, tmp_path, monkeypatch):
    """Settings in the environment (stage commands run as child processes and read them), fakes running."""
    from pony_tasks.embed.models import DEMO_MODEL, save_random_model
    from pony_tasks.fakes.local_sites import as_environment, fake_site_overrides, running_fake_boorus

    weights = tmp_path / "tiny.pt"
    save_random_model(weights)
    with running_fake_boorus() as servers:
        env = {
            "PONY_HOME": str(migrated.resolved_home),
            "PONY_DATABASE_URL": migrated.database_url.get_secret_value(),
            **as_environment(fake_site_overrides(servers)),
            "PONY_EMBED_MODEL": DEMO_MODEL,
            "PONY_EMBED_PRETRAINED": str(weights),
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        yield dagbag
    get_settings.cache_clear()


def _run(dagbag, dag_id: str, **kwargs) -> dict[str, str]:
    run = dagbag.dags[dag_id].test(**kwargs)
    states = {ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""): str(ti.state)
              for ti in run.get_task_instances()}  # fmt: skip
    assert str(run.state) == "success", (dag_id, states)
    return states


def _count(sql: str, *args) -> int:
    from pony_tasks.db import connect

    with connect(get_settings()) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()[0]


def test_every_dag_runs_on_the_sample_data_and_a_blocking_failure_stops_downstream(pipeline) -> None:
    dagbag = pipeline
    for site in SITES:
        _run(dagbag, f"booru_scrape_{site}")
        assert _count("SELECT count(*) FROM booru_post WHERE site = %s", site) > 100
    states = _run(dagbag, "booru_score_refresh")
    assert all(states[f"check_{s}"] == "success" for s in SITES)
    _run(dagbag, "images_fetch")
    assert _count("SELECT count(*) FROM image") > 1500
    _run(dagbag, "scores_normalize")
    assert _count("SELECT count(*) FROM normalize_run WHERE status = 'complete'") == 1

    states = _run(dagbag, "embed_and_score")  # no aesthetic model yet: scoring is skipped
    assert states["embed[0]"] == "success" and states["has_active_model"] == "success"
    assert states["score"] == "skipped"
    embedded = _count("SELECT count(*) FROM image_embedding")
    assert embedded > 1500

    # people rate the rating set (here: the corpus's planted quality), then a model is trained and approved
    from pony_tasks.db import connect
    from pony_tasks.fakes.corpus import SampleCorpus
    from pony_tasks.fakes.synthetic_ratings import write_synthetic_ratings
    from pony_tasks.ratings.importing import import_ratings
    from pony_tasks.ratings.sample import sample_rating_set

    picked = sample_rating_set(600, settings=get_settings())
    ratings = get_settings().resolved_home / "ratings.csv"
    with connect(get_settings()) as conn:
        write_synthetic_ratings(conn, SampleCorpus(), ratings, set_id=picked.set_id)
    import_ratings(ratings, settings=get_settings(), source="test")
    states = _run(dagbag, "aesthetic_train", run_conf={"epochs": 30, "rating_sets": [picked.set_id]},
                  mark_success_pattern="approve")  # fmt: skip
    assert states["promote"] == "success"
    version = _count("SELECT version_id FROM aesthetic_model WHERE status = 'active'")

    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        extras = [e.extra for e in session.query(AssetEvent).all() if e.asset.name == "aesthetic_model"]
    assert extras and extras[-1]["version_id"] == version

    states = _run(dagbag, "captions_regenerate", run_conf={"version_ids": [extras[-1]["version_id"]]})
    assert states["score"] == "success" and states["check_captions"] == "success"
    assert _count("SELECT count(*) FROM active_caption") == _count(
        "SELECT count(*) FROM aesthetic_score WHERE version_id = %s", version) > 1500  # fmt: skip
    assert (
        _count("SELECT c.aesthetic_version_id FROM caption_set c JOIN active_caption_set a USING (set_id)") == version
    )
    _run(dagbag, "nightly_rescore")
    assert _count("SELECT count(*) FROM aesthetic_score WHERE version_id = %s", version) == embedded

    # a gated fine-tune on the tiny model family, then the same again: no new images, so the gates skip it
    from pony_tasks.finetune.tiny import build_tiny_pipeline

    base = build_tiny_pipeline(get_settings().resolved_home / "tiny-sd")
    conf = {"base_model": str(base), "steps": 4, "batch_size": 2, "resolution": 32, "checkpoint_every": 2,
            "min_new_images": 1, "eval_steps": 2, "eval_resolution": 32}  # fmt: skip
    states = _run(dagbag, "finetune", run_conf=conf, mark_success_pattern="approve")
    assert states["train"] == "success" and states["evaluate"] == "success"
    assert _count("SELECT count(*) FROM finetune_eval") == 1
    states = _run(dagbag, "finetune", run_conf=conf, mark_success_pattern="approve")
    assert states["gates"] == "skipped" and states["train"] == "skipped"
    assert _count("SELECT count(*) FROM finetune_gate WHERE gate = 'new_images' AND NOT passed") == 1
    assert _count("SELECT count(*) FROM finetune_gate WHERE gate = 'human_approval' AND passed") == 1

    # A shard whose vectors are no longer unit length: the blocking embeddings gate fails, scoring never runs,
    # and the alert names the failed expectation.
    from pony_tasks.alerts import read_alerts
    from pony_tasks.storage import open_store

    store = open_store(settings=get_settings())
    key = next(k for k in store.list("embeddings/") if k.endswith(".npy"))
    matrix = np.load(io.BytesIO(store.get_bytes(key)), allow_pickle=False)
    buffer = io.BytesIO()
    np.save(buffer, (matrix.astype(np.float32) * 2).astype(np.float16))
    store.put_bytes(key, buffer.getvalue())
    before = len(read_alerts(get_settings()))
    run = dagbag.dags["embed_and_score"].test()
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert str(run.state) == "failed"
    assert states["check_embeddings"] == "failed"
    assert states["score"] in ("upstream_failed", "skipped", "None") and states["check_scores"] != "success"
    new_alerts = read_alerts(get_settings())[before:]
    assert any("check_embeddings" in a.subject and any("norm" in d for d in a.details) for a in new_alerts), new_alerts
