"""Normalisation benchmark: N posts (default 5,000,000) with score snapshots, normalised in one run.

Posts and snapshots are generated inside PostgreSQL (generate_series), so set-up costs little Python. Prints the run
time, posts/s and the peak memory of this Python process (the work stays in PostgreSQL), and, as the baseline in the
same run, the time of a bare ``SELECT count(*)`` over the joined inputs (the floor any normalisation pays).

    .venv/bin/python benchmarks/normalize.py [--posts 5000000] [--database-url postgresql://…]

Target on a 2-core machine: 5,000,000 posts in ≤ 60 s.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from pony_tasks.config import load_settings
from pony_tasks.db import connect, upgrade
from pony_tasks.db.embedded import throwaway_server
from pony_tasks.normalize.run import normalize


def generate(url: str, posts: int) -> None:
    """Posts spread over four sites, ratings and ten years; ~6 % young; two snapshots for a tenth of them."""
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE booru_post, booru_score_snapshot CASCADE")
        cur.execute("SET LOCAL synchronous_commit = off")
        cur.execute(
            """INSERT INTO booru_post (site, post_id, created_at, rating, site_rating, score, up_votes, down_votes,
                                       favorites, deleted)
               SELECT (ARRAY['danbooru','e621','derpibooru','gelbooru'])[1 + i %% 4], i,
                      timestamptz '2026-11-01' - make_interval(
                          secs => (CASE WHEN i %% 16 = 0 THEN 25 ELSE 3650 END)
                                  * 86400 * ((i::int8 * 7919) %% 10007) / 10007.0),
                      (ARRAY['general','sensitive','questionable','explicit'])[1 + (i / 4) %% 4], 'x',
                      up - down, up, down, (up * 0.7)::int, i %% 97 = 0
               FROM (SELECT i, ((i::int8 * 2654435761) %% 1000)::int AS up, ((i::int8 * 40503) %% 50)::int AS down
                     FROM generate_series(1, %s) AS i) g""",
            (posts,),
        )
        cur.execute(
            """INSERT INTO booru_score_snapshot (site, post_id, observed_at, score, up_votes, down_votes, favorites)
               SELECT site, post_id, timestamptz '2026-11-01', score, up_votes, down_votes, favorites FROM booru_post"""
        )
        cur.execute(
            """INSERT INTO booru_score_snapshot (site, post_id, observed_at, score, up_votes, down_votes, favorites)
               SELECT site, post_id, created_at + interval '3 days', score / 3, up_votes / 3, down_votes / 3,
                      favorites / 3
               FROM booru_post WHERE post_id % 10 = 0 AND created_at < timestamptz '2026-10-20'"""
        )
        cur.execute("ANALYZE booru_post")
        cur.execute("ANALYZE booru_score_snapshot")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=5_000_000)
    parser.add_argument("--database-url", help="default: a fresh embedded PostgreSQL in a temporary directory")
    args = parser.parse_args()
    with throwaway_server(url=args.database_url) as url:
        with connect(url) as conn:
            upgrade(conn)
        print(f"generating {args.posts:,} posts with snapshots inside PostgreSQL …", flush=True)
        started = time.perf_counter()
        generate(url, args.posts)
        print(f"  generated in {time.perf_counter() - started:.1f} s")

        with connect(url) as conn, conn.cursor() as cur:
            started = time.perf_counter()
            cur.execute(
                """SELECT count(*) FROM booru_post p
                   JOIN (SELECT site, post_id, max(observed_at) FROM booru_score_snapshot GROUP BY 1, 2) l
                   USING (site, post_id)"""
            )
            cur.fetchone()
            floor = time.perf_counter() - started

        settings = load_settings(home=Path(tempfile.mkdtemp()), database_url=url)
        started = time.perf_counter()
        result = normalize(settings, as_of=datetime(2026, 11, 1, tzinfo=UTC))
        elapsed = time.perf_counter() - started
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"\nnormalisation run {result.run_id}: {result.matured:,} matured, {result.provisional:,} provisional, "
              f"{result.cohorts} cohorts, excluded {result.excluded}")  # fmt: skip
        print(
            f"  {args.posts:,} posts in {elapsed:.1f} s = {args.posts / elapsed:,.0f} posts/s "
            "(target ≤ 60 s for 5,000,000)"
        )
        print(f"  baseline in the same run: latest-snapshot join alone {floor:.1f} s "
              f"(normalisation = {elapsed / floor:.1f}× that)")  # fmt: skip
        print(f"  peak memory of this Python process: {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
