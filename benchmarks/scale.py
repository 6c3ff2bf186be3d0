"""The real-size benchmark (issue 28): a synthetic corpus of N posts, then every stage after download, each measured.

The corpus is generated directly in PostgreSQL and the object store (no HTTP), in the sites' real proportions
(Danbooru 9 : e621 5 : Derpibooru 3.5 : Gelbooru 11): 20–40 tags a post drawn Zipf-like from a 500,000-tag
vocabulary, artist and character groups, ten years of uploads, two score snapshots (at three days for a tenth, and
now), 2 % deleted posts, cross-site re-posts (40 % of Gelbooru posts re-post a Danbooru picture, 3 % of the others
re-post one of another site) — each re-post its own file, with its own pHash views a few bits from the source's and
an embedding near-identical to the source's —, 768-d float16 embeddings in shards of 10,000, 20,000 human ratings,
and 2,000 small stand-in image files that every image row points at (exports need bytes, not distinct ones).

Each stage runs the way the DAGs run it: as its ``pony`` command, in a process of its own, on the same settings.
For each stage it prints the wall time, the peak memory (RSS of the stage's processes plus the private memory of
every PostgreSQL process, sampled every 0.2 s) and the PostgreSQL temp-file bytes, and as its last line one JSON
object ``{"posts": N, "stages": [{"stage": …, "seconds": …, "peak_rss_mib": …, "pg_temp_mib": …}, …]}``.

    .venv/bin/python benchmarks/scale.py --posts 1000000 [--stages normalize,captions_first] [--keep DIR]

``--keep DIR`` keeps the corpus (database and objects) in DIR and reuses it when DIR already holds one of the same
size, so one stage can be worked on without regenerating it, and each stage's whole output in
``DIR/stage-logs/STAGE.log`` (the works phases' breakdown). Stages that change the corpus (works, captions) leave
their results behind: run them again on a kept corpus and they measure the re-run.

``--reclaim-disk`` drops what no later stage of the run reads, as soon as its last reader is done (``RECLAIMED``:
the embedding shards and rows, the planted re-posts' table, caption sets other than the newest): a 10M corpus
(~49 GiB) and its stages' tables and exports do not fit in ~80 GB otherwise. What was dropped is written in
``DIR/corpus.json``, and a later run on that corpus refuses the stages that would read it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
PONY = str(Path(sys.executable).parent / "pony")
SITES = {"danbooru": 9.0, "e621": 5.0, "derpibooru": 3.5, "gelbooru": 11.0}  # millions of posts; a source first
DIMENSION = 768
SHARD_ROWS = 10_000
RATINGS = 20_000
STAND_INS = 2_000

# Every stage: (name, the pony command's arguments; {names} are filled by prepare()). The order is the
# pipeline's: each needs what the ones before it made.
STAGES: list[tuple[str, list[str]]] = [
    ("normalize", ["normalize", "run", "--as-of", "2026-11-01"]),
    ("ratings_sample", ["ratings", "sample", "--n", "2000", "--seed", "1"]),
    ("aesthetic_train", ["aesthetic", "train"]),  # the DAG's defaults
    ("aesthetic_promote", ["aesthetic", "promote", "{candidate}"]),
    ("aesthetic_score", ["aesthetic", "score"]),
    ("works_full", ["works", "run"]),
    ("works_incremental", ["works", "run", "--only-new"]),
    # works_build's way: a plan, its parts one after another (one pod each in the DAG), then the link; each measured
    ("works_parts", ["works", "plan", "scale", "--parts", "4", "--all-images"]),
    ("styles_cluster", ["styles", "run"]),
    ("styles_activate", ["styles", "activate", "{style_version}"]),
    ("styles_assign", ["styles", "assign"]),
    ("captions_first", ["captions", "regenerate"]),
    ("captions_regenerate", ["captions", "regenerate", "--force"]),
    ("export_kohya", ["export", "dataset", "--format", "kohya", "--name", "scale-kohya", "--min-band", "7"]),
    ("export_webdataset", ["export", "dataset", "--format", "webdataset", "--name", "scale-wds", "--min-band", "7"]),
    ("export_parquet", ["export", "dataset", "--format", "parquet", "--name", "scale-parquet", "--min-band", "7"]),
    ("quality_posts", ["quality", "check", "scraped_posts", "--site", "gelbooru", "--since-hours", "100000"]),
    ("quality_images", ["quality", "check", "images", "--since-hours", "100000"]),
    ("quality_embeddings", ["quality", "check", "embeddings", "--model-id", "{model}"]),
    ("quality_scores", ["quality", "check", "aesthetic_scores", "--version", "{version}"]),
    ("quality_captions", ["quality", "check", "captions", "--set", "{caption_set}"]),
    ("quality_works", ["quality", "check", "works"]),
]


CAPTION_STAGES = {"captions_first", "captions_regenerate"}
# What --reclaim-disk drops, and the stages that read it: dropped once no stage of the run still to come reads it
# (the caption sets other than the newest: after each caption stage; the later stages read the newest).
RECLAIMED: dict[str, set[str]] = {  # fmt: skip
    "embeddings": {"aesthetic_train", "aesthetic_promote", "aesthetic_score", "works_full", "works_incremental",
                   "works_parts", "styles_cluster", "styles_assign", "quality_embeddings"},
    # the planted re-posts the works stages are checked against
    "bench_image": {"works_full", "works_incremental", "works_parts"},
    "caption_content": CAPTION_STAGES,  # the tag-content cache only building caption sets reads
}


def reclaim(settings, what: str) -> None:
    """Drop ``what`` (a RECLAIMED name or ``old caption sets``) from the corpus; prints what it freed."""
    from pony_tasks.db import connect

    started = time.perf_counter()
    with connect(settings) as conn, conn.cursor() as cur:
        if what == "embeddings":  # the rows first (they reference the shards), then the shard files
            cur.execute("TRUNCATE image_embedding, embedding_shard")
            conn.commit()
            shutil.rmtree(settings.home / "objects" / "embeddings", ignore_errors=True)
        elif what == "bench_image":
            cur.execute("DROP TABLE IF EXISTS bench_image")
        elif what == "caption_content":
            cur.execute("TRUNCATE caption_content")
        elif what == "old caption sets":  # their partitions: the sets' rows stay (the switch history names them)
            cur.execute("""SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                           WHERE i.inhparent = 'caption'::regclass AND c.relname <> (
                               SELECT 'caption_of_set_' || max(set_id) FROM caption_set)""")  # fmt: skip
            for (partition,) in cur.fetchall():
                cur.execute(f'DROP TABLE "{partition}"')
        else:
            raise ValueError(f"nothing called {what!r} to reclaim")
    free = shutil.disk_usage(settings.home).free / 2**30
    print(f"{'':24s}reclaimed {what} ({time.perf_counter() - started:.0f} s): {free:.1f} GiB free", flush=True)


def reclaim_unread(later: list[str], settings, marker: Path, *, after: str | None = None) -> None:
    """With --reclaim-disk: drop what none of the run's stages still to come (``later``) reads — before the first
    stage, then after each (``after``: the caption stages also leave only their newest set) — and note it in the
    corpus marker."""
    recorded = json.loads(marker.read_text())
    gone = set(recorded.get("reclaimed", []))
    dropped = [what for what, readers in RECLAIMED.items() if what not in gone and not readers & set(later)]
    for what in dropped + (["old caption sets"] if after in CAPTION_STAGES else []):
        reclaim(settings, what)
    if dropped:
        recorded["reclaimed"] = sorted(gone | set(dropped))
        marker.write_text(json.dumps(recorded))


def _pod_requests() -> dict:
    """stage → the StageCommand its DAG runs (pony_tasks.orchestration.stages), for the memory it asks a pod for."""
    from pony_tasks.orchestration import stages

    return {
        "normalize": stages.normalize_scores,
        "aesthetic_train": stages.train_aesthetic,
        "aesthetic_score": stages.score_images,
        "works_full": stages.link_works,
        "works_incremental": stages.link_works,
        "works_parts": lambda: stages.plan_works("scale", 4),
        "works_parts_link": lambda: stages.link_works("scale"),
        "works_part": lambda: stages.works_part("scale", 0),
        "styles_cluster": lambda: stages.cluster_styles(32, 0),
        "styles_assign": stages.assign_styles,
        "captions_first": lambda: stages.regenerate_captions(1),
        "captions_regenerate": lambda: stages.regenerate_captions(1),
        "export_kohya": lambda: stages.export_dataset("scale", 7),
    }


POD_MEMORY = _pod_requests()


def _mib(quantity: str) -> int:
    """A Kubernetes memory quantity (4Gi, 512Mi) in MiB."""
    units = {"Gi": 1024, "Mi": 1, "G": 1000**3 / 2**20, "M": 1000**2 / 2**20}
    for unit, factor in units.items():
        if quantity.endswith(unit):
            return int(float(quantity[: -len(unit)]) * factor)
    return int(int(quantity) / 2**20)


def site_counts(posts: int) -> dict[str, int]:
    total = sum(SITES.values())
    counts = {site: int(posts * share / total) for site, share in SITES.items()}
    counts["gelbooru"] += posts - sum(counts.values())
    return counts


def generate_posts(cur, counts: dict[str, int]) -> None:
    """Posts, snapshots, images (with their signatures) and post → image links, inside PostgreSQL."""
    cur.execute("SET synchronous_commit = off")
    offset = 0
    for site, count in counts.items():
        # the picture each post shows: its own (source = itself), or a re-post of an earlier site's picture
        share, source_site = (0.40, "danbooru") if site == "gelbooru" else (0.03 if offset else 0.0, None)
        cur.execute(
            """INSERT INTO bench_image (j, site, post_id, source)
               SELECT %(offset)s + i, %(site)s, i,
                      CASE WHEN random() < %(share)s
                           THEN CASE WHEN %(source_site)s::text IS NOT NULL
                                     THEN (SELECT o.j FROM bench_site o WHERE o.site = %(source_site)s)
                                          + 1 + floor(random() * (SELECT o.n FROM bench_site o
                                                                  WHERE o.site = %(source_site)s))::bigint
                                     ELSE 1 + floor(random() * greatest(%(offset)s, 1))::bigint END
                           ELSE %(offset)s + i END
               FROM generate_series(1, %(count)s) i""",
            {"offset": offset, "site": site, "count": count, "share": share, "source_site": source_site},
        )  # fmt: skip
        while True:  # a re-post of a re-post shows the first picture
            cur.execute("""UPDATE bench_image b SET source = s.source FROM bench_image s
                           WHERE b.site = %s AND b.source = s.j AND s.source <> s.j""", (site,))  # fmt: skip
            if not cur.rowcount:
                break
        cur.execute("INSERT INTO bench_site VALUES (%s, %s, %s)", (site, offset, count))
        offset += count
        # tags Zipf-like (rank = 500000^U), 20–40 a post; the artist is the picture's (a re-post credits the same
        # artist); Gelbooru's API gives no tag groups: its artist is one of its tags
        cur.execute(
            """INSERT INTO booru_post (site, post_id, created_at, rating, site_rating, tags, tag_groups, score,
                                       up_votes, down_votes, favorites, deleted, width, height, file_ext)
               SELECT %(site)s, post_id,
                      timestamptz '2026-11-01' - make_interval(secs => 3650 * 86400 * random()),
                      (ARRAY['general','sensitive','questionable','explicit'])[1 + (post_id * 7919) %% 4], 'x',
                      ARRAY(SELECT DISTINCT 'tag_' || floor(exp(random() * ln(500000)))::int
                            FROM generate_series(1, 20 + (post_id %% 21)) k WHERE post_id > 0)
                      || CASE WHEN %(site)s = 'gelbooru' THEN ARRAY[artist] ELSE '{}' END,
                      CASE WHEN %(site)s = 'gelbooru' THEN '{}'::jsonb
                           ELSE jsonb_build_object('artist', jsonb_build_array(artist),
                                                   'character', jsonb_build_array('character_' || (source %% 20000)))
                      END,
                      up - down, up, down, (up * 0.7)::int, random() < 0.02, 512, 512, 'png'
               FROM (SELECT post_id, source, floor(exp(random() * ln(3000)))::int AS up,
                            floor(random() * 20)::int AS down,
                            'artist_' || floor(exp((abs(hashtext('a' || source)) / 2147483648.0) * ln(60000)))::int
                                AS artist
                     FROM bench_image WHERE site = %(site)s) g""",
            {"site": site},
        )
        cur.execute(
            """INSERT INTO booru_score_snapshot (site, post_id, observed_at, score, up_votes, down_votes, favorites)
               SELECT site, post_id, timestamptz '2026-11-01', score, up_votes, down_votes, favorites
               FROM booru_post WHERE site = %(site)s
               UNION ALL
               SELECT site, post_id, created_at + interval '3 days', score / 3, up_votes / 3, down_votes / 3,
                      favorites / 3
               FROM booru_post WHERE site = %(site)s AND post_id %% 10 = 0
                 AND created_at < timestamptz '2026-10-20'""",
            {"site": site},
        )


def generate_images(cur) -> None:
    """Image rows: a source picture's signatures drawn at random, a re-post's the same with 0–6 pHash bits flipped."""
    cur.execute(
        """CREATE TEMPORARY TABLE bench_signature AS
           SELECT j, ('x' || substr(md5('p' || j), 1, 16))::bit(64)::bigint AS phash,
                  decode(md5('c' || j) || md5('d' || j) || md5('e' || j), 'hex') AS thumb,
                  decode(repeat(md5('f' || j) || md5('g' || j), 8), 'hex') AS detail
           FROM bench_image WHERE source = j"""
    )
    cur.execute("CREATE INDEX ON bench_signature (j)")
    cur.execute(
        """INSERT INTO image (sha256, storage_key, byte_size, width, height, format, phash, colour_thumb, detail,
                              inner_phash, inner_colour_thumb, inner_detail, crop_phash, crop_colour_thumb,
                              crop_detail)
           SELECT sha, 'bench/' || (b.j %% %(stand_ins)s) || '.png', 20000, 512, 512, 'PNG', ph, s.thumb, s.detail,
                  ph, s.thumb, s.detail, ARRAY[ph # 3, ph # 12], ARRAY[s.thumb, s.thumb], ARRAY[s.detail, s.detail]
           FROM (SELECT b.*,
                        floor(random() * 7)::int AS flips FROM bench_image b) b
           JOIN bench_signature s ON s.j = b.source
           CROSS JOIN LATERAL (SELECT CASE WHEN b.source = b.j THEN s.phash ELSE s.phash # (
                   SELECT coalesce(bit_or(1::bigint << bit), 0)
                   FROM (SELECT floor(random() * 63)::int AS bit FROM generate_series(1, b.flips) WHERE b.j > 0) f)
               END AS ph) x""",
        {"stand_ins": STAND_INS},
    )
    cur.execute(
        """INSERT INTO booru_post_image (site, post_id, sha256)
           SELECT site, post_id, sha FROM bench_image"""
    )
    cur.execute("CREATE INDEX ON bench_image (sha)")


def vectors(numbers: np.ndarray, topics: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """A picture's embedding from its number alone (a topic centroid plus its own 64-d code through a fixed basis):
    the same number gives the same vector in any shard, so a re-post can be near its source wherever it lies."""
    mixed = (numbers.astype(np.uint64)[:, None] * np.uint64(0x9E3779B97F4A7C15)
             + np.arange(64, dtype=np.uint64)[None, :] * np.uint64(0xBF58476D1CE4E5B9))  # fmt: skip
    mixed ^= mixed >> np.uint64(31)
    mixed *= np.uint64(0x94D049BB133111EB)
    mixed ^= mixed >> np.uint64(29)
    code = (mixed >> np.uint64(11)).astype(np.float64) / float(1 << 53) - 0.5
    vector = topics[numbers % len(topics)] * 0.6 + code @ basis
    return vector


def generate_embeddings(conn, store, progress: bool) -> int:
    """A 768-d embedding of every image, in shards of SHARD_ROWS written through the embedder's own shard writer."""
    from pony_tasks.embed.run import _write_shard

    rng = np.random.default_rng(28)
    topics = rng.normal(size=(400, DIMENSION)) / np.sqrt(DIMENSION)
    basis = rng.normal(size=(64, DIMENSION)) * (np.sqrt(12 / 64) / np.sqrt(DIMENSION))
    with conn.cursor() as cur:
        cur.execute("INSERT INTO embedding_model (name, pretrained, dimension, image_size) "
                    "VALUES ('ViT-L-14', 'openai', %s, 224) RETURNING model_id", (DIMENSION,))  # fmt: skip
        model_id = cur.fetchone()[0]
    conn.commit()
    reader = conn.cursor(name="bench_images", withhold=True)  # server-side, across the shard commits
    reader.itersize = SHARD_ROWS
    reader.execute("SELECT source, sha FROM bench_image ORDER BY j")
    noise = np.random.default_rng(29)
    shards = 0
    while rows := reader.fetchmany(SHARD_ROWS):
        vector = vectors(np.array([source for source, _ in rows], dtype=np.int64), topics, basis)
        vector += noise.normal(size=vector.shape) * (0.02 / np.sqrt(DIMENSION))
        vector /= np.linalg.norm(vector, axis=1, keepdims=True)
        ids = [sha for _, sha in rows]
        order = np.argsort(ids)  # the embedder writes a shard in sha order
        _write_shard(store, conn, model_id, "ViT-L-14", [ids[i] for i in order], vector[order].astype(np.float16),
                     [])  # fmt: skip
        shards += 1
        if progress and shards % 20 == 0:
            print(f"  {shards * SHARD_ROWS:,} embeddings", flush=True)
    reader.close()
    conn.commit()
    return model_id


def generate_ratings(cur) -> None:
    """RATINGS human ratings by five raters, 1–5, on random images (the rating set's size at the seed's scale)."""
    cur.execute(
        """INSERT INTO human_rating (sha256, rating, rater, rated_at, source)
           SELECT sha, 1 + (abs(hashtext(j::text)) %% 5),
                  'rater_' || (n %% 5), timestamptz '2026-10-01' + make_interval(secs => n), 'bench'
           FROM (SELECT j, sha, row_number() OVER () AS n FROM bench_image ORDER BY random() LIMIT %s) r""",
        (RATINGS,),
    )


def stand_in_files(store) -> None:
    from PIL import Image

    ramp = np.linspace(0, 1, 64)
    for number in range(STAND_INS):  # small smooth pictures (~1 KB): the exports' bytes stay modest at 10M posts
        colour = np.array([number % 256, (number * 7) % 256, (number * 13) % 256], dtype=np.float64)
        pixels = ramp[:, None, None] * colour[None, None, :] + ramp[None, :, None] * (255 - colour)[None, None, :] / 2
        picture = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        store.put_bytes(f"bench/{number}.png", buffer.getvalue())


def generate(settings, posts: int) -> None:
    from pony_tasks.db import connect, upgrade
    from pony_tasks.storage import open_store

    store = open_store(settings=settings)
    counts = site_counts(posts)
    steps = []
    with connect(settings, check_schema=False) as conn:
        upgrade(conn)
    with connect(settings) as conn:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE bench_site (site text, j bigint, n bigint)")
            cur.execute("CREATE TABLE bench_image (j bigint PRIMARY KEY, site text, post_id bigint, source bigint, "
                        "sha text GENERATED ALWAYS AS (md5('i' || j) || md5('k' || j)) STORED)")
        for label, step in (("posts, snapshots", lambda cur: generate_posts(cur, counts)),
                            ("images, signatures", generate_images), ("ratings", generate_ratings)):  # fmt: skip
            started = time.perf_counter()
            with conn.cursor() as cur:
                step(cur)
            conn.commit()
            steps.append(f"{label} {time.perf_counter() - started:.0f} s")
            print(f"  {steps[-1]}", flush=True)
        started = time.perf_counter()
        generate_embeddings(conn, store, progress=True)
        print(f"  embeddings {time.perf_counter() - started:.0f} s", flush=True)
    stand_in_files(store)
    with connect(settings, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("VACUUM (ANALYZE)")
        cur.execute("CHECKPOINT")


class PeakMemory:
    """Peak of (RSS of a process tree) + (RSS − shared of every PostgreSQL process) + the largest shared part once,
    sampled every 0.2 s while the stage runs."""

    def __init__(self, root_pid: int, postmaster_pid: int | None):
        import psutil

        self.psutil = psutil
        self.root = psutil.Process(root_pid)
        self.postmaster = psutil.Process(postmaster_pid) if postmaster_pid else None
        self.peak = 0
        self.stage_peak = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _tree(self, process) -> list:
        try:
            return [process, *process.children(recursive=True)]
        except self.psutil.Error:
            return []

    def _sample(self) -> int:
        total = 0
        for process in self._tree(self.root):
            try:
                total += process.memory_info().rss
            except self.psutil.Error:
                pass
        self.stage_peak = max(self.stage_peak, total)  # what the stage's pod holds (PostgreSQL runs elsewhere)
        if self.postmaster is not None:
            shared = 0
            for process in self._tree(self.postmaster):
                try:
                    info = process.memory_info()
                except self.psutil.Error:
                    continue
                total += info.rss - info.shared
                shared = max(shared, info.shared)
            total += shared
        return total

    def _run(self) -> None:
        while not self.done.wait(0.2):
            self.peak = max(self.peak, self._sample())

    def stop(self) -> tuple[float, float]:
        """(peak of stage + PostgreSQL, peak of the stage's processes alone), MiB."""
        self.done.set()
        self.thread.join()
        return self.peak / 2**20, self.stage_peak / 2**20


def postmaster_pid(home: Path) -> int | None:
    pid_file = home / "pgdata" / "postmaster.pid"
    return int(pid_file.read_text().split()[0]) if pid_file.exists() else None


def temp_bytes(settings) -> int:
    from pony_tasks.db import connect

    time.sleep(1.2)  # backends report their statistics at most once a second
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT coalesce(sum(temp_bytes), 0) FROM pg_stat_database")
        return int(cur.fetchone()[0])


def prepare(stage: str, settings) -> dict[str, str]:
    """The ids a stage's arguments name (the newest of each), after the change a stage stands on (1 % new images)."""
    from pony_tasks.db import connect

    with connect(settings) as conn, conn.cursor() as cur:
        if stage in ("works_full", "works_parts"):  # a first build, also on a kept corpus that has been linked
            cur.execute("TRUNCATE work_pair, work_image, work")
        if stage == "works_incremental":  # 1 % of the images taken out of their works: what a day's scrape adds
            cur.execute("""DELETE FROM work_image WHERE sha256 IN (
                               SELECT sha256 FROM work_image TABLESAMPLE BERNOULLI (1) REPEATABLE (28))""")
            cur.execute("DELETE FROM work w WHERE NOT EXISTS (SELECT 1 FROM work_image i WHERE i.work_id = w.work_id)")
        cur.execute("""SELECT (SELECT max(version_id) FROM aesthetic_model WHERE status = 'candidate'),
                              (SELECT max(version_id) FROM style_clustering),
                              (SELECT max(model_id) FROM embedding_model),
                              (SELECT max(version_id) FROM aesthetic_model WHERE status = 'active'),
                              (SELECT max(set_id) FROM caption_set)""")
        names = ("candidate", "style_version", "model", "version", "caption_set")
        return {name: str(value) for name, value in zip(names, cur.fetchone(), strict=True)}


def run_stage(stage: str, arguments: list[str], settings, environment: dict, timeout: float) -> dict:
    values = prepare(stage, settings)
    command = [PONY, *(argument.format(**values) for argument in arguments)]
    before = temp_bytes(settings)
    started = time.perf_counter()
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    memory = PeakMemory(process.pid, postmaster_pid(settings.home))
    try:
        output, _ = process.communicate(timeout=timeout)
        status = "ok" if process.returncode == 0 else f"exit {process.returncode}"
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        status = f"timed out after {timeout:.0f} s"
    seconds = time.perf_counter() - started
    peak, stage_peak = memory.stop()
    pg_temp = (temp_bytes(settings) - before) / 2**20
    last = [line for line in output.strip().splitlines() if line.strip()][-3:]
    logs = settings.home.parent / "stage-logs"  # the whole output (the works phases' breakdown, progress)
    logs.mkdir(exist_ok=True)
    (logs / f"{stage}.log").write_text(output)
    if stage.startswith("export_"):  # the export itself is not kept (a 10M-post corpus has disk for one at a time)
        shutil.rmtree(settings.home / "objects" / "exports" / arguments[arguments.index("--name") + 1],
                      ignore_errors=True)  # fmt: skip
    print(f"{stage:22s} {seconds:9.1f} s  peak {peak:8.0f} MiB ({stage_peak:,.0f} the stage's own)  "
          f"pg temp {pg_temp:8.0f} MiB  {status}", flush=True)  # a killed run keeps every finished stage's line
    for line in last:
        print(f"{'':24s}{line[:150]}")
    result = {"stage": stage, "seconds": round(seconds, 1), "peak_rss_mib": round(peak),
              "pg_temp_mib": round(pg_temp), "status": status, "stage_rss_mib": round(stage_peak)}  # fmt: skip
    request = POD_MEMORY.get("works_part" if stage.startswith("works_part_") else stage)
    if request is not None:  # what the DAG's execution plan asks a pod for, against the stage's own peak
        asked = _mib(request().memory)
        result |= {"pod_memory_mib": asked, "pod_margin": round(asked / max(stage_peak, 1), 2)}
        print(f"{'':24s}pod asks {asked:,} MiB for a stage peak of {stage_peak:,.0f} MiB "
              f"(× {result['pod_margin']}{'' if asked >= 1.25 * stage_peak else ': NOT ENOUGH MARGIN'})")
    if stage.startswith("works_") and stage != "works_parts" and not stage.startswith("works_part_") \
            and status == "ok":
        result.update(planted_reposts(settings))
        print(f"{'':24s}planted re-posts in their source's work: {result['reposts_found']:,} of "
              f"{result['reposts']:,} ({result['repost_recall']:.4f}); works holding two pictures: "
              f"{result['works_mixing_pictures']:,}")  # fmt: skip
    return result


def run_plan(settings, environment: dict, timeout: float) -> list[dict]:
    """After works_parts (``pony works plan scale``): each part of the plan as the DAG's mapped tasks run it (here one
    after another), then the link that reads their pairs — each measured as a stage of its own."""
    from pony_tasks.works.parts import plan_part_numbers

    results = [run_stage(f"works_part_{part}", ["works", "part", "scale", str(part)], settings, environment, timeout)
               for part in plan_part_numbers("scale", settings)]  # fmt: skip
    results.append(run_stage("works_parts_link", ["works", "run", "--plan", "scale"], settings, environment, timeout))
    parts = [r["seconds"] for r in results[:-1]]
    if parts:
        print(f"{'':24s}parts: {len(parts)}, {sum(parts):.1f} s in all, the longest {max(parts):.1f} s: with a pod "
              f"each, plan + longest part + link", flush=True)  # fmt: skip
    return results


def planted_reposts(settings) -> dict:
    """How many planted re-posts ended in their source's work, and how many works hold two different pictures."""
    from pony_tasks.db import connect

    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("""SELECT count(*) FILTER (WHERE a.work_id = b.work_id), count(*)
                       FROM bench_image r JOIN bench_image s ON s.j = r.source
                       LEFT JOIN work_image a ON a.sha256 = r.sha LEFT JOIN work_image b ON b.sha256 = s.sha
                       WHERE r.source <> r.j""")  # fmt: skip
        found, planted = cur.fetchone()
        cur.execute("""SELECT count(*) FROM (SELECT w.work_id FROM work_image w JOIN bench_image b ON b.sha = w.sha256
                                             GROUP BY w.work_id HAVING count(DISTINCT b.source) > 1) x""")
        mixed = cur.fetchone()[0]
    return {"reposts": planted, "reposts_found": found, "repost_recall": round(found / max(planted, 1), 4),
            "works_mixing_pictures": mixed}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--stages", help=f"comma-separated, in pipeline order (default all): "
                                         f"{', '.join(name for name, _ in STAGES)}")  # fmt: skip
    parser.add_argument("--keep", type=Path, help="keep the corpus here and reuse it when it is already there")
    parser.add_argument("--stage-timeout", type=float, default=3600.0, help="seconds before a stage is stopped")
    parser.add_argument("--reclaim-disk", action="store_true",
                        help="drop what no later stage of the run reads once its last reader is done (embeddings, "
                             "the planted re-posts' table, older caption sets): 10M in ~80 GB of disk")  # fmt: skip
    args = parser.parse_args()
    names = [name for name, _ in STAGES]
    chosen = args.stages.split(",") if args.stages else names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        parser.error(f"unknown stages {', '.join(unknown)}; the stages are {', '.join(names)}")

    from pony_tasks.config import load_settings
    from pony_tasks.db.embedded import ensure_embedded_server, stop_embedded_server

    directory = args.keep or Path(tempfile.mkdtemp(prefix="pony-scale-"))
    directory.mkdir(parents=True, exist_ok=True)
    home = directory / "home"
    marker = directory / "corpus.json"
    environment = {**os.environ, "PONY_HOME": str(home), "PONY_STYLE_CLUSTERS": "32"}
    environment.pop("PONY_DATABASE_URL", None)
    environment.pop("PONY_STORAGE_URL", None)
    settings = load_settings(home=home)
    reuse = marker.exists() and json.loads(marker.read_text()).get("posts") == args.posts
    if reuse:
        gone = set(json.loads(marker.read_text()).get("reclaimed", []))
        refused = [name for name in chosen if any(name in RECLAIMED[what] for what in gone)]
        if refused:
            raise SystemExit(f"{directory}'s corpus no longer holds {', '.join(sorted(gone))} (--reclaim-disk): "
                             f"it cannot run {', '.join(refused)}; generate a new corpus for them")  # fmt: skip
    else:
        if marker.exists():
            raise SystemExit(f"{directory} holds another corpus ({marker.read_text().strip()}): "
                             "give another --keep folder or delete it")  # fmt: skip
        if any(path.name != "home" for path in directory.iterdir()):
            raise SystemExit(f"{directory} is not empty: give an empty or new --keep folder")
        shutil.rmtree(home, ignore_errors=True)  # what a generation that did not finish left
    ensure_embedded_server(home, keep_running=True)
    results = []
    try:
        if reuse:
            print(f"reusing the corpus of {args.posts:,} posts in {directory}")
        else:
            print(f"generating {args.posts:,} posts in {directory} …", flush=True)
            started = time.perf_counter()
            generate(settings, args.posts)
            seconds = time.perf_counter() - started
            marker.write_text(json.dumps({"posts": args.posts, "generated_seconds": round(seconds)}))
            print(f"  generated in {seconds:.0f} s", flush=True)
        disk = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file()) / 2**30
        print(f"corpus on disk: {disk:.1f} GiB; a stage's budgets: memory {settings.memory_budget_mib:,} MiB, "
              f"scratch disk {settings.scratch_budget_mib:,} MiB (PONY_MEMORY_BUDGET_MIB, PONY_SCRATCH_BUDGET_MIB)\n")
        print(f"{'stage':22s} {'wall':>11s}  {'peak memory':>17s}  {'PostgreSQL temp':>20s}")
        order = [name for name, _ in STAGES if name in chosen]
        if args.reclaim_disk:
            reclaim_unread(order, settings, marker)
        for name, arguments in STAGES:
            if name in chosen:
                results.append(run_stage(name, arguments, settings, environment, args.stage_timeout))
                if name == "works_parts" and results[-1]["status"] == "ok":
                    results.extend(run_plan(settings, environment, args.stage_timeout))
                if args.reclaim_disk:
                    reclaim_unread(order[order.index(name) + 1:], settings, marker, after=name)
    finally:
        stop_embedded_server(home)
        if args.keep is None:
            shutil.rmtree(directory, ignore_errors=True)
    print(json.dumps({"posts": args.posts, "stages": results}))


if __name__ == "__main__":
    main()
