"""Aesthetic model versions: loading, the active version, and promotion with a recorded comparison."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
import psycopg2.extensions

from pony_tasks.aesthetic.head import build_head, predict
from pony_tasks.aesthetic.metrics import evaluate
from pony_tasks.aesthetic.train import rated_targets
from pony_tasks.embed.run import load_embeddings
from pony_tasks.errors import PermanentError
from pony_tasks.storage import ObjectStore


class PromotionRefused(PermanentError, RuntimeError):
    """The candidate is worse than the active version on the same held-out images."""


@dataclass(frozen=True)
class Version:
    version_id: int
    embedding_model_id: int
    status: str
    weights_key: str
    score_cdf: list[float]
    metrics: dict


def get_version(conn: psycopg2.extensions.connection, version_id: int | None = None) -> Version:
    """The given version, or the active one."""
    with conn.cursor() as cur:
        if version_id is None:
            cur.execute("""SELECT version_id, embedding_model_id, status, weights_key, score_cdf, metrics
                           FROM aesthetic_model WHERE status = 'active'""")  # fmt: skip
        else:
            cur.execute("""SELECT version_id, embedding_model_id, status, weights_key, score_cdf, metrics
                           FROM aesthetic_model WHERE version_id = %s""", (version_id,))  # fmt: skip
        row = cur.fetchone()
    if row is None:
        raise LookupError(
            "no active aesthetic model: train one and promote it (`pony aesthetic train`, `pony aesthetic promote`)"
            if version_id is None else f"aesthetic model version {version_id} does not exist"
        )  # fmt: skip
    return Version(*row)


def load_head(store: ObjectStore, version: Version):
    import torch

    saved = torch.load(io.BytesIO(store.get_bytes(version.weights_key)), weights_only=True)
    head = build_head(saved["architecture"], saved["dimension"])
    head.load_state_dict(saved["state_dict"])
    return head


def _heldout_metrics(conn, store: ObjectStore, version: Version, heldout: list[str]) -> dict:
    ids, matrix = load_embeddings(conn, store, version.embedding_model_id, shas=heldout)  # only theirs
    row_of = {sha: i for i, sha in enumerate(ids)}
    targets = rated_targets(conn)
    usable = [s for s in heldout if s in row_of and s in targets]
    predicted = predict(load_head(store, version), matrix[[row_of[s] for s in usable]]).numpy()
    return evaluate(np.array([targets[s][0] for s in usable]), predicted)


def promote(
    conn: psycopg2.extensions.connection, store: ObjectStore, version_id: int, override_reason: str | None = None
) -> dict:
    """Make ``version_id`` active if it is not worse (Spearman, then pairwise accuracy) than the active version on
    the candidate's held-out images; a worse one needs ``override_reason``. The decision is recorded either way."""
    candidate = get_version(conn, version_id)
    if candidate.status == "active":
        raise PromotionRefused(f"version {version_id} is already active")
    try:
        active = get_version(conn)
    except LookupError:
        active = None
    with conn.cursor() as cur:
        cur.execute("SELECT sha256 FROM aesthetic_heldout WHERE version_id = %s", (version_id,))
        heldout = [row[0] for row in cur.fetchall()]
    comparison = {"heldout_images": len(heldout), "candidate": _heldout_metrics(conn, store, candidate, heldout)}
    worse = False
    if active is not None:
        comparison["active"] = _heldout_metrics(conn, store, active, heldout)
        new, old = comparison["candidate"], comparison["active"]
        key = lambda m: (m["spearman"] if m["spearman"] is not None else -1.0, m["pairwise_accuracy"])  # noqa: E731
        worse = key(new) < key(old)
    promoted = not worse or bool(override_reason)
    with conn.cursor() as cur:
        cur.execute(
            """INSERT INTO aesthetic_promotion (version_id, previous_version, promoted, override_reason, comparison)
               VALUES (%s, %s, %s, %s, %s)""",
            (version_id, active.version_id if active else None, promoted, override_reason, json.dumps(comparison)),
        )
        if promoted:
            cur.execute("UPDATE aesthetic_model SET status = 'retired' WHERE status = 'active'")
            cur.execute("UPDATE aesthetic_model SET status = 'active', promoted_at = now() WHERE version_id = %s",
                        (version_id,))  # fmt: skip
    conn.commit()
    if not promoted:
        raise PromotionRefused(
            f"version {version_id} is worse than active version {active.version_id} on the same "
            f"{len(heldout)} held-out images (Spearman {comparison['candidate']['spearman']:.3f} vs "
            f"{comparison['active']['spearman']:.3f}); pass an override reason to promote it anyway"
        )
    return comparison
