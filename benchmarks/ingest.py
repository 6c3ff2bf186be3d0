"""Ingestion benchmark: bulk upsert of unified posts, and scraping a fake booru at a configured rate.

Prints posts/s for a first load of N posts (default 1,000,000, with tags) and for re-ingesting them unchanged,
and compares, on the same rows in the same run, with row-by-row INSERT (on a sample) and with a raw COPY into an
unlogged table (the ceiling). Then scrapes a fake booru that answers with 20 ms latency and reports the request
rate achieved against the one configured, and whether the server ever saw it exceeded.

    .venv/bin/python benchmarks/ingest.py [--posts 1000000] [--database-url postgresql://…]

Targets on a 2-core machine: ≥ 50,000 posts/s first load, ≥ 100,000 posts/s unchanged, ≥ 40 % of raw COPY;
scrape ≥ 90 % of the configured rate with zero requests over it.
"""

from __future__ import annotations

import argparse
import gc
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2

from pony_tasks.boorus.records import UnifiedPost
from pony_tasks.boorus.store import POST_COLUMNS, encode_post_line, post_row, upsert_posts
from pony_tasks.config import load_settings
from pony_tasks.db import connect, upgrade
from pony_tasks.db.bulk import copy_lines
from pony_tasks.db.embedded import throwaway_server

TAG_POOL = [f"tag_{i}" for i in range(5000)]
BATCH = 100_000


def make_posts(count: int, seed: int = 1) -> list[UnifiedPost]:
    rng = random.Random(seed)
    start = datetime(2015, 1, 1, tzinfo=UTC)
    sites = ("danbooru", "e621", "derpibooru", "gelbooru")
    posts = []
    for index in range(count):
        site = sites[index % 4]
        up, down = rng.randint(0, 500), rng.randint(0, 50)
        posts.append(
            UnifiedPost(
                site=site, post_id=index // 4 + 1, created_at=start + timedelta(minutes=index),
                rating=rng.choice(("general", "sensitive", "questionable", "explicit")), site_rating="g",
                tags=rng.sample(TAG_POOL, rng.randint(8, 25)), score=up - down,
                up_votes=None if site == "gelbooru" else up, down_votes=None if site == "gelbooru" else down,
                favorites=rng.randint(0, 300), file_url=f"https://cdn.example/{index}.png",
                md5=f"{rng.getrandbits(128):032x}", sha512=None, width=1024, height=768, file_ext="png",
                sources=[f"https://example.art/{index}"], deleted=False,
            )
        )  # fmt: skip
    return posts


def timed_upsert(url: str, posts: list[UnifiedPost]) -> tuple[float, int, int, int]:
    inserted = updated = unchanged = 0
    started = time.perf_counter()
    with connect(url) as conn:
        for offset in range(0, len(posts), BATCH):
            result = upsert_posts(conn, posts[offset : offset + BATCH])
            conn.commit()
            inserted, updated, unchanged = (
                inserted + result.inserted, updated + result.updated, unchanged + result.unchanged
            )  # fmt: skip
    return time.perf_counter() - started, inserted, updated, unchanged


def timed_row_by_row(url: str, posts: list[UnifiedPost]) -> float:
    rows = [post_row(p) for p in posts]
    placeholders = ", ".join(["%s"] * len(POST_COLUMNS))
    conn = psycopg2.connect(url)
    from psycopg2.extras import Json

    started = time.perf_counter()
    with conn.cursor() as cur:
        for row in rows:
            row = list(row)
            row[POST_COLUMNS.index("tag_groups")] = Json(row[POST_COLUMNS.index("tag_groups")])
            cur.execute(
                f"INSERT INTO booru_post_rowwise ({', '.join(POST_COLUMNS)}) VALUES ({placeholders}) "
                "ON CONFLICT (site, post_id) DO NOTHING",
                row,
            )
            conn.commit()  # one post, one transaction: what a naive scraper does
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def timed_raw_copy(url: str, posts: list[UnifiedPost]) -> float:
    """The ceiling: the same rows, encoded by the same encoder, COPYed straight into an unlogged table."""
    started = time.perf_counter()
    with connect(url) as conn, conn.cursor() as cur:
        for offset in range(0, len(posts), BATCH):
            copy_lines(
                cur, "booru_post_raw", POST_COLUMNS, [encode_post_line(p) for p in posts[offset : offset + BATCH]]
            )
    return time.perf_counter() - started


def scrape_benchmark(url: str, home: Path, rate: float, latency: float, pages: int) -> None:
    """Scrape a fake Derpibooru running in its own process (like a remote site) and read its request log."""
    import json
    import subprocess
    import sys
    import urllib.request

    from pony_tasks.boorus.engine import scrape
    from pony_tasks.fakes.server import max_in_window, min_gap, rate_respected

    server = subprocess.Popen(
        [sys.executable, "-m", "pony_tasks", "fake-booru", "derpibooru", "--posts", str(pages * 50),
         "--latency", str(latency), "--warm"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        base_url = server.stdout.readline().split(" at ")[1].split()[0]
        settings = load_settings(
            home=home, database_url=url, booru_base_urls={"derpibooru": base_url},
            booru_rate_limits={"derpibooru": rate},
        )  # fmt: skip
        with connect(url) as conn, conn.cursor() as cur:
            cur.execute("TRUNCATE booru_post, booru_score_snapshot, booru_quarantine, booru_cursor CASCADE")
        started = time.perf_counter()
        report = scrape("derpibooru", settings=settings, show_progress=False)
        elapsed = time.perf_counter() - started
        log = json.loads(urllib.request.urlopen(base_url + "/_fake/log").read())
    finally:
        server.terminate()
        server.wait()
    times = [entry["at"] for entry in log]
    achieved = (len(times) - 1) / (times[-1] - times[0])
    print(f"\nscrape: {len(times)} requests, {report.records} posts, {elapsed:.1f} s; fake Derpibooru in its own "
          f"process, {latency * 1000:.0f} ms latency")  # fmt: skip
    print(f"  configured {rate:.1f} req/s, achieved {achieved:.2f} req/s = {achieved / rate:.1%} of configured "
          "(target ≥ 90 %)")  # fmt: skip
    print(
        f"  most requests in any 1 s window: {max_in_window(times)}; shortest gap {min_gap(times) * 1000:.1f} ms "
        f"(limit {1000 / rate:.1f} ms); over the limit: {'none' if rate_respected(times, rate) else 'YES'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--row-sample", type=int, default=10_000, help="posts for the row-by-row baseline")
    parser.add_argument("--database-url", help="default: a fresh embedded PostgreSQL in a temporary directory")
    parser.add_argument("--scrape-rate", type=float, default=20.0)
    parser.add_argument("--scrape-latency", type=float, default=0.020)
    parser.add_argument("--scrape-pages", type=int, default=60)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="pony-bench-"))
    with throwaway_server(url=args.database_url) as url:
        with connect(url) as conn:
            upgrade(conn)
            with conn.cursor() as cur:
                cur.execute("TRUNCATE booru_post, booru_score_snapshot, booru_cursor CASCADE")
                cur.execute("DROP TABLE IF EXISTS booru_post_rowwise, booru_post_raw")
                cur.execute("CREATE TABLE booru_post_rowwise (LIKE booru_post INCLUDING ALL)")
                cur.execute("CREATE UNLOGGED TABLE booru_post_raw (LIKE booru_post)")

        print(f"generating {args.posts:,} unified posts with 8–25 tags each …", flush=True)
        posts = make_posts(args.posts)
        # A scraper holds one page (≤ 320 posts) at a time; this benchmark holds a million. Keep the garbage collector
        # from rescanning them on every allocation burst, which would measure the benchmark, not the upsert.
        gc.collect()
        gc.freeze()

        first, inserted, _, _ = timed_upsert(url, posts)
        again, inserted_again, updated_again, unchanged = timed_upsert(url, posts)
        raw = timed_raw_copy(url, posts)
        sample = posts[: args.row_sample]
        row_by_row = timed_row_by_row(url, sample)

        n = len(posts)
        first_rate, again_rate, raw_rate = n / first, n / again, n / raw
        row_rate = len(sample) / row_by_row
        print(f"\nupsert of {n:,} posts in batches of {BATCH:,} (digest probe by key; new rows COPYed straight in, "
              "changed ones through staging + INSERT … ON CONFLICT):")  # fmt: skip
        print(
            f"  first load:       {first:6.1f} s  {first_rate:>10,.0f} posts/s  ({inserted:,} inserted)  "
            "target ≥ 50,000"
        )
        print(f"  unchanged again:  {again:6.1f} s  {again_rate:>10,.0f} posts/s  ({unchanged:,} unchanged, "
              f"{inserted_again + updated_again} written)  target ≥ 100,000")  # fmt: skip
        print(f"  raw COPY into an unlogged table (ceiling): {raw:6.1f} s  {raw_rate:>10,.0f} posts/s")
        print(f"  row-by-row INSERT, one transaction each, {len(sample):,}-post sample: {row_rate:>10,.0f} posts/s")
        print(f"  ratios: first load / raw COPY = {first_rate / raw_rate:.0%} (target ≥ 40 %); "
              f"first load / row-by-row = {first_rate / row_rate:.0f}×; unchanged / row-by-row = "
              f"{again_rate / row_rate:.0f}×")  # fmt: skip

        scrape_benchmark(url, workdir / "home", args.scrape_rate, args.scrape_latency, args.scrape_pages)


if __name__ == "__main__":
    main()
