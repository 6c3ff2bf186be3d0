"""Works' embedding candidates as Airflow mapped tasks (the ``works_build`` DAG). At 30M images one process reads the
46 GB of shards once a pass and spills every vector twice (93 GB), so the passes of the cell join
(:func:`~pony_tasks.works.embedding_join.embedding_pass`) run as tasks of their own, a pod each, and the linking task
reads the pairs they stored:

1. :func:`plan_parts` (``pony works plan KEY``): checks that the newest model's embeddings tell pictures apart,
   trains the cells and stores them (``works/plans/<KEY>/cells.npz``), and records the plan and its parts (at least
   as many as asked, more when a pass's spill would exceed the scratch budget).
2. :func:`run_part` (``pony works part KEY N``, one mapped task each): pass N — the pairs of its cell groups, as
   sha256 pairs, replacing what an earlier try of the same part stored.
3. ``pony works run --plan KEY``: links as ``pony works run`` does, with the parts' pairs as its embedding
   candidates (every part must have finished); the plan is deleted with the works written.

The same cells, groups and per-group joins as one process's :func:`~pony_tasks.works.embedding_join.embedding_pairs`:
the same pairs. A plan under a key that exists replaces it, so every step can be retried."""

from __future__ import annotations

import hashlib
import logging
import re

import numpy as np
import psycopg2.extensions

from pony_tasks.config import Settings, get_settings
from pony_tasks.db import connect
from pony_tasks.db.bulk import copy_rows
from pony_tasks.errors import PermanentError
from pony_tasks.storage import ObjectStore, open_store
from pony_tasks.works.candidates import EMBEDDING_NEIGHBOURS, MIN_CANDIDATE_COSINE
from pony_tasks.works.catalogue import FETCH_ROWS, number_images, unlinked
from pony_tasks.works.embedding_join import CellPlan, embedding_pass, plan_cells
from pony_tasks.works.neighbours import _unique

log = logging.getLogger(__name__)


class PlanError(PermanentError, RuntimeError):
    """A plan that is missing, unfinished or made for other embeddings than the newest (a retry fails the same way:
    the plan must be made again)."""


def cells_key(plan_key: str) -> str:
    """Where a plan's cells are stored: the key made safe for any store (an Airflow run id holds ``:`` and ``+``),
    with a digest of it so that two keys never share a place."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", plan_key)[:100]
    return f"works/plans/{safe}-{hashlib.sha256(plan_key.encode()).hexdigest()[:12]}/cells.npz"


def plan_parts(settings: Settings | None = None, plan_key: str = "manual", *, only_new: bool = False,
               parts: int = 1) -> list[int]:  # fmt: skip
    """Plan the embedding candidates of a works run as mapped tasks; returns the part numbers (none when the
    embeddings are not used: the linking task then has only pHash and thumbnail candidates)."""
    from pony_tasks.works.link import embeddings_to_use

    if parts < 1:
        raise ValueError(f"parts must be at least 1, not {parts}")
    settings = settings or get_settings()
    store = open_store(settings=settings)
    with connect(settings) as conn:
        drop_plan(conn, store, plan_key)
        number_images(conn, artists=False)
        model, verdict = embeddings_to_use(conn, store)
        cell_plan = None
        if model is not None:
            cell_plan = plan_cells(conn, store, model, budget_bytes=settings.memory_budget_mib * 2**20,
                                   scratch_bytes=settings.scratch_budget_mib * 2**20, min_passes=parts)  # fmt: skip
            store.put_bytes(cells_key(plan_key), cell_plan.to_bytes())
        numbers = list(range(cell_plan.passes)) if cell_plan else []
        with conn.cursor() as cur:
            cur.execute("""INSERT INTO works_plan (plan_key, only_new, model_id, embeddings, cells_key)
                           VALUES (%s, %s, %s, %s, %s)""",
                        (plan_key, only_new, model and model.model_id, verdict,
                         cells_key(plan_key) if cell_plan else None))  # fmt: skip
            cur.execute("INSERT INTO works_plan_part (plan_key, part) SELECT %s, unnest(%s::int[])",
                        (plan_key, numbers))  # fmt: skip
        conn.commit()
    log.info("works plan %s: %d part(s); %s", plan_key, len(numbers), verdict)
    return numbers


def plan_part_numbers(plan_key: str, settings: Settings | None = None) -> list[int]:
    """The parts of a recorded plan (what the DAG maps its part tasks over)."""
    with connect(settings or get_settings()) as conn, conn.cursor() as cur:
        _plan_row(cur, plan_key)
        cur.execute("SELECT part FROM works_plan_part WHERE plan_key = %s ORDER BY part", (plan_key,))
        return [row[0] for row in cur.fetchall()]


def _plan_row(cur, plan_key: str) -> tuple[bool, int | None, str | None]:
    cur.execute("SELECT only_new, model_id, cells_key FROM works_plan WHERE plan_key = %s", (plan_key,))
    row = cur.fetchone()
    if row is None:
        raise PlanError(f"no works plan {plan_key!r}: make it first with `pony works plan {plan_key}`")
    return row


def plan_scope(conn: psycopg2.extensions.connection, plan_key: str) -> bool:
    """Whether the plan matches only images in no work yet (``only_new``)."""
    with conn.cursor() as cur:
        return _plan_row(cur, plan_key)[0]


def _same_model(plan_key: str, planned: int | None, model_id: int | None) -> None:
    if planned != model_id:
        raise PlanError(f"works plan {plan_key!r} was made for embedding model {planned}, the newest usable one is now "
                        f"{model_id}: make the plan again (`pony works plan {plan_key}`)")  # fmt: skip


def run_part(settings: Settings | None = None, plan_key: str = "manual", part: int = 0) -> int:
    """Pass ``part`` of the plan's cell join; stores its pairs (replacing an earlier try's) and returns how many."""
    from pony_tasks.works.link import _rows, embeddings_to_use

    settings = settings or get_settings()
    store = open_store(settings=settings)
    with connect(settings) as conn:
        with conn.cursor() as cur:
            only_new, model_id, key = _plan_row(cur, plan_key)
            cur.execute("SELECT 1 FROM works_plan_part WHERE plan_key = %s AND part = %s", (plan_key, part))
            if cur.fetchone() is None:
                raise PlanError(f"works plan {plan_key!r} has no part {part}")
        count = number_images(conn, artists=False)
        new = unlinked(conn, count) if only_new else None
        model, _ = embeddings_to_use(conn, store)
        _same_model(plan_key, model_id, model and model.model_id)
        cell_plan = CellPlan.from_bytes(store.get_bytes(key))
        pairs, cosines = embedding_pass(conn, store, model, cell_plan, part, MIN_CANDIDATE_COSINE,
                                        per_row=EMBEDDING_NEIGHBOURS, new=new)  # fmt: skip
        pairs, cosines = _unique(pairs, cosines)
        with conn.cursor() as cur:
            cur.execute("DELETE FROM works_plan_pair WHERE plan_key = %s AND part = %s", (plan_key, part))
            cur.execute("CREATE TEMPORARY TABLE works_part_found (a int, b int, cosine real) ON COMMIT DROP")
            copy_rows(cur, "works_part_found", ("a", "b", "cosine"), _rows(pairs[:, 0], pairs[:, 1], cosines))
            cur.execute("""INSERT INTO works_plan_pair (plan_key, part, sha_a, sha_b, cosine)
                           SELECT %s, %s, wa.sha256, wb.sha256, f.cosine FROM works_part_found f
                           JOIN works_image wa ON wa.n = f.a JOIN works_image wb ON wb.n = f.b""",
                        (plan_key, part))  # fmt: skip
            cur.execute("UPDATE works_plan_part SET pairs = %s, finished_at = now() WHERE plan_key = %s AND part = %s",
                        (len(pairs), plan_key, part))  # fmt: skip
        conn.commit()
    log.info("works plan %s part %d: %d pairs", plan_key, part, len(pairs))
    return len(pairs)


def planned_pairs(conn: psycopg2.extensions.connection, plan_key: str, model_id: int | None
                  ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(image pairs a < b in ``works_image`` numbers, cosines) the plan's parts found, once every part has
    finished; pairs of images no longer numbered are left out."""
    with conn.cursor() as cur:
        _same_model(plan_key, _plan_row(cur, plan_key)[1], model_id)
        cur.execute("SELECT part FROM works_plan_part WHERE plan_key = %s AND finished_at IS NULL ORDER BY part",
                    (plan_key,))  # fmt: skip
        waiting = [row[0] for row in cur.fetchall()]
    if waiting:
        raise PlanError(f"works plan {plan_key!r}: parts {', '.join(map(str, waiting))} have not finished "
                        f"(`pony works part {plan_key} N` for each)")  # fmt: skip
    parts, cosines = [], []
    with conn.cursor(name="works_plan_pairs") as cur:
        cur.itersize = FETCH_ROWS
        cur.execute("""SELECT wa.n, wb.n, p.cosine FROM works_plan_pair p JOIN works_image wa ON wa.sha256 = p.sha_a
                       JOIN works_image wb ON wb.sha256 = p.sha_b WHERE p.plan_key = %s""", (plan_key,))  # fmt: skip
        while rows := cur.fetchmany(FETCH_ROWS):
            block = np.array(rows, dtype=np.float64).reshape(-1, 3)
            parts.append(np.sort(block[:, :2].astype(np.int64), axis=1))
            cosines.append(block[:, 2].astype(np.float32))
    if not parts:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
    return _unique(np.concatenate(parts), np.concatenate(cosines))


def drop_plan(conn: psycopg2.extensions.connection, store: ObjectStore, plan_key: str) -> None:
    """Delete a plan, its parts' pairs and its cells (nothing when there is none); committed with the caller's
    transaction."""
    with conn.cursor() as cur:
        cur.execute("DELETE FROM works_plan WHERE plan_key = %s RETURNING cells_key", (plan_key,))
        row = cur.fetchone()
    if row and row[0]:
        store.delete(row[0])
