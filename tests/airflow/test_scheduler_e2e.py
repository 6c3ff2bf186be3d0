"""The pipeline as it runs in production: a real scheduler, dag-processor, triggerer and API server (LocalExecutor,
PostgreSQL metadata) start the DAGs by themselves — scheduled scrapes, asset-triggered downstream runs — while the
test does only what people do: rate images, trigger a training run over REST, answer the approvals through the
human-in-the-loop REST endpoint (what the UI's Approve button sends). Each run's run_type, state and data counts are
checked, and a run with bad parameters fails within a minute, naming every problem, without a retry."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from pony_tasks.alerts import read_alerts
from pony_tasks.config import get_settings
from pony_tasks.orchestration.stages import SITES
from tests.airflow.conftest import ROOT
from tests.airflow.scheduler import airflow, running_airflow

pytestmark = pytest.mark.slow
CHAIN = ("images_fetch", "scores_normalize", "embed_and_score", "works_link", "aesthetic_train", "captions_regenerate",
         "finetune")
POSTS_PER_SITE = 200  # a smaller corpus than the demo's: the scheduler's own overhead is what is under test


def _value(sql: str, *args):
    from pony_tasks.db import connect

    with connect(get_settings()) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()[0]


def _count(sql: str, *args) -> int:
    return int(_value(sql, *args))


@pytest.fixture
def airflow_services(migrated, tmp_path, monkeypatch):
    from pony_tasks.embed.models import DEMO_MODEL, save_random_model
    from pony_tasks.fakes.corpus import SampleCorpus
    from pony_tasks.fakes.local_sites import as_environment, fake_site_overrides, running_fake_boorus
    from pony_tasks.finetune.tiny import build_tiny_pipeline
    from pony_tasks.orchestration.standalone import metadata_url

    weights = tmp_path / "tiny.pt"
    save_random_model(weights)
    base = build_tiny_pipeline(tmp_path / "tiny-sd")
    finetune_defaults = {"base_model": str(base), "steps": 4, "batch_size": 2, "resolution": 32, "checkpoint_every": 2,
                         "min_new_images": 1, "eval_steps": 2, "eval_resolution": 32}
    with running_fake_boorus(SampleCorpus(posts_per_site=POSTS_PER_SITE)) as servers:
        pony = {"PONY_HOME": str(migrated.resolved_home), "PONY_DATABASE_URL": migrated.database_url.get_secret_value(),
                **as_environment(fake_site_overrides(servers)), "PONY_EMBED_MODEL": DEMO_MODEL,
                "PONY_EMBED_PRETRAINED": str(weights), "PONY_FINETUNE_PARAM_DEFAULTS": json.dumps(finetune_defaults)}
        for key, value in pony.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        env = {**os.environ, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url(get_settings()),
               "AIRFLOW__CORE__EXECUTOR": "LocalExecutor", "AIRFLOW__CORE__PARALLELISM": "4",
               "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
               "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "600",
               "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
               "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO", "PYTHONPATH": str(ROOT / "plugins")}  # fmt: skip
        with running_airflow(env, tmp_path / "airflow") as api:
            yield api
    get_settings.cache_clear()


def _only_run(api, dag_id: str) -> dict:
    runs = api.runs(dag_id)
    assert runs, f"{dag_id} never ran"
    return runs[-1]


def test_the_scheduler_runs_the_asset_chain_and_failures_are_red(airflow_services) -> None:
    api = airflow_services
    scrapes = ["booru_scrape"]
    api.wait(lambda: {d["dag_id"] for d in api.get("/dags", limit=100)["dags"]} >= {*scrapes, *CHAIN}, 240,
             "the dag-processor to parse every DAG")  # fmt: skip
    graph = airflow(api.env, "dags", "show", "finetune")  # the graphviz package is part of the stack
    assert graph.lstrip().startswith("digraph finetune") and "run_outcome" in graph, graph[:500]
    for dag_id in (*CHAIN, *scrapes):  # consumers first, so no asset event finds its consumer paused
        api.unpause(dag_id)

    # The scheduled scrape (catchup off: the latest hourly interval) of every site → images_fetch, scores_normalize →
    # embed_and_score → works_link, each asset-triggered. The sites finish apart, yet their gates hand on one
    # booru_posts event, so each consumer runs exactly once.
    downstream = ["images_fetch", "scores_normalize", "embed_and_score", "works_link"]

    def chain_done() -> bool:
        return all(api.runs(d) for d in (*scrapes, *downstream)) and \
            _count("SELECT count(*) FROM image") == _count("SELECT count(DISTINCT sha256) FROM image_embedding") > 0 \
            and api.quiet([*scrapes, *downstream])

    api.wait(chain_done, 900, "scrape → images_fetch → scores_normalize → embed_and_score → works_link", every=5)
    # Usually one scheduled scrape run; two when the test crosses the top of an hour (a new interval starts).
    scrape_runs = api.runs("booru_scrape")
    gates = (*(f"check_{s}" for s in SITES), "announce_posts")
    for scrape in scrape_runs:
        assert (scrape["run_type"], scrape["state"]) == ("scheduled", "success"), scrape
        tasks = api.tasks("booru_scrape", scrape["dag_run_id"])
        assert {t: tasks[t]["state"] for t in gates} == dict.fromkeys(gates, "success"), tasks
    events = api.get("/assets/events", source_dag_id="booru_scrape")["asset_events"]
    assert [(e["name"], sorted(e["extra"]["sites"])) for e in events] == [("booru_posts", sorted(SITES))] * len(
        scrape_runs), events  # one event per scrape run, never one per site
    for dag_id in downstream:  # so never more consumer runs than scrape runs (one each when there was one)
        runs = api.runs(dag_id)
        assert {(r["run_type"], r["state"]) for r in runs} == {("asset_triggered", "success")}, (dag_id, runs)
        assert 1 <= len(runs) <= len(scrape_runs), (dag_id, len(runs), len(scrape_runs))
    assert _count("SELECT count(*) FROM work_image") == _count("SELECT count(*) FROM image")  # every image in a work
    posts, images = _count("SELECT count(*) FROM booru_post"), _count("SELECT count(*) FROM image")
    assert posts >= 4 * POSTS_PER_SITE * 0.95 and images > 0.9 * posts, (posts, images)
    assert _count("SELECT count(*) FROM normalize_run WHERE status = 'complete'") >= 1

    # A build of every image in parts (works_build, by hand): plan → mapped embedding parts → link → gate. On works
    # already linked it changes nothing, and the plan is gone afterwards.
    partition = "SELECT md5(string_agg(sha256 || ':' || work_id, ',' ORDER BY sha256)) FROM work_image"
    linked = _value(partition)
    api.unpause("works_build")
    build = api.trigger("works_build", {"parts": 2})
    run = api.wait_for_run("works_build", build, 300)
    tasks = api.tasks("works_build", build)
    assert run["state"] == "success", {t: v["state"] for t, v in tasks.items()}
    planned = int(re.search(r": (\d+) parts?", api.get(
        f"/dags/works_build/dagRuns/{build}/taskInstances/plan/xcomEntries/return_value")["value"]).group(1))
    parts = {t: v["state"] for t, v in tasks.items() if t.startswith("embedding_part")}
    assert parts == ({f"embedding_part[{n}]": "success" for n in range(planned)} if planned
                     else {"embedding_part": "skipped"}), parts  # none when the embeddings are not used
    assert tasks["link"]["state"] == tasks["check_works"]["state"] == "success", tasks
    assert _value(partition) == linked, "a rebuild of linked works changes nothing"
    assert _count("SELECT count(*) FROM works_plan") == 0

    # People rate; a person triggers training over REST and approves the candidate where the UI would.
    from pony_tasks.db import connect
    from pony_tasks.fakes.corpus import SampleCorpus
    from pony_tasks.fakes.synthetic_ratings import write_synthetic_ratings
    from pony_tasks.ratings.importing import import_ratings
    from pony_tasks.ratings.sample import sample_rating_set

    picked = sample_rating_set(400, settings=get_settings())
    ratings = get_settings().resolved_home / "ratings.csv"
    with connect(get_settings()) as conn:
        write_synthetic_ratings(conn, SampleCorpus(posts_per_site=POSTS_PER_SITE), ratings, set_id=picked.set_id)
    import_ratings(ratings, settings=get_settings(), source="test")
    # rating_sets as Airflow's trigger form sends a list typed one per line: strings (test_ui_plugin types them)
    train_run = api.trigger("aesthetic_train", {"epochs": 30, "rating_sets": [f" {picked.set_id}"]})
    answer = api.answer("aesthetic_train", train_run, "approve", "Approve")
    assert answer["chosen_options"] == ["Approve"] and answer["responded_by"]["name"] == "ana", answer
    run = api.wait_for_run("aesthetic_train", train_run, 300)
    tasks = api.tasks("aesthetic_train", train_run)
    assert run["state"] == "success" and tasks["promote"]["state"] == "success", tasks
    checked = api.get(f"/dags/aesthetic_train/dagRuns/{train_run}/taskInstances/check_params/xcomEntries/params")
    assert checked["value"]["rating_sets"] == [picked.set_id], checked  # the run's tasks got integers
    version = _count("SELECT version_id FROM aesthetic_model WHERE status = 'active'")

    # The promotion's asset event starts captions_regenerate, whose captions asset starts finetune (no logical date).
    api.wait(lambda: api.runs("finetune"), 600, "captions_regenerate → the finetune run it triggers", every=5)
    captions = _only_run(api, "captions_regenerate")  # the captions asset is emitted before its last tasks end
    captions = api.wait_for_run("captions_regenerate", captions["dag_run_id"], 300)
    assert (captions["run_type"], captions["state"]) == ("asset_triggered", "success"), captions
    captioned_for = "SELECT c.aesthetic_version_id FROM caption_set c JOIN active_caption_set a USING (set_id)"
    assert _count(captioned_for) == version
    works = _count("SELECT count(*) FROM work") + _count(
        "SELECT count(*) FROM image i WHERE NOT EXISTS (SELECT 1 FROM work_image w WHERE w.sha256 = i.sha256)")
    assert _count("SELECT count(*) FROM active_caption") == works <= images, "one caption per work"
    finetune = _only_run(api, "finetune")
    assert finetune["run_type"] == "asset_triggered" and finetune["logical_date"] is None, finetune
    api.answer("finetune", finetune["dag_run_id"], "approve", "Approve")
    finetune = api.wait_for_run("finetune", finetune["dag_run_id"], 600)
    tasks = api.tasks("finetune", finetune["dag_run_id"])
    assert finetune["state"] == "success", {t: v["state"] for t, v in tasks.items()}
    assert tasks["train"]["state"] == tasks["evaluate"]["state"] == "success"
    assert tasks[RUN_OUTCOME]["state"] == "skipped"
    assert _count("SELECT count(*) FROM finetune_eval") == 1
    assert _count("SELECT count(*) FROM finetune_gate WHERE gate = 'human_approval' AND passed "
                  "AND detail LIKE %s", "%Approve%by ana%") == 1  # fmt: skip

    # By hand again: nothing new since the last fine-tune, so the gates skip the rest — skipped, still green, and
    # nothing exported (the gates decide on the selection, before the export).
    from pony_tasks.storage import open_store

    store = open_store(settings=get_settings())
    exports = {key.split("/")[1] for key in store.list("exports/")}
    again = api.trigger("finetune", {})
    run = api.wait_for_run("finetune", again, 300)
    tasks = api.tasks("finetune", again)
    assert run["state"] == "success" and tasks["gates"]["state"] == tasks["train"]["state"] == "skipped", tasks
    assert tasks["export"]["state"] == "skipped" and {key.split("/")[1] for key in store.list("exports/")} == exports
    assert _count("SELECT count(*) FROM finetune_gate WHERE gate = 'new_images' AND NOT passed") == 1
    from pony_tasks.reports.plots import latest_finetune_gates

    assert latest_finetune_gates()[0]["context"] == again and "new_images" in latest_finetune_gates()[0]["outcome"]

    # A base model that is not there: the run fails before anyone is asked to approve, naming the setting.
    missing = api.trigger("finetune", {"base_model": str(Path(get_settings().resolved_home) / "no-such-model")})
    run = api.wait_for_run("finetune", missing, 300)
    tasks = api.tasks("finetune", missing)
    assert run["state"] == "failed" and tasks["preflight"]["state"] == "failed", tasks
    assert tasks["preflight"]["try_number"] == 1 and tasks["approve"]["state"] == "upstream_failed", tasks
    alert = next(a for a in reversed(read_alerts(get_settings())) if "preflight" in a.subject)
    assert "finetune_param_defaults" in alert.body, alert.body

    # A shard whose vectors are no longer unit length: the blocking embeddings gate fails at once (no retry), the
    # scores are never written, the run is red and the alert names the failed expectation.
    _break_an_embedding_shard()
    before = len(read_alerts(get_settings()))
    broken = api.trigger("embed_and_score", {})
    run = api.wait_for_run("embed_and_score", broken, 300)
    tasks = api.tasks("embed_and_score", broken)
    assert run["state"] == "failed" and tasks["check_embeddings"]["state"] == "failed", tasks
    assert tasks["check_embeddings"]["try_number"] == 1 and tasks["score"]["state"] == "upstream_failed"
    assert tasks[RUN_OUTCOME]["state"] == "failed"
    new_alerts = read_alerts(get_settings())[before:]
    alert = next(a for a in new_alerts if "check_embeddings" in a.subject)
    assert any("norm" in d for d in alert.details), alert
    page = alert.body.split("Data Docs page: ")[1].split()[0]  # the alert links the result's page through the UI
    assert page.startswith(f"{api.base_url}/pony/quality-docs/validations/"), page
    answer = api.client.get(page)
    assert answer.status_code == 200, answer.text[:500]
    text = " ".join(re.sub(r"<[^>]+>", " ", answer.text).split())
    assert "Status: Failed" in text and "Expectation Suite: embeddings" in text, text[:2000]

    # Bad parameters: the run starts, its first task names every problem and fails at once, without a retry, and
    # the run is red.
    started = time.monotonic()
    bad_run = api.trigger("aesthetic_train", {"epochs": 0, "learning_rate": 5, "bogus_key": 1})
    run = api.wait_for_run("aesthetic_train", bad_run, 120)
    took = time.monotonic() - started
    tasks = api.tasks("aesthetic_train", bad_run)
    assert run["state"] == "failed" and took < 60, (run["state"], took)
    assert tasks["check_params"]["state"] == "failed" and tasks["check_params"]["try_number"] == 1, tasks
    assert tasks["train"]["state"] == "upstream_failed" and tasks[RUN_OUTCOME]["state"] == "failed"
    alert = next(a for a in reversed(read_alerts(get_settings())) if "check_params" in a.subject)
    assert "3 bad parameter(s)" in alert.body, alert.body
    assert all(word in alert.body for word in ("epochs", "learning_rate", "'bogus_key'")), alert.body


RUN_OUTCOME = "run_outcome"


def _break_an_embedding_shard() -> None:
    import io

    import numpy as np

    from pony_tasks.storage import open_store

    store = open_store(settings=get_settings())
    key = next(k for k in store.list("embeddings/") if k.endswith(".npy"))
    matrix = np.load(io.BytesIO(store.get_bytes(key)), allow_pickle=False)
    buffer = io.BytesIO()
    np.save(buffer, (matrix.astype(np.float32) * 2).astype(np.float16))
    store.put_bytes(key, buffer.getvalue())
