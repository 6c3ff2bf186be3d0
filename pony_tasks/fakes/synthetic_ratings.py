"""SYNTHETIC "human" ratings for the demo and tests: derived from the planted quality of the sample corpus.

They are not human judgements. Two synthetic raters rate each image as round(1 + 4·quality + noise), clipped to 1–5,
with independent noise, so the aesthetic model has something learnable and the agreement statistics have two raters.
As the rating page does for people, a share of each rater's images (``repeat_share``, 3 %) comes back after all the
others and is rated again with fresh noise: the test–retest statistics have repeats to measure.
"""

from __future__ import annotations

import csv
import hashlib
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2.extensions

from pony_tasks.fakes.corpus import SampleCorpus

RATERS = ("synthetic-rater-a", "synthetic-rater-b")


def write_synthetic_ratings(
    conn: psycopg2.extensions.connection, corpus: SampleCorpus, path: Path, *, set_id: int | None = None,
    noise: float = 0.45, seed: int = 0, repeat_share: float = 0.03,
) -> int:  # fmt: skip
    """A ratings CSV for the images of a rating set (default: every set); returns the number of rows."""
    quality = corpus.planted_quality()
    with conn.cursor() as cur:
        cur.execute(
            "SELECT sha256, site, post_id FROM rating_set_item WHERE %(set)s::bigint IS NULL OR set_id = %(set)s "
            "ORDER BY set_id, position",
            {"set": set_id},
        )
        items = cur.fetchall()
    rng = random.Random(seed)
    start = datetime(2026, 11, 2, tzinfo=UTC)
    rows = 0
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("sha256", "rating", "rater", "timestamp"))
        for index, (sha, site, post_id) in enumerate(items):
            planted = quality.get((site, post_id))
            if planted is None:
                continue
            for rater in RATERS:
                value = min(5, max(1, round(1 + 4 * planted + rng.gauss(0, noise))))
                when = start + timedelta(seconds=30 * index)
                writer.writerow((sha, value, rater, when.isoformat().replace("+00:00", "Z")))
                rows += 1
        later = start + timedelta(seconds=30 * len(items) + 3600)
        repeats = random.Random(seed + 1)
        for index, (sha, site, post_id) in enumerate(items):
            planted = quality.get((site, post_id))
            if planted is None:
                continue
            for rater in RATERS:
                if _share(sha, rater) >= repeat_share:
                    continue
                value = min(5, max(1, round(1 + 4 * planted + repeats.gauss(0, noise))))
                when = later + timedelta(seconds=30 * index)
                writer.writerow((sha, value, rater, when.isoformat().replace("+00:00", "Z")))
                rows += 1
    return rows


def _share(sha256: str, rater: str) -> float:
    return int(hashlib.sha256(f"{rater}:{sha256}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
