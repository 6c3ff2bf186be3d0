"""Mirror-table import benchmark (issue 30): ``pony import records danbooru`` of N generated Danbooru API records in
a Parquet file laid out as the community mirror is (deepghs ``danbooru2024`` ``metadata.parquet``: flat columns,
nullable ids as double), beside the scrape's own store path (``upsert_posts`` + snapshots of the same posts, already
translated) in the same run.

    .venv/bin/python benchmarks/records_import.py [--posts 1000000] [--keep DIR]

Prints posts/s of both and the import's peak memory (Parquet is read one row group at a time).
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pony_tasks.boorus.adapters import adapter_for
from pony_tasks.boorus.imports.records_file import import_records, nest
from pony_tasks.boorus.store import append_snapshots, upsert_posts
from pony_tasks.config import load_settings
from pony_tasks.db import connect, upgrade
from pony_tasks.db.embedded import throwaway_server

TAGS = [f"tag_{i}" for i in range(20_000)]


def records(first: int, count: int, rng: random.Random) -> list[dict]:
    start = datetime(2010, 1, 1, tzinfo=UTC)
    rows = []
    for post_id in range(first, first + count):
        tags = sorted(set(rng.choices(TAGS, k=rng.randint(20, 35))))
        up = rng.randint(0, 300)
        rows.append({
            "id": post_id, "created_at": (start + timedelta(minutes=post_id)).isoformat(timespec="milliseconds"),
            "score": up - 3, "up_score": up, "down_score": -3, "fav_count": rng.randint(0, 400),
            "rating": rng.choice("gsqe"), "md5": f"{rng.getrandbits(128):032x}", "file_ext": "jpg",
            "image_width": 1000, "image_height": 1400, "source": f"https://example.art/{post_id}",
            "tag_string": " ".join(tags), "tag_string_general": " ".join(tags[2:]),
            "tag_string_character": tags[0], "tag_string_artist": tags[1], "tag_string_copyright": "",
            "tag_string_meta": "", "is_deleted": post_id % 97 == 0, "parent_id": float("nan"),
            "file_url": f"https://cdn.donmai.us/original/aa/bb/{post_id}.jpg",
        })  # fmt: skip
    return rows


def write(path: Path, count: int) -> None:
    rng = random.Random(1)
    writer = None
    for first in range(1, count + 1, 50_000):
        table = pa.Table.from_pylist(records(first, min(50_000, count - first + 1), rng))
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=50_000)
    writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path)
    args = parser.parse_args()
    directory = args.keep or Path(tempfile.mkdtemp(prefix="pony-records-bench-"))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"danbooru-{args.posts}-2026-12-01.parquet"
    if not path.exists():
        write(path, args.posts)
    with throwaway_server() as url:
        settings = load_settings(database_url=url)
        with connect(settings, check_schema=False) as conn:
            upgrade(conn)
        started = time.perf_counter()
        report = import_records("danbooru", path, settings=settings, show_progress=False)
        imported = report.rows / (time.perf_counter() - started)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"pony import records (Parquet → adapter → store): {imported:>9,.0f} posts/s  ({report.summary()})")
        print(f"importer peak RSS: {peak:,.0f} MiB")
        # the scrape's store path for the same posts, already translated (what paging would cost past the network)
        adapter = adapter_for("danbooru", settings)
        with connect(settings) as conn, conn.cursor() as cur:
            cur.execute("TRUNCATE booru_post, booru_score_snapshot CASCADE")
        elapsed, stored = 0.0, 0
        when = datetime(2026, 12, 1, tzinfo=UTC)
        for batch in pq.ParquetFile(path).iter_batches(batch_size=20_000):
            posts = [adapter.to_unified(nest(row)) for row in batch.to_pylist()]
            started = time.perf_counter()
            with connect(settings) as conn:
                upsert_posts(conn, posts)
                append_snapshots(conn, posts, when)
            elapsed += time.perf_counter() - started
            stored += len(posts)
        print(f"store path alone (upsert_posts + snapshots):      {stored / elapsed:>9,.0f} posts/s")
        print(f"import / store path alone: {imported / (stored / elapsed):.0%}")


if __name__ == "__main__":
    main()
