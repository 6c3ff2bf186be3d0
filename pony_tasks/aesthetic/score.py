"""``pony aesthetic score``: a score 0..1 and its percentile (from the version's stored CDF) for every embedding.

Images already scored by the version are skipped, so re-running changes nothing; images without an embedding for the
version's embedding model are counted and reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pony_tasks.aesthetic.head import predict
from pony_tasks.aesthetic.registry import get_version, load_head
from pony_tasks.config import Settings, get_settings
from pony_tasks.db import connect
from pony_tasks.db.bulk import copy_rows
from pony_tasks.embed.run import iter_embeddings
from pony_tasks.storage import open_store


@dataclass(frozen=True)
class ScoreResult:
    version_id: int
    scored: int
    already_scored: int
    without_embedding: int

    def summary(self) -> str:
        return (
            f"aesthetic version {self.version_id}: {self.scored} images scored, {self.already_scored} already were; "
            f"{self.without_embedding} stored images have no embedding for its model (run `pony embed`)"
        )


def score_all(version_id: int | None = None, *, settings: Settings | None = None, full: bool = False) -> ScoreResult:
    """Score every embedding the version has not scored; ``full`` rescores all of them (old scores replaced in the
    same transaction: readers see the old scores or the new ones)."""
    settings = settings or get_settings()
    store = open_store(settings=settings)
    with connect(settings) as conn:
        version = get_version(conn, version_id)
        with conn.cursor() as cur:
            if full:
                cur.execute("DELETE FROM aesthetic_score WHERE version_id = %s", (version.version_id,))
            cur.execute("SELECT count(*) FROM aesthetic_score WHERE version_id = %s", (version.version_id,))
            done = cur.fetchone()[0]
            # Exact by the keys (image_embedding holds at most one row per image and model, each an existing image),
            # and immune to the nested-loop plans that stale statistics on freshly filled tables can produce.
            cur.execute(
                "SELECT (SELECT count(*) FROM image) - (SELECT count(*) FROM image_embedding WHERE model_id = %s)",
                (version.embedding_model_id,),
            )
            missing = cur.fetchone()[0]
        head = load_head(store, version)
        cdf = np.asarray(version.score_cdf)
        scored = 0
        # a shard at a time (its unscored rows only): memory of one shard whatever the number of images
        # a version that has scored nothing yet (its first run, --full) needs no look-up of what it scored per row
        unscored_by = version.version_id if done else None
        for ids, matrix in iter_embeddings(conn, store, version.embedding_model_id, unscored_by=unscored_by):
            scores = predict(head, matrix).numpy().astype(np.float64)
            percentiles = np.interp(scores, cdf, np.linspace(0, 1, len(cdf)))
            with conn.cursor() as cur:
                copy_rows(cur, "aesthetic_score", ("version_id", "sha256", "score", "percentile"),
                          ((version.version_id, sha, float(s), float(p))
                           for sha, s, p in zip(ids, np.clip(scores, 0, 1), percentiles, strict=True)))  # fmt: skip
            scored += len(ids)
    return ScoreResult(version.version_id, scored, done, missing)
