"""``pony demo``: every pipeline stage that exists so far, end to end on the embedded defaults.

1. the database: embedded PostgreSQL (or PONY_DATABASE_URL), migrated;
2. storage: an object round-tripped through the configured store;
3. ingestion: four fake boorus on 127.0.0.1 serving the bundled sample corpus, scraped incrementally, then a
   score-refresh pass;
4. images: downloaded, verified, decoded and stored content-addressed; the corpus's deliberately bad files end up
   in quarantine;
5. the unified post export written to PONY_HOME/exports/posts.jsonl;
6. normalisation: a versioned run and its report (text, PNG plots under PONY_HOME/reports/normalize/run-N);
7. a rating set of 1,000 images spread over site, rating, score decile and year;
8. CLIP embeddings with a seeded random-init open_clip model (loaded through ``pretrained=PATH``), SYNTHETIC ratings
   of the rating set derived from the corpus's planted quality, an aesthetic model trained, promoted and scoring
   every image.

The scrapes replay a year of history against the fakes (their clocks and the snapshot times move together), so
posts gather score snapshots at different ages, as they would on a schedule.

Re-running it is safe: nothing is scraped or stored twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from pony_tasks.boorus.engine import ScrapeMode, ScrapeReport, scrape
from pony_tasks.boorus.export import export_jsonl
from pony_tasks.config import Settings
from pony_tasks.db import connect, database_url, migration_status, upgrade
from pony_tasks.images.fetch import fetch_images
from pony_tasks.runs import recorded_run
from pony_tasks.storage import open_store

DEMO_RATING_SET_SIZE = 1000
# Scrapes replayed at these many days before the corpus's reference date, so posts gather a score history.
HISTORY_DAYS_BEFORE_REFERENCE = (300, 240, 180, 120, 90, 60, 30, 0)


@dataclass
class DemoReport:
    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.lines.append(line)


def run_demo(settings: Settings, echo: Callable[[str], None] = print, show_progress: bool | None = None) -> DemoReport:
    report = DemoReport()

    def step(text: str) -> None:
        report.add(text)
        echo(text)

    started = time.perf_counter()
    url = database_url(settings)
    where = "external server" if settings.database_url else f"embedded PostgreSQL at {settings.embedded_pgdata}"
    step(f"[db]       using {where} ({time.perf_counter() - started:.1f} s)")

    with connect(url) as conn:
        applied = upgrade(conn)
        states = migration_status(conn)
        step(
            f"[db]       migrations: {len(applied)} applied now, "
            f"{sum(s.applied_at is not None for s in states)}/{len(states)} in place"
        )
        with recorded_run(conn, "demo", {"storage_url": settings.effective_storage_url}) as run:
            store = open_store(settings=settings)
            payload = os.urandom(256 * 1024)
            key = f"demo/roundtrip-{run.run_id}.bin"
            store.put_bytes(key, payload)
            same = hashlib.sha256(store.get_bytes(key)).digest() == hashlib.sha256(payload).digest()
            store.delete(key)
            if not same:
                raise RuntimeError(f"object {key} came back different from what was stored in {store.url}")
            step(f"[storage]  round-tripped 256 KiB through {store.url} (sha256 verified, then deleted)")
            run.summary = {"roundtrip_bytes": len(payload)}
        step(f"[runs]     recorded as pipeline_run {run.run_id}")

    _ingest(settings, step, show_progress)
    _embed_and_rate(settings, step, show_progress, ensure_rating_set(settings, step))
    step(f"[done]     demo finished in {time.perf_counter() - started:.1f} s")
    return report


def _ingest(settings: Settings, step: Callable[[str], None], show_progress: bool | None) -> None:
    from pony_tasks.fakes.local_sites import fake_site_overrides, running_fake_boorus

    with running_fake_boorus() as servers:
        overrides = fake_site_overrides(servers)
        overrides["image_max_bytes"] = min(settings.image_max_bytes, overrides["image_max_bytes"])
        demo_settings = settings.replace(**overrides)
        corpus = servers["e621"].corpus
        clocks = [corpus.reference_time - timedelta(days=days) for days in HISTORY_DAYS_BEFORE_REFERENCE]
        step(
            f"[scrape]   4 fake boorus on 127.0.0.1 serving the sample corpus ({len(corpus.posts)} posts); "
            f"history replayed: {len(clocks)} scrapes between {clocks[0]:%Y-%m-%d} and {clocks[-1]:%Y-%m-%d} "
            "(new posts, then a score refresh, at each simulated date)"
        )
        for site, server in servers.items():
            total = ScrapeReport(site=site, mode="new+refresh")
            refreshed_pages = 0
            with connect(demo_settings) as conn, conn.cursor() as cur:
                cur.execute("SELECT max(observed_at) FROM booru_score_snapshot WHERE site = %s", (site,))
                replayed_until = cur.fetchone()[0]
            for clock in clocks:
                if replayed_until is not None and clock + timedelta(hours=1) <= replayed_until:
                    continue  # a re-run: this date was replayed already (time only moves forward on a real site)
                server.now = clock
                for mode, at in ((ScrapeMode.new, clock), (ScrapeMode.refresh, clock + timedelta(hours=1))):
                    report = scrape(site, mode, settings=demo_settings, now=at, show_progress=show_progress)
                    refreshed_pages += report.pages if mode is ScrapeMode.refresh else 0
                    total.add(report)
            step(f"[scrape]   {total.summary()} ({refreshed_pages} pages were score refreshes)")
        fetched = fetch_images(settings=demo_settings, show_progress=show_progress)
        step(f"[images]   {fetched.summary()}")
        _works(settings, step, corpus)
    exports = settings.resolved_home / "exports"
    exports.mkdir(parents=True, exist_ok=True)
    target = exports / "posts.jsonl"
    with connect(settings) as conn, open(target.with_suffix(".partial"), "w", encoding="utf-8") as handle:
        count = export_jsonl(conn, handle)
    target.with_suffix(".partial").replace(target)
    step(f"[export]   {count} unified posts written to {target}")
    _normalize(settings, step)


def _works(settings: Settings, step: Callable[[str], None], corpus) -> None:  # noqa: ANN001 - SampleCorpus
    """Images linked into works, scored against the corpus's planted re-posts and hard negatives."""
    from pony_tasks.works.evaluate import score_works
    from pony_tasks.works.link import run_works

    step(f"[works]    {run_works(settings).summary()}")
    with connect(settings) as conn:
        score = score_works(conn, [((p.site, p.post_id), p.copy_of, p.alteration) for p in corpus.copies()])
    step(f"[works]    {score.describe()}")


def _normalize(settings: Settings, step: Callable[[str], None]) -> None:
    from pony_tasks.fakes.corpus import DEFAULT_REFERENCE_TIME
    from pony_tasks.normalize.report import build_report
    from pony_tasks.normalize.run import normalize

    result = normalize(settings, as_of=DEFAULT_REFERENCE_TIME)
    step(
        f"[normalize] run {result.run_id}: {result.matured} matured posts in {result.cohorts} cohorts, "
        f"{result.provisional} provisional, excluded {result.excluded or 'none'}"
    )
    output = settings.resolved_home / "reports" / "normalize" / f"run-{result.run_id}"
    with connect(settings) as conn:
        report = build_report(conn, output, result.run_id)
    store = open_store(settings=settings)
    for path in report.files:
        store.put_file(f"reports/normalize/run-{result.run_id}/{path.name}", path)
    for line in report.text.splitlines():
        step(f"[report]   {line}")
    step(f"[report]   plots and text in {output} (and reports/normalize/run-{result.run_id}/ in the object store)")


def ensure_rating_set(settings: Settings, step: Callable[[str], None]) -> int:
    """The demo's rating set: sampled on the first run, reused afterwards (so re-runs change nothing)."""
    from pony_tasks.ratings.sample import sample_rating_set

    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT min(set_id), (SELECT size FROM rating_set ORDER BY set_id LIMIT 1) FROM rating_set")
        existing, size = cur.fetchone()
    if existing is not None:
        step(f"[ratings]  rating set {existing} ({size} images) already exists; reused")
        return existing
    picked = sample_rating_set(DEMO_RATING_SET_SIZE, settings=settings)
    styles = (f"; every one of {len(picked.by_cluster)} style clusters covered "
              f"({min(picked.by_cluster.values())}–{max(picked.by_cluster.values())} images each)"
              if picked.by_cluster else "")  # fmt: skip
    step(
        f"[ratings]  rating set {picked.set_id}: {picked.size} images for humans to rate, from {picked.strata} "
        f"strata (site × rating × score decile × year{' × style cluster' if picked.by_cluster else ''}); by site "
        f"{picked.by_site}; by decile {picked.by_decile}{styles}"
    )
    return picked.set_id


def import_synthetic_ratings(settings: Settings, set_id: int):  # noqa: ANN201 - ratings.importing.ImportResult
    """Stand-in for people: two simulated raters score the rating set from the corpus's planted quality; written to
    PONY_HOME/exports/synthetic-ratings.csv and imported like any ratings file (re-importing adds nothing)."""
    from pony_tasks.fakes.corpus import SampleCorpus
    from pony_tasks.fakes.synthetic_ratings import write_synthetic_ratings
    from pony_tasks.ratings.importing import import_ratings

    ratings_file = settings.resolved_home / "exports" / "synthetic-ratings.csv"
    ratings_file.parent.mkdir(parents=True, exist_ok=True)
    with connect(settings) as conn:
        write_synthetic_ratings(conn, SampleCorpus(), ratings_file, set_id=set_id)
    return import_ratings(ratings_file, settings=settings, source="synthetic (planted quality)")


def _embed_and_rate(
    settings: Settings, step: Callable[[str], None], show_progress: bool | None, rating_set_id: int
) -> None:
    from pony_tasks.aesthetic.registry import PromotionRefused, get_version, promote
    from pony_tasks.aesthetic.score import score_all
    from pony_tasks.aesthetic.train import train_aesthetic
    from pony_tasks.embed.models import DEMO_MODEL, save_random_model
    from pony_tasks.embed.run import embed_images
    from pony_tasks.ratings.agreement import rater_agreement

    weights = settings.resolved_home / "models" / f"{DEMO_MODEL}-seed0.pt"
    if not weights.exists():
        save_random_model(weights)
    report = embed_images(DEMO_MODEL, str(weights), settings=settings, device="auto", batch_size=128,
                          shard_size=1000, workers=2, show_progress=show_progress)  # fmt: skip
    step(f"[embed]    {DEMO_MODEL} (seeded random init, loaded via pretrained={weights.name}): {report.summary()}")
    imported = import_synthetic_ratings(settings, rating_set_id)
    step(f"[ratings]  SYNTHETIC ratings (from the corpus's planted quality, not people): {imported.summary()}")
    with connect(settings) as conn:
        step(f"[ratings]  {rater_agreement(conn).describe()}")
    trained = train_aesthetic(report.model_id, settings=settings)
    m = trained.metrics
    step(
        f"[aesthetic] version {trained.version_id} (MLP, LAION layout) on SYNTHETIC ratings: held-out "
        f"{trained.heldout_images} images — Spearman {m['spearman']:.3f}, pairwise accuracy "
        f"{m['pairwise_accuracy']:.3f}, MAE {m['mae']:.3f} (random-init CLIP features carry little of the planted "
        "quality; real weights are needed for real numbers)"
    )
    store = open_store(settings=settings)
    with connect(settings) as conn:
        try:
            if get_version(conn, trained.version_id).status != "active":
                promote(conn, store, trained.version_id)
                step(f"[aesthetic] version {trained.version_id} promoted to active")
        except PromotionRefused as exc:
            step(f"[aesthetic] not promoted: {exc}")
    step(f"[aesthetic] {score_all(settings=settings).summary()}")
    _captions(settings, step)


def _captions(settings: Settings, step: Callable[[str], None]) -> None:
    from pony_tasks.captions.sets import active_set, regenerate
    from pony_tasks.export.dataset import export_dataset

    style_version = _styles(settings, step)
    with connect(settings) as conn:
        with conn.cursor() as cur:
            cur.execute(
                """SELECT c.set_id FROM caption_set c JOIN aesthetic_model m ON m.version_id = c.aesthetic_version_id
                   WHERE m.status = 'active' AND c.scheme = 'v7' AND c.style_version IS NOT DISTINCT FROM %s
                   ORDER BY c.set_id DESC LIMIT 1""",
                (style_version if settings.caption_style_tags != "off" else None,),
            )
            existing = cur.fetchone()
        if existing and active_set(conn) == existing[0]:
            step(f"[captions] caption set {existing[0]} already matches the active aesthetic version; kept")
        else:
            result = regenerate(conn, scheme="v7", style_tags=settings.caption_style_tags)
            with conn.cursor() as cur:
                cur.execute("SELECT band, text FROM active_caption ORDER BY band DESC, sha256 LIMIT 1")
                band, text = cur.fetchone()
            step(
                f"[captions] caption set {result.set_id} (scheme v7) active: {result.captions} captions; "
                f"e.g. band {band}: {text[:150]}"
            )
        exported = export_dataset(conn, open_store(settings=settings), "demo-kohya", "kohya", min_band=7)
    step(f"[export]   band ≥ 7: {exported.summary()}")
    step(f"[works]    {_one_entry_per_work(settings, 'demo-kohya')}")


DEMO_STYLE_CLUSTERS = 16  # ~120 images per cluster in the sample corpus


def _styles(settings: Settings, step: Callable[[str], None]) -> int:
    """Style clusters of the demo's embeddings, activated (re-running finds the same version)."""
    from pony_tasks.styles.registry import activate, run_clustering
    from pony_tasks.styles.sheet import cluster_sheets

    store = open_store(settings=settings)
    with connect(settings) as conn:
        version = run_clustering(conn, store, clusters=DEMO_STYLE_CLUSTERS)
        if version.status != "active":
            version = activate(conn, version.version_id)
            keys = cluster_sheets(conn, store, version.version_id)
            step(f"[styles]   clustering v{version.version_id} active: {version.clusters} clusters of "
                 f"{version.images} images; contact sheets {keys[0].rsplit('/', 1)[0]}/")  # fmt: skip
        else:
            step(f"[styles]   clustering v{version.version_id} already active; kept")
    return version.version_id


def _one_entry_per_work(settings: Settings, export_name: str) -> str:
    """Entries and the works they come from, for the rating set, the active captions and the export: equal counts
    say that no two entries show the same picture."""
    from pony_tasks.works.members import works_among

    store = open_store(settings=settings)
    exported = json.loads(store.get_bytes(f"exports/{export_name}/manifest.json"))
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT sha256 FROM rating_set_item WHERE set_id = (SELECT max(set_id) FROM rating_set)")
        rated = [row[0] for row in cur.fetchall()]
        cur.execute("SELECT sha256 FROM active_caption")
        captioned = [row[0] for row in cur.fetchall()]
        parts = [f"{label} {len(shas)} entries from {works_among(conn, shas)} works"
                 for label, shas in (("rating set", rated), ("captions", captioned))]  # fmt: skip
    parts.append(f"export {exported['samples']} samples from {len(set(exported['works']))} works")
    return "one entry per work: " + "; ".join(parts)
