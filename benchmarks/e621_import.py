"""e621 database-export import benchmark (issue 30): ``pony import e621-export`` of N generated posts rows (default
5,000,000, e621's size) beside a raw COPY of the same rows into an unlogged table, in the same run and database.

The rows are written as e621ng writes ``posts-YYYY-MM-DD.csv.gz`` (29 columns, ``t``/``f`` booleans, sources one per
line inside the quoted field, descriptions with commas and quotes), with a tags file of a Zipf-like vocabulary
(~20–40 tags a post). Prints rows/s for the raw COPY, the first import, and a re-import of the same rows (another
file, same date: every post unchanged), the import / raw COPY ratio, and the importer's peak memory.

    .venv/bin/python benchmarks/e621_import.py [--posts 5000000] [--keep DIR] [--database-url postgresql://…]

Target (issue 30): first import ≥ 50 % of the raw COPY rate. Also printed: a bare COPY of the same posts, already
encoded, into an empty table like ``booru_post`` (logged, its four indexes) — the ceiling of any importer into our
schema — and the import's share of it.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import random
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2

from pony_tasks.boorus.imports import e621_export
from pony_tasks.config import load_settings
from pony_tasks.db import connect, upgrade
from pony_tasks.db.embedded import throwaway_server
from pony_tasks.fakes.e621_export import POSTS_HEADER, TAGS_HEADER

VOCABULARY = 200_000
CATEGORY_SHARE = ((1, 0.25), (4, 0.10), (5, 0.02), (3, 0.03), (7, 0.01))  # artists, characters, species, …


def tag_names() -> list[str]:
    return [f"tag_{i:06d}" for i in range(VOCABULARY)]


def write_tags(path: Path, seed: int = 1) -> None:
    rng = random.Random(seed)
    with gzip.open(path, "wt", encoding="utf-8", newline="", compresslevel=1) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(TAGS_HEADER)
        for index, name in enumerate(tag_names()):
            roll, category = rng.random(), 0
            for code, share in CATEGORY_SHARE:
                if roll < share:
                    category = code
                    break
                roll -= share
            writer.writerow([index + 1, name, category, 1])


def write_posts(path: Path, count: int, seed: int = 2) -> None:
    """``count`` rows, ids ascending with gaps, ~1 % deleted, a few hidden files' worth of real variety."""
    rng = random.Random(seed)
    names = tag_names()
    # Zipf-like tag frequencies: a tag's weight ~ 1/rank; sampled by index from a cumulative table
    weights = [1 / (rank + 1) for rank in range(VOCABULARY)]
    start = datetime(2008, 1, 1)
    post_id = 0
    with gzip.open(path, "wt", encoding="utf-8", newline="", compresslevel=1) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(POSTS_HEADER)
        batch = 10_000
        for first in range(0, count, batch):
            size = min(batch, count - first)
            picks = rng.choices(range(VOCABULARY), weights, k=size * 30)
            rows = []
            for i in range(size):
                post_id += rng.randint(1, 2)
                tags = " ".join(sorted({names[t] for t in picks[i * 30 : i * 30 + rng.randint(20, 30)]}))
                up = rng.randint(0, 400)
                down = -rng.randint(0, 40)
                created = start + timedelta(seconds=post_id * 37)
                sources = "https://example.art/a/" + str(post_id)
                if post_id % 4 == 0:
                    sources += "\nhttps://twitter.example/a/status/" + str(post_id)
                description = "" if post_id % 3 else f'A "commission", part {post_id % 7}\nthanks!'
                rows.append((
                    post_id, 1, created.isoformat(sep=" "), f"{rng.getrandbits(128):032x}", sources,
                    rng.choice("sqe"), 1024, 768, tags, "", rng.randint(0, 500), "png", "", post_id * 3, "",
                    123456, 0, description, "", created.isoformat(sep=" "), "t" if post_id % 100 == 0 else "f",
                    "f", "f", up + down, up, down, "f", "f", "f",
                ))  # fmt: skip
            writer.writerows(rows)


def raw_copy(url: str, path: Path) -> float:
    """rows/s of COPY of the decompressed file into an unlogged table of text columns (the ceiling)."""
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        columns = ", ".join(f'"{c}" text' for c in POSTS_HEADER)
        cur.execute(f"DROP TABLE IF EXISTS raw_posts; CREATE UNLOGGED TABLE raw_posts ({columns})")
        started = time.perf_counter()
        with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
            cur.copy_expert("COPY raw_posts FROM STDIN WITH (FORMAT csv, HEADER true)", handle, size=1 << 20)
        elapsed = time.perf_counter() - started
        cur.execute("SELECT count(*) FROM raw_posts")
        rows = cur.fetchone()[0]
        cur.execute("DROP TABLE raw_posts")
    conn.close()
    return rows / elapsed


def schema_ceiling(url: str, path: Path, settings) -> float:
    """rows/s of a bare COPY of the same posts, already encoded as booru_post rows, into an empty logged table like
    booru_post (its indexes and constraints): what any importer into our schema is bounded by, snapshots aside.
    Only the COPY is timed (the encoding is the importer's work)."""
    from hashlib import md5

    from pony_tasks.boorus.adapters import adapter_for
    from pony_tasks.boorus.imports.csv_files import CsvRows, open_text
    from pony_tasks.db.bulk import copy_lines

    conn = psycopg2.connect(url)
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS ceiling_post; CREATE TABLE ceiling_post (LIKE booru_post INCLUDING ALL)")
        groups = e621_export.tag_groups_by_name(conn)
    conn.commit()
    adapter = adapter_for("e621", settings)
    elapsed, count, lines = 0.0, 0, []
    with open_text(path) as handle, conn.cursor() as cur:
        rows = CsvRows(handle, e621_export.POSTS_REQUIRED, path.name)
        builder = e621_export.PostRows(rows, groups, adapter)
        for row in rows:
            line = builder.encoded(row)[1]
            lines.append(f"{line[:-1]},{md5(line.encode()).hexdigest()}\n")
            if len(lines) == 20_000:
                started = time.perf_counter()
                count += copy_lines(cur, "ceiling_post", e621_export._STAGE_COLUMNS, lines)
                conn.commit()
                elapsed += time.perf_counter() - started
                lines = []
        started = time.perf_counter()
        count += copy_lines(cur, "ceiling_post", e621_export._STAGE_COLUMNS, lines)
        conn.commit()
        elapsed += time.perf_counter() - started
        cur.execute("DROP TABLE ceiling_post")
    conn.commit()
    conn.close()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=5_000_000)
    parser.add_argument("--keep", type=Path, help="Directory for the generated files (reused when present).")
    parser.add_argument("--database-url", help="An empty PostgreSQL database; default: a throwaway embedded one.")
    args = parser.parse_args()

    directory = args.keep or Path(tempfile.mkdtemp(prefix="pony-e621-bench-"))
    directory.mkdir(parents=True, exist_ok=True)
    posts, tags = directory / f"posts-{args.posts}-2026-12-01.csv.gz", directory / "tags-2026-12-01.csv.gz"
    if not tags.exists():
        write_tags(tags)
    if not posts.exists():
        started = time.perf_counter()
        write_posts(posts, args.posts)
        print(f"generated {args.posts:,} rows in {time.perf_counter() - started:.0f} s "
              f"({posts.stat().st_size / 2**20:.0f} MiB gzipped)")  # fmt: skip
    with throwaway_server(url=args.database_url) as url:
        settings = load_settings(database_url=url)
        with connect(settings, check_schema=False) as conn:
            upgrade(conn)
        copy_rate = raw_copy(url, posts)
        print(f"raw COPY into an unlogged table:   {copy_rate:>9,.0f} rows/s")
        e621_export.import_tags(tags, settings=settings, show_progress=False)
        started = time.perf_counter()
        report = e621_export.import_posts(posts, settings=settings, show_progress=True,
                                          exported_at=datetime(2026, 12, 1, tzinfo=UTC))  # fmt: skip
        first = report.rows / (time.perf_counter() - started)
        print(f"import, first load:                {first:>9,.0f} rows/s  ({report.summary()})")
        again = directory / f"posts-{args.posts}-recompressed-2026-12-01.csv.gz"  # same rows, another file
        if not again.exists():
            with gzip.open(posts, "rb") as src, gzip.open(again, "wb", compresslevel=2) as dst:
                while block := src.read(1 << 22):
                    dst.write(block)
        started = time.perf_counter()
        report = e621_export.import_posts(again, settings=settings, show_progress=False,
                                          exported_at=datetime(2026, 12, 1, tzinfo=UTC))  # fmt: skip
        unchanged = report.rows / (time.perf_counter() - started)
        print(f"re-import, every post unchanged:   {unchanged:>9,.0f} rows/s  ({report.summary()})")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        ceiling = schema_ceiling(url, posts, settings)
        print(f"COPY of the encoded rows into a table like booru_post: {ceiling:,.0f} rows/s (the schema's ceiling)")
        print(f"import / raw COPY:                 {first / copy_rate:>9.0%}  (target ≥ 50 %)")
        print(f"import / the schema's ceiling:     {first / ceiling:>9.0%}")
        print(f"importer peak RSS:                 {peak:>9,.0f} MiB")


if __name__ == "__main__":
    main()
