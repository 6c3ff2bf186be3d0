"""``make demo``: the whole pipeline through Airflow, on the embedded defaults, against the fake boorus.

Each DAG runs with ``dag.test`` (in-process, the real operators and quality gates; Airflow's metadata in the
``airflow`` database of the embedded PostgreSQL), in the order the assets would trigger them. Two steps are people's
work and are stood in for, said so on screen: rating the rating set (SYNTHETIC ratings from the corpus's planted
quality) and approving the promotion (the approval task is marked done). The caption run gets the promotion's asset
event (read back from Airflow) as its parameters, since no scheduler runs here; under `make airflow` the scheduler
triggers it from the event itself.

    PYTHONPATH=plugins .venv/bin/python -m pony_airflow.demo [--home .pony]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _prepare_environment(home: Path) -> None:
    """PONY_* and AIRFLOW_* in os.environ (stage commands run as child processes and inherit them), then Airflow's
    metadata database migrated — all before Airflow is imported."""
    from pony_tasks.config import get_settings, load_settings
    from pony_tasks.db import connect, upgrade
    from pony_tasks.db.embedded import ensure_embedded_server
    from pony_tasks.orchestration.standalone import airflow_environment

    os.environ["PONY_HOME"] = str(home)
    settings = load_settings(home=home)
    if settings.database_url is None:
        ensure_embedded_server(settings.resolved_home)
    environment = airflow_environment(settings)
    environment["AIRFLOW_HOME"] = str(home / "airflow-demo")
    environment["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
    os.environ.update(environment)
    get_settings.cache_clear()
    with connect(settings, check_schema=False) as conn:
        upgrade(conn)
    Path(environment["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    sys.path.insert(0, str(ROOT / "plugins"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("PONY_HOME", ROOT / ".pony")))
    parser.add_argument("--from-export", action="store_true",
                        help="start e621 from its database export (the sample corpus written as e621's db_export "
                        "files, 30 days old) instead of paging its API from post 1; the scrape then continues "
                        "above the newest imported post")  # fmt: skip
    args = parser.parse_args()
    started = time.perf_counter()
    home = args.home.resolve()
    print(f"[setup]    PONY_HOME={home}; preparing the embedded PostgreSQL and Airflow's metadata …", flush=True)
    _prepare_environment(home)
    from pony_tasks.embed.models import DEMO_MODEL, save_random_model
    from pony_tasks.fakes.local_sites import as_environment, fake_site_overrides, running_fake_boorus

    weights = home / "models" / f"{DEMO_MODEL}-seed0.pt"
    if not weights.exists():
        save_random_model(weights)
    with running_fake_boorus() as servers:
        os.environ.update(as_environment(fake_site_overrides(servers)))
        os.environ.update({"PONY_EMBED_MODEL": DEMO_MODEL, "PONY_EMBED_PRETRAINED": str(weights)})
        from pony_tasks.config import get_settings

        get_settings.cache_clear()
        print(f"[fakes]    4 fake boorus on 127.0.0.1: {', '.join(f'{s} {v.base_url}' for s, v in servers.items())}")
        Demo(from_export=args.from_export).run()
    print(f"[done]     the pipeline ran through Airflow in {time.perf_counter() - started:.0f} s")


class Demo:
    def __init__(self, from_export: bool = False) -> None:
        from airflow.dag_processing.dagbag import DagBag

        self.from_export = from_export
        self.dagbag = DagBag(dag_folder=str(ROOT / "dags"))
        if self.dagbag.import_errors:
            raise SystemExit(f"DAG import errors: {self.dagbag.import_errors}")
        self.failed: list[str] = []

    def dag(self, dag_id: str, note: str = "", **kwargs) -> dict[str, str]:
        started = time.perf_counter()
        run = self.dagbag.dags[dag_id].test(**kwargs)
        states = {ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""): str(ti.state)
                  for ti in run.get_task_instances()}  # fmt: skip
        counts: dict[str, int] = {}
        for state in states.values():
            counts[state] = counts.get(state, 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        print(f"[airflow]  {dag_id:<24} {str(run.state):<8} {time.perf_counter() - started:5.1f} s  tasks: {summary}"
              + (f"  — {note}" if note else ""), flush=True)  # fmt: skip
        if str(run.state) != "success":
            self.failed.append(dag_id)
            raise SystemExit(f"{dag_id} did not succeed: {states}; see the task logs under $AIRFLOW_HOME/logs")
        return states

    def run(self) -> None:
        from pony_tasks.config import get_settings
        from pony_tasks.orchestration.stages import SITES
        from pony_tasks.orchestration.tasks import active_aesthetic_version

        settings = get_settings()
        if self.from_export:
            self._import_e621_export(settings)
        self.dag("booru_scrape", f"{len(SITES)} sites: {', '.join(SITES)}")
        self.dag("booru_score_refresh")
        self.dag("images_fetch")
        self.dag("scores_normalize")
        self.dag("embed_and_score", "new images embedded; scoring skips while no aesthetic model is active")
        self.dag("works_link", "images linked into works (the same picture across sites)")
        self.dag("style_clusters", "style clusters of the embeddings (ids kept across re-runs), activated: the "
                 "rating set covers every one", run_conf={"clusters": 16})  # fmt: skip
        self._rate(settings)
        if active_aesthetic_version() is None:
            self.dag("aesthetic_train", "approval given by the demo (a person clicks Approve in the UI)",
                     run_conf={"epochs": 150}, mark_success_pattern="approve")  # fmt: skip
        else:
            print(f"[airflow]  aesthetic_train          kept: version {active_aesthetic_version()} is already active")
        version = active_aesthetic_version()
        events = self._promotion_events()
        self.dag("captions_regenerate", f"for version(s) {events or [version]} from the promotion's asset event",
                 run_conf={"version_ids": events or [version]})  # fmt: skip
        self.dag("nightly_rescore")
        self._finetune(settings)
        self._clear_asset_queue()
        self._summary(settings, version)

    @staticmethod
    def _import_e621_export(settings) -> None:
        """e621's database export of the sample corpus as of 30 days before the fake's clock, imported as
        ``pony import e621-export`` does: the scrape that follows only pages the last 30 days."""
        from datetime import timedelta

        from pony_tasks.boorus.imports.e621_export import import_export
        from pony_tasks.fakes.corpus import SampleCorpus
        from pony_tasks.fakes.e621_export import write_e621_export

        corpus = SampleCorpus()
        directory = settings.resolved_home / "e621-export"
        files = write_e621_export(directory, corpus, corpus.reference_time - timedelta(days=30),
                                  base_url=settings.booru_base_urls["e621"])  # fmt: skip
        started = time.perf_counter()
        reports = import_export(files, settings=settings, show_progress=False)
        print(f"[import]   e621 from its database export ({directory}): "
              + "; ".join(r.summary() for r in reports) + f" — {time.perf_counter() - started:.1f} s", flush=True)

    @staticmethod
    def _clear_asset_queue() -> None:
        """The demo started every consumer of its asset events itself (dag.test); the events it left queued for
        them would otherwise start those DAGs again, all at once, the first time a scheduler runs (`make airflow`)."""
        from airflow.models.asset import AssetDagRunQueue
        from airflow.utils.session import create_session

        with create_session() as session:
            queued = session.query(AssetDagRunQueue).delete()
        if queued:
            print(f"[assets]   {queued} queued asset event(s) removed: the demo's own runs consumed them")

    def _finetune(self, settings) -> None:
        from pony_tasks.orchestration.standalone import TINY_FINETUNE, tiny_base_model

        conf = {"base_model": str(tiny_base_model(settings.resolved_home)), **TINY_FINETUNE, "min_band": 1,
                "min_new_images": 100}  # fmt: skip
        states = self.dag("finetune", "tiny random-init SD model; approval given by the demo", run_conf=conf,
                          mark_success_pattern="approve")  # fmt: skip
        if states.get("train") != "success":
            from pony_tasks.db import connect

            with connect(settings) as conn, conn.cursor() as cur:
                cur.execute("SELECT gate, detail FROM finetune_gate WHERE NOT passed ORDER BY decision_id DESC LIMIT 3")
                unmet = "; ".join(f"{gate}: {detail}" for gate, detail in cur.fetchall())
            print(f"[finetune] skipped by its gates ({unmet})")
            return
        from pony_tasks.db import connect

        with connect(settings) as conn, conn.cursor() as cur:
            cur.execute("""SELECT r.run_id, r.steps_done, r.metrics->>'last_loss', e.spearman, e.plot_key, e.results
                           FROM finetune_run r JOIN finetune_eval e USING (run_id) ORDER BY e.eval_id DESC LIMIT 1""")
            run_id, steps, loss, rho, plot, results = cur.fetchone()
        means = ", ".join(f"{r['label']} {r['mean']:.3f}" for r in results if r["label"] in
                          ("score_9", "score_5", "score_1", "v6 chain", "no tag"))  # fmt: skip
        print(f"[finetune] run {run_id}: {steps} LoRA steps, last loss {float(loss):.3f}; tag evaluation: {means}; "
              f"Spearman(tag level, score) = {rho if rho is None else round(rho, 3)} (random-init models: expect ~0; "
              f"real weights make this the number that says whether V6's flaw is gone); plot {plot}")  # fmt: skip

    def _rate(self, settings) -> None:
        from pony_tasks.demo import ensure_rating_set, import_synthetic_ratings

        imported = import_synthetic_ratings(settings, ensure_rating_set(settings, print))
        print(f"[ratings]  SYNTHETIC ratings stand in for people: {imported.summary()}")

    @staticmethod
    def _promotion_events() -> list[int]:
        from airflow.models.asset import AssetEvent, AssetModel
        from airflow.utils.session import create_session

        with create_session() as session:
            query = session.query(AssetEvent.extra).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            rows = query.filter(AssetModel.name == "aesthetic_model").order_by(AssetEvent.id.desc()).limit(1).all()
        return [int(extra["version_id"]) for (extra,) in rows if extra and "version_id" in extra]

    @staticmethod
    def _summary(settings, version: int | None) -> None:
        from pony_tasks.db import connect
        from pony_tasks.export.dataset import export_dataset
        from pony_tasks.storage import open_store
        from pony_tasks.works.members import works_among

        with connect(settings) as conn:
            with conn.cursor() as cur:
                cur.execute("""SELECT (SELECT count(*) FROM booru_post), (SELECT count(*) FROM image),
                                      (SELECT count(*) FROM image_embedding), (SELECT count(*) FROM aesthetic_score
                                       WHERE version_id = %s), (SELECT count(*) FROM active_caption),
                                      (SELECT count(*) FROM dq_result), (SELECT count(*) FROM dq_result
                                       WHERE blocking_failures > 0 OR warnings > 0)""", (version,))  # fmt: skip
                posts, images, embeddings, scores, captions, checks, flagged = cur.fetchone()
                cur.execute("SELECT sha256 FROM image")
                works = works_among(conn, [row[0] for row in cur.fetchall()])
                cur.execute("SELECT band, text FROM active_caption ORDER BY band DESC, sha256 LIMIT 1")
                band, text = cur.fetchone()
                cur.execute("""SELECT v.version_id, v.clusters, (SELECT count(*) FROM active_caption
                                                                  WHERE style_cluster IS NOT NULL)
                               FROM style_clustering v WHERE v.status = 'active'""")  # fmt: skip
                styles = cur.fetchone()
            exported = export_dataset(conn, open_store(settings=settings), "demo-kohya", "kohya", min_band=7)
        print(f"[summary]  {posts} posts, {images} images, {embeddings} embeddings, {scores} scores by aesthetic "
              f"version {version}, {captions} captions in the active set (one per work: {works} works)")  # fmt: skip
        print(f"[summary]  {checks} data-quality checks stored ({flagged} with warnings or failures: "
              "`pony quality results`)")  # fmt: skip
        print(f"[summary]  e.g. band {band}: {text[:140]}")
        if styles:
            print(f"[styles]   clustering v{styles[0]} active: {styles[1]} clusters; {styles[2]} of {captions} "
                  "captions carry a style_cluster_N tag (`pony styles sheets`: what each one looks like)")  # fmt: skip
        print(f"[export]   band ≥ 7: {exported.summary()}")


if __name__ == "__main__":
    main()
