"""Caption benchmark: regenerate N captions (default 1,000,000) for the active aesthetic version, then export MB/s.

Posts with 8–20 tags (every tag list distinct: the worst case for the content cache), images and two aesthetic
versions are generated inside PostgreSQL. Prints the first build (caption content of every post computed by the
columnar encoder; target ≤ 45 s for 1,000,000 on a 2-core machine), the regeneration for a new aesthetic version
(content cached, one INSERT … SELECT; target ≤ 30 s), the first build again with the row encoder as the baseline
(unless --no-baseline), with how many captions the 75-token limit cut, then kohya / webdataset / parquet export
throughput for band 9 and the kohya/webdataset ratio (target ≥ 0.8).

    .venv/bin/python benchmarks/captions.py [--captions 1000000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from pony_tasks.captions.sets import regenerate
from pony_tasks.config import load_settings
from pony_tasks.db import connect, upgrade
from pony_tasks.db.embedded import throwaway_server
from pony_tasks.export.dataset import export_dataset
from pony_tasks.storage import open_store


def generate(url: str, count: int) -> list[int]:
    """Posts, images and two aesthetic versions scoring every image differently; returns the version ids."""
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute("SET LOCAL synchronous_commit = off")
        cur.execute(
            """INSERT INTO booru_post (site, post_id, created_at, rating, site_rating, tags, tag_groups, score)
               SELECT (ARRAY['danbooru','e621','derpibooru','gelbooru'])[1 + i %% 4], i, now(),
                      (ARRAY['general','sensitive','questionable','explicit'])[1 + (i / 4) %% 4], 'x',
                      ARRAY(SELECT 'tag_' || ((i::int8 * 7 + k * 131) %% 5000) FROM generate_series(1, 8 + i %% 13) k),
                      jsonb_build_object('artist', jsonb_build_array('artist_' || (i %% 900))), 1
               FROM generate_series(1, %s) i""",
            (count,),
        )
        cur.execute(
            """INSERT INTO image (sha256, storage_key, byte_size, width, height, format)
               SELECT md5(i::text) || md5((-i)::text), 'bench/' || (i %% 2000) || '.png', 1, 512, 512, 'PNG'
               FROM generate_series(1, %s) i""",
            (count,),
        )
        cur.execute(
            """INSERT INTO booru_post_image (site, post_id, sha256)
               SELECT (ARRAY['danbooru','e621','derpibooru','gelbooru'])[1 + i %% 4], i, md5(i::text) || md5((-i)::text)
               FROM generate_series(1, %s) i""",
            (count,),
        )
        cur.execute("INSERT INTO embedding_model (name, pretrained, dimension, image_size) VALUES ('b', 'b', 4, 1) "
                    "RETURNING model_id")  # fmt: skip
        model_id = cur.fetchone()[0]
        versions = []
        for status, multiplier in (("active", 7919), ("candidate", 104729)):
            cur.execute(
                """INSERT INTO aesthetic_model (embedding_model_id, architecture, hyperparameters, metrics,
                       training_set_sha256, training_images, weights_key, score_cdf, status)
                   VALUES (%s, 'mlp', '{}', '{}', 'b', 0, 'b', '{0,1}', %s) RETURNING version_id""",
                (model_id, status),
            )
            versions.append(cur.fetchone()[0])
            cur.execute(
                """INSERT INTO aesthetic_score (version_id, sha256, score, percentile)
                   SELECT %s, md5(i::text) || md5((-i)::text), ((i::int8 * %s) %% 10007) / 10007.0,
                          ((i::int8 * %s) %% 10007) / 10007.0
                   FROM generate_series(1, %s) i""",
                (versions[-1], multiplier, multiplier, count),
            )
    # as a scraped corpus stands after autovacuum: hint bits set, statistics taken, the generation's writes
    # checkpointed — so the timed builds do not pay for the generation's pending I/O
    with connect(url, autocommit=True) as conn, conn.cursor() as cur:
        for table in ("booru_post", "image", "booru_post_image", "aesthetic_score"):
            cur.execute(f"VACUUM (ANALYZE) {table}")
        cur.execute("CHECKPOINT")
    return versions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captions", type=int, default=1_000_000)
    parser.add_argument("--no-export", action="store_true", help="only the caption builds")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the first build with the row encoder (the baseline the columnar one is compared to)")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="pony-bench-"))
    with throwaway_server(home / "pg") as url:
        with connect(url) as conn:
            upgrade(conn)
        print(f"generating {args.captions:,} posts, images and scores inside PostgreSQL …", flush=True)
        active, candidate = generate(url, args.captions)
        settings = load_settings(home=home, database_url=url)
        timings = {}
        for label, version in (("first build (content of every post computed)", active),
                                ("new aesthetic version (content cached)", candidate)):  # fmt: skip
            with connect(url) as conn:
                started = time.perf_counter()
                result = regenerate(conn, scheme="v7", aesthetic_version_id=version)
                timings[label] = elapsed = time.perf_counter() - started
            with connect(url) as conn, conn.cursor() as cur:
                cur.execute("SELECT captions_trimmed, tags_dropped FROM caption_set WHERE set_id = %s",
                            (result.set_id,))  # fmt: skip
                trimmed, dropped = cur.fetchone()
            print(f"\n{label}: {result.captions:,} v7 captions in {elapsed:.1f} s = {result.captions / elapsed:,.0f}/s "
                  f"({result.contents_computed:,} contents computed; {trimmed:,} cut to 75 tokens, {dropped:,} tags "
                  "dropped)")  # fmt: skip
        first, warm = timings.values()
        print(f"regeneration for a new aesthetic version: {warm:.1f} s (target ≤ 30 s for 1,000,000); "
              f"{first / warm:.1f}× faster than the first build")  # fmt: skip
        print(f"first build: {first:.1f} s (target ≤ 45 s for 1,000,000)")
        if not args.no_baseline:  # the same first build with the row encoder (captions.sets.ContentLineEncoder)
            with connect(url) as conn:
                with conn.cursor() as cur:
                    cur.execute("TRUNCATE caption_content")
                conn.commit()
                started = time.perf_counter()
                regenerate(conn, scheme="v7", aesthetic_version_id=active, encoder="rows", force=True)
                baseline = time.perf_counter() - started
            print(f"baseline, first build with the row encoder (a post at a time, one process): {baseline:.1f} s; "
                  f"the columnar encoder's first build is {baseline / first:.2f}× faster")  # fmt: skip
        if args.no_export:
            return
        store = open_store(settings=settings)
        for index in range(2000):
            store.put_bytes(f"bench/{index}.png", bytes(50_000))
        rates = {}
        for fmt in ("kohya", "webdataset", "parquet"):
            with connect(url) as conn:
                started = time.perf_counter()
                exported = export_dataset(conn, store, f"bench-{fmt}", fmt, min_band=9, show_progress=False)
                elapsed = time.perf_counter() - started
            rates[fmt] = exported.bytes / 1e6 / elapsed
            print(f"export {fmt}: {exported.samples:,} samples, {exported.bytes / 1e6:.0f} MB in {elapsed:.1f} s = "
                  f"{rates[fmt]:.0f} MB/s (local file store)")  # fmt: skip
        print(f"kohya / webdataset throughput: {rates['kohya'] / rates['webdataset']:.2f} (target ≥ 0.8)")


if __name__ == "__main__":
    main()
