"""Near-duplicate candidate search benchmark: N CLIP-like embeddings (default 1,000,000 × 768, fp16) with planted
near-duplicate clusters, joined at a cosine threshold by ``pony_tasks.works.neighbours.ClusterJoin`` (faiss k-means
cells, exact cosines within each cell, each vector in its two nearest cells).

Measured in the same run, on the same vectors:
- the join of all N (build + pairs): time, pairs found, peak memory of this process;
- recall against an exact brute-force search, on a sample of queries (half of them planted copies, so that the
  sample holds enough true pairs), and the exact search's time extrapolated to all N (the baseline the ratio is of);
- faiss's own inverted-file kNN search (IndexIVFFlat, k = 8, nprobe = 8) on a sample of queries, extrapolated to N;
- incremental matching: 10,000 new vectors (2 % of them copies of stored ones) against the N;
- optionally (``--pgvector M``) pgvector's HNSW index in the embedded PostgreSQL on M of the vectors: build and
  query time, extrapolated (HNSW builds grow about linearly; measured, not assumed, at the size given).

    .venv/bin/python benchmarks/works.py [--vectors 1000000] [--new 10000] [--pgvector 20000]

Targets on a 2-core machine (issue 15): candidate search ≤ 5 min with recall ≥ 0.95 of the exact pairs; 10,000 new
against 1M ≤ 30 s; memory stated.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from pony_tasks.works.neighbours import ClusterJoin, build_index

DIM = 768
TOPICS = 2000
TOPIC_NOISE = 1.0  # per-dimension noise around a topic's centre: same-topic cosine ≈ 0.5, like CLIP's
COPY_SHARE = 0.02  # planted near-duplicates: this share of the rows are copies of another row …
COPY_NOISE = (0.004, 0.016)  # … with this per-dimension noise: cosine 0.99 … 0.91
MIN_COSINE = 0.90


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def normalised(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float16)


def generate(count: int, rng: np.random.Generator, centres: np.ndarray, existing: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(vectors, planted pairs as (source row, copy row)); copies of ``existing`` rows when given (new images that
    re-post stored ones), else of rows in the first tenth of the batch."""
    vectors = np.empty((count, DIM), np.float16)
    for start in range(0, count, 100_000):
        size = min(100_000, count - start)
        block = centres[rng.integers(0, TOPICS, size)] + TOPIC_NOISE * rng.standard_normal((size, DIM), np.float32)
        vectors[start:start + size] = normalised(block)
    copies = np.sort(rng.choice(np.arange(count // 10, count), int(count * COPY_SHARE), replace=False))
    if existing is not None:
        sources = rng.integers(0, len(existing), len(copies))
    else:  # half as many pictures as copies: each copied 1–4 times (clusters of 2–5 images)
        pictures = rng.choice(count // 10, max(1, len(copies) // 2), replace=False)
        sources = pictures[rng.integers(0, len(pictures), len(copies))]
    pool = existing if existing is not None else vectors
    noise = rng.uniform(*COPY_NOISE, (len(copies), 1)).astype(np.float32)
    for start in range(0, len(copies), 50_000):
        part = slice(start, start + 50_000)
        vectors[copies[part]] = normalised(pool[sources[part]].astype(np.float32)
                                           + noise[part] * rng.standard_normal((len(copies[part]), DIM), np.float32))
    return vectors, np.stack([sources, copies], 1)


def exact_pairs(queries: np.ndarray, rows: np.ndarray, query_rows: np.ndarray, offset: int = 0) -> set[tuple]:
    """Every (query row, row) pair with cosine ≥ MIN_COSINE, by brute force over ``rows``."""
    found = set()
    left = queries.astype(np.float32)
    for start in range(0, len(rows), 200_000):
        hits_q, hits_r = np.nonzero(left @ rows[start:start + 200_000].astype(np.float32).T >= MIN_COSINE)
        for q, r in zip(query_rows[hits_q].tolist(), (hits_r + start + offset).tolist(), strict=True):
            if q != r:
                found.add((min(q, r), max(q, r)))
    return found


def pgvector_hnsw(vectors: np.ndarray, queries: int) -> tuple[float, float, float]:
    """(build s, query s per query, recall@8 against exact) of an HNSW index (halfvec, cosine) in embedded
    PostgreSQL with pgvector."""
    from pony_tasks.db import connect
    from pony_tasks.db.embedded import throwaway_server

    with throwaway_server() as url, connect(url) as conn, conn.cursor() as cur:
        cur.execute("CREATE EXTENSION vector")
        cur.execute(f"CREATE TABLE e (id int PRIMARY KEY, v halfvec({DIM}))")
        rows = [(i, "[" + ",".join(f"{x:.4f}" for x in vectors[i].tolist()) + "]") for i in range(len(vectors))]
        from psycopg2.extras import execute_values

        execute_values(cur, "INSERT INTO e VALUES %s", rows, page_size=1000)
        cur.execute("SET maintenance_work_mem = '2GB'")
        cur.execute("SET max_parallel_maintenance_workers = 1")
        started = time.perf_counter()
        cur.execute("CREATE INDEX ON e USING hnsw (v halfvec_cosine_ops)")
        build = time.perf_counter() - started
        matrix = vectors.astype(np.float32)
        recall, started = [], time.perf_counter()
        for i in range(queries):
            cur.execute("SELECT id FROM e ORDER BY v <=> %s::halfvec LIMIT 8", (rows[i][1],))
            got = {r[0] for r in cur.fetchall()}
            truth = set(np.argsort(-(matrix @ matrix[i]))[:8].tolist())
            recall.append(len(got & truth) / 8)
        per_query = (time.perf_counter() - started) / queries
    return build, per_query, float(np.mean(recall))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=10_000, help="vectors matched incrementally after the join")
    parser.add_argument("--sample", type=int, default=1_000, help="queries checked against the exact search")
    parser.add_argument("--pgvector", type=int, default=0, metavar="M",
                        help="also time pgvector's HNSW on M vectors (0: skip; 20000 takes about a minute)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((TOPICS, DIM), np.float32)

    print(f"generating {args.vectors:,} × {DIM} fp16 embeddings ({COPY_SHARE:.0%} planted near-duplicates) …",
          flush=True)  # fmt: skip
    started = time.perf_counter()
    vectors, planted = generate(args.vectors, rng, centres)
    print(f"  generated in {time.perf_counter() - started:.1f} s ({vectors.nbytes / 1024**3:.2f} GiB)")

    started = time.perf_counter()
    join = ClusterJoin.build(vectors)
    built = time.perf_counter() - started
    pairs, cosines = join.pairs(MIN_COSINE)
    elapsed = time.perf_counter() - started
    sizes = np.array([len(m) for m in join.members])
    print(f"\ncell join: {len(join.members):,} cells (members: median {int(np.median(sizes))}, max {sizes.max():,}), "
          f"built in {built:.1f} s; {len(pairs):,} pairs ≥ {MIN_COSINE} in {elapsed:.1f} s in all "
          f"(target ≤ 300 s); peak memory so far {peak_gib():.1f} GiB")  # fmt: skip

    half = args.sample // 2
    query_rows = np.unique(np.concatenate([rng.choice(planted[:, 1], half, replace=False),
                                           rng.choice(args.vectors, args.sample - half, replace=False)]))  # fmt: skip
    started = time.perf_counter()
    truth = exact_pairs(vectors[query_rows], vectors, query_rows)
    exact_time = time.perf_counter() - started
    found = set(map(tuple, pairs.tolist()))
    recall = len(truth & found) / len(truth) if truth else float("nan")
    exact_all = exact_time * args.vectors / len(query_rows)
    print(f"recall against exact brute force on {len(query_rows):,} queries: {len(truth & found):,} of "
          f"{len(truth):,} pairs = {recall:.4f} (target ≥ 0.95); planted pairs found "
          f"{sum((min(a, b), max(a, b)) in found for a, b in planted.tolist()) / len(planted):.4f}")  # fmt: skip
    print(f"  baseline in the same run: exact search {exact_time:.1f} s for {len(query_rows):,} queries → "
          f"{exact_all:,.0f} s for all {args.vectors:,} ({exact_all / elapsed:,.0f}× the join)")  # fmt: skip

    ivf_queries = min(20_000, args.vectors)
    started = time.perf_counter()
    index = build_index(vectors.astype(np.float32), "ip", exact=False)
    ivf_built = time.perf_counter() - started
    started = time.perf_counter()
    scores, rows = index.search(vectors[query_rows].astype(np.float32), 9)
    index.search(vectors[:ivf_queries].astype(np.float32), 9)
    ivf_search = (time.perf_counter() - started) / (ivf_queries + len(query_rows))
    ivf_found = {(min(q, r), max(q, r)) for q, row_r, row_s in zip(query_rows.tolist(), rows.tolist(),
                                                                   scores.tolist(), strict=True)
                 for r, s in zip(row_r, row_s, strict=True) if r >= 0 and r != q and s >= MIN_COSINE}  # fmt: skip
    del index
    print(f"  faiss IndexIVFFlat kNN (k=8, nprobe=8): built in {ivf_built:.1f} s, {ivf_search * 1000:.2f} ms per "
          f"query → {ivf_built + ivf_search * args.vectors:,.0f} s for all {args.vectors:,} "
          f"({(ivf_built + ivf_search * args.vectors) / elapsed:.1f}× the join); recall "
          f"{len(truth & ivf_found) / max(len(truth), 1):.4f}")  # fmt: skip

    print(f"\nincremental: {args.new:,} new embeddings ({COPY_SHARE:.0%} re-post stored ones) …", flush=True)
    new, new_planted = generate(args.new, rng, centres, existing=vectors)
    started = time.perf_counter()
    new_pairs, _ = join.add(new, MIN_COSINE)
    incremental = time.perf_counter() - started
    new_found = set(map(tuple, new_pairs.tolist()))
    check = rng.choice(args.new, min(500, args.new), replace=False)
    check = np.unique(np.concatenate([check, new_planted[:250, 1]]))
    new_truth = exact_pairs(new[check], join.vectors, check + args.vectors)
    print(f"  matched against {args.vectors:,} in {incremental:.1f} s (target ≤ 30 s): {len(new_pairs):,} pairs; "
          f"recall against exact on {len(check)} of them {len(new_truth & new_found) / max(len(new_truth), 1):.4f}"
          f" ({len(new_truth):,} pairs)")  # fmt: skip
    print(f"\npeak memory of this Python process: {peak_gib():.1f} GiB "
          f"(the fp16 vectors: {join.vectors.nbytes / 1024**3:.2f} GiB)")  # fmt: skip

    if args.pgvector:
        subset = vectors[: args.pgvector]
        build, per_query, pg_recall = pgvector_hnsw(subset, 200)
        print(f"\npgvector HNSW (halfvec, cosine, m=16, ef_construction=64) on {args.pgvector:,}: built in "
              f"{build:.1f} s ({build / args.pgvector * 1e6:.0f} µs per vector → ≈ "
              f"{build / args.pgvector * args.vectors:,.0f} s for {args.vectors:,}), {per_query * 1000:.1f} ms "
              f"per query, recall@8 {pg_recall:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
