"""CLIP-embedding candidates and cosines for works, in memory bounded by a budget, never every vector at once.

- :func:`usable_model`: the newest model with shards, and whether its embeddings tell pictures apart (median cosine
  of random pairs of a sample read from a few shards spread over the model).
- :func:`embedding_pairs`: k-means cells of about ``CELL_SIZE`` vectors (:class:`~pony_tasks.works.neighbours.
  TwoLevelCells`, trained on a sample); every vector is assigned to its two nearest cells a shard at a time and
  spilled, with its image number and cell, to the file of its cell's group (cell mod groups); then each group's file
  is read alone and each of its cells joined exactly (one matrix product per cell, as SemDeDup does). Cells of a
  fixed size keep the work per vector the same at any size. There are as many groups as keep one group's vectors
  within the budget — the unit a mapped task over cell ranges takes when one machine is not enough. The spill is
  every vector twice (30 GB at 10M 768-d vectors): under a scratch-disk budget the groups are taken in passes, a
  range of groups each, every pass reading the shards again (their cells are computed once and kept, 8 bytes a
  vector).
- :func:`pair_cosines`: the exact cosine of given pairs (pHash and thumbnail candidates, for the judge's embedding
  veto): the vectors of as many of their images as the budget holds, gathered in one pass over the shards that
  hold them, per pass.

Images are the numbers of ``works_image`` (:mod:`pony_tasks.works.catalogue`)."""

from __future__ import annotations

import io
import logging
import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg2.extensions

from pony_tasks.embed.run import read_shard
from pony_tasks.progress import progress_bar
from pony_tasks.storage import ObjectStore
from pony_tasks.works.catalogue import FETCH_ROWS
from pony_tasks.works.neighbours import (
    ASSIGNMENTS,
    MAX_TRAIN_VECTORS,
    TRAIN_SAMPLE,
    TwoLevelCells,
    _pairs_above,
    _unique,
    cell_count,
    median_random_cosine,
)

log = logging.getLogger(__name__)

CHECK_SAMPLE = 4000  # vectors the median-cosine check looks at


@dataclass
class EmbeddingModel:
    model_id: int
    name: str
    shards: list[tuple[int, str]]  # (shard id, storage key), in shard order
    vectors: int  # vectors of numbered images
    dim: int
    median_cosine: float


def numbered_shards(conn, store: ObjectStore, model: EmbeddingModel, label: str, show_progress: bool | None = None
                    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:  # fmt: skip
    """(shard id, image numbers, float16 rows) of every shard with numbered images, in shard order. Which row is
    which image comes from one join over the model's embeddings, ordered by shard and row and read as it streams
    (a join a shard made the planner hash every image once per shard: 0.16–0.24 s a shard at 1M images)."""
    keys = dict(model.shards)
    with (progress_bar(show_progress, total=len(model.shards), desc=label, unit="shard") as bar,
          conn.cursor(name="works_shard_rows") as cur):  # fmt: skip
        cur.itersize = FETCH_ROWS
        cur.execute("""SELECT e.shard_id, e.row, w.n FROM image_embedding e JOIN works_image w ON w.sha256 = e.sha256
                       WHERE e.model_id = %s ORDER BY e.shard_id, e.row""", (model.model_id,))  # fmt: skip
        shard, parts = None, []
        while block := cur.fetchmany(FETCH_ROWS):
            rows = np.array(block, dtype=np.int64)
            for piece in np.split(rows, np.flatnonzero(np.diff(rows[:, 0])) + 1):
                if shard is not None and piece[0, 0] != shard:
                    done = np.concatenate(parts)
                    bar.update(1)
                    yield shard, done[:, 2], read_shard(store, keys[shard])[done[:, 1]]
                    parts = []
                shard = int(piece[0, 0])
                parts.append(piece)
        if parts:
            done = np.concatenate(parts)
            bar.update(1)
            yield shard, done[:, 2], read_shard(store, keys[shard])[done[:, 1]]


def _spread_sample(conn, store: ObjectStore, model: EmbeddingModel, size: int) -> np.ndarray:
    """About ``size`` vectors from shards spread evenly over the model (all of them when it has fewer)."""
    per_shard = max(1, model.vectors // max(1, len(model.shards)))
    wanted = min(len(model.shards), math.ceil(size / per_shard))
    picks = np.unique(np.linspace(0, len(model.shards) - 1, wanted).round().astype(int)) if wanted else []
    with conn.cursor() as cur:  # one join for the picked shards (the sample's size, not the data's)
        cur.execute("""SELECT e.shard_id, e.row FROM image_embedding e JOIN works_image w ON w.sha256 = e.sha256
                       WHERE e.model_id = %s AND e.shard_id = ANY(%s) ORDER BY e.shard_id, e.row""",
                    (model.model_id, [model.shards[i][0] for i in picks]))  # fmt: skip
        rows = np.array(cur.fetchall(), np.int64).reshape(-1, 2)
    keys = dict(model.shards)
    parts = [read_shard(store, keys[shard])[rows[rows[:, 0] == shard, 1]] for shard in np.unique(rows[:, 0]).tolist()]
    return np.concatenate(parts)[:size] if parts else np.zeros((0, model.dim), np.float16)


def usable_model(conn: psycopg2.extensions.connection, store: ObjectStore) -> EmbeddingModel | None:
    """The newest embedding model with shards (None when there is none), with its median random-pair cosine."""
    with conn.cursor() as cur:
        cur.execute("""SELECT model_id, name FROM embedding_model m WHERE EXISTS (SELECT 1 FROM embedding_shard s
                       WHERE s.model_id = m.model_id) ORDER BY model_id DESC LIMIT 1""")  # fmt: skip
        row = cur.fetchone()
        if row is None:
            return None
        cur.execute("SELECT shard_id, storage_key FROM embedding_shard WHERE model_id = %s ORDER BY shard_id",
                    (row[0],))  # fmt: skip
        shards = cur.fetchall()
        cur.execute("""SELECT count(*) FROM image_embedding e JOIN works_image w ON w.sha256 = e.sha256
                       WHERE e.model_id = %s""", (row[0],))  # fmt: skip
        vectors = cur.fetchone()[0]
    model = EmbeddingModel(row[0], row[1], shards, vectors, 0, 0.0)
    sample = _spread_sample(conn, store, model, CHECK_SAMPLE)
    model.dim = sample.shape[1] if len(sample) else 0
    model.median_cosine = median_random_cosine(sample)
    return model


@dataclass
class CellPlan:
    """How the embedding join splits its work: the k-means cells (None: all vectors in one cell), the spill groups
    (a vector copy goes to the group of its cell mod ``groups``) and the passes — ranges of groups spilled and joined
    together, each reading the shards again. A pass is also what one mapped task of ``works_build`` runs
    (:mod:`pony_tasks.works.parts`)."""

    cells: TwoLevelCells | None
    groups: int
    passes: int

    def groups_of_pass(self, number: int) -> tuple[int, int]:
        """The groups [first, last) of pass ``number`` (0 … passes - 1)."""
        if not 0 <= number < self.passes:
            raise ValueError(f"pass {number} of a plan of {self.passes}")
        return number * self.groups // self.passes, (number + 1) * self.groups // self.passes

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        cells = self.cells.arrays() if self.cells else {}
        np.savez(buffer, groups=self.groups, passes=self.passes, **cells)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> CellPlan:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            parts = {name: arrays[name] for name in arrays.files}
        groups, passes = int(parts.pop("groups")), int(parts.pop("passes"))
        return cls(TwoLevelCells.from_arrays(parts) if parts else None, groups, passes)


def plan_cells(conn: psycopg2.extensions.connection, store: ObjectStore, model: EmbeddingModel, *, budget_bytes: int,
               scratch_bytes: int | None = None, min_passes: int = 1, seed: int = 0) -> CellPlan:  # fmt: skip
    """Cells trained on a sample spread over the shards; as many groups as keep one group's spilled vectors within a
    third of ``budget_bytes`` (at least ``min_passes``); as many passes as keep a pass's spill within
    ``scratch_bytes`` (None: no limit), at least ``min_passes`` (the mapped tasks asked for) and at most one a group
    (there are fewer only when there are fewer cells)."""
    count = cell_count(model.vectors)
    cells = None
    if count > 1:
        sample = _spread_sample(conn, store, model, min(MAX_TRAIN_VECTORS, count * TRAIN_SAMPLE))
        cells = TwoLevelCells.train(sample, count, metric="ip", seed=seed)
        del sample
        count = cells.cells
    # A group's vectors (float16) plus one cell's float32 copy and products must fit the budget: a third for the group.
    spilled = model.vectors * ASSIGNMENTS * (model.dim * 2 + 8)  # bytes on disk: each copy's vector, number and cell
    groups = min(count, max(1, min_passes, math.ceil(spilled / max(1, budget_bytes // 3))))  # a cell joins alone:
    passes = max(1, math.ceil(spilled / scratch_bytes)) if scratch_bytes else 1  # the groups do not change the pairs
    passes = min(groups, max(passes, min_passes))
    if passes > 1:
        log.info("works: embedding cells spill %.1f GiB: %d passes over the shards (scratch budget %s)",
                 spilled / 2**30, passes, f"{scratch_bytes / 2**30:.1f} GiB" if scratch_bytes else "none")  # fmt: skip
    return CellPlan(cells, groups, passes)


def embedding_pairs(conn: psycopg2.extensions.connection, store: ObjectStore, model: EmbeddingModel,
                    min_cosine: float, *, per_row: int | None, new: np.ndarray | None, budget_bytes: int,
                    scratch_bytes: int | None = None, seed: int = 0,
                    show_progress: bool | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(image pairs a < b, cosines) of every pair in a common cell with cosine ≥ ``min_cosine`` (``per_row``: each
    vector's best that many per cell); ``new``: a bool per image — only pairs with a new image. ``scratch_bytes``:
    the local disk the spilled cells may take at once (None: no limit); when every vector's copies would take more,
    the groups are spilled and joined in passes over a range of groups each, every pass reading the shards again."""
    plan = plan_cells(conn, store, model, budget_bytes=budget_bytes, scratch_bytes=scratch_bytes, seed=seed)
    # the new vectors (float16) with room for their float32 copies and the cell index: within a third of the budget
    if new is not None and int(new.sum()) * model.dim * 2 * 4 <= budget_bytes // 3:
        return _unique(*new_vector_pairs(conn, store, model, plan, min_cosine, per_row=per_row, new=new,
                                         budget_bytes=budget_bytes, show_progress=show_progress))  # fmt: skip
    assignments: dict[int, np.ndarray] | None = {} if plan.passes > 1 else None  # kept for the later passes
    found, cosines = [], []
    for number in range(plan.passes):
        pairs, values = embedding_pass(conn, store, model, plan, number, min_cosine, per_row=per_row, new=new,
                                       assignments=assignments, show_progress=show_progress)  # fmt: skip
        found.append(pairs)
        cosines.append(values)
    return _unique(np.concatenate(found), np.concatenate(cosines))


def embedding_pass(conn: psycopg2.extensions.connection, store: ObjectStore, model: EmbeddingModel, plan: CellPlan,
                   number: int, min_cosine: float, *, per_row: int | None, new: np.ndarray | None,
                   assignments: dict[int, np.ndarray] | None = None,
                   show_progress: bool | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The pairs (a < b, not made unique) and cosines of pass ``number`` of ``plan``: its groups' vector copies
    spilled to a temporary directory in one read of the shards, then each group joined alone. ``assignments``: shard
    → its rows' cells, filled and reused across the passes of one process (8 bytes a vector)."""
    first, last = plan.groups_of_pass(number)
    found, cosines = [], []
    with tempfile.TemporaryDirectory(prefix="pony-works-cells-") as spill:
        files = {g: {part: open(Path(spill) / f"{g}.{part}", "wb") for part in ("n", "cell", "vec")}
                 for g in range(first, last)}  # fmt: skip
        try:
            label = "works: embedding cells" + (f" (pass {number + 1} of {plan.passes})" if plan.passes > 1 else "")
            for shard_id, numbers, matrix in numbered_shards(conn, store, model, label, show_progress):
                assigned = None if assignments is None else assignments.get(shard_id)
                if assigned is None:
                    assigned = (plan.cells.assign(matrix).astype(np.int32) if plan.cells
                                else np.zeros((len(numbers), 1), np.int32))  # fmt: skip
                    if assignments is not None:
                        assignments[shard_id] = assigned
                for column in range(assigned.shape[1]):
                    group_of = assigned[:, column] % plan.groups
                    for g in np.unique(group_of[(group_of >= first) & (group_of < last)]):
                        rows = group_of == g
                        numbers[rows].astype(np.int32).tofile(files[g]["n"])
                        assigned[rows, column].tofile(files[g]["cell"])
                        np.ascontiguousarray(matrix[rows], dtype=np.float16).tofile(files[g]["vec"])
        finally:
            for group_files in files.values():
                for handle in group_files.values():
                    handle.close()
        for g in range(first, last):
            pairs, values = _join_group(Path(spill), g, model.dim, min_cosine, per_row, new)
            found.append(pairs)
            cosines.append(values)
    return np.concatenate(found), np.concatenate(cosines)


def new_vector_pairs(conn: psycopg2.extensions.connection, store: ObjectStore, model: EmbeddingModel,
                     plan: CellPlan, min_cosine: float, *, per_row: int | None, new: np.ndarray, budget_bytes: int,
                     show_progress: bool | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The pairs (a < b, not made unique) and cosines an incremental join finds — each new image's vector against
    every member of its cells, ``per_row`` best a cell — without a spill: the new vectors and their cells are held
    in memory (gathered from the shards that hold them), then the shards are read once more, a batch of about a
    sixth of the budget at a time, and each cell's members in the batch are compared with that cell's new vectors.
    What :func:`embedding_pass` finds for ``new``, with no vector written to disk (an incremental run's spill was
    every vector twice)."""
    numbers = np.flatnonzero(new)
    vectors, have = _gather(conn, store, model.model_id, numbers, model.dim)
    numbers, vectors = numbers[have], vectors[have]
    if not len(numbers):
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
    new_cells = (plan.cells.assign(vectors).astype(np.int64) if plan.cells
                 else np.zeros((len(numbers), 1), np.int64))  # fmt: skip
    by_cell = np.argsort(new_cells.ravel(), kind="stable")
    cell_of, row_of = new_cells.ravel()[by_cell], by_cell // new_cells.shape[1]
    cells, first = np.unique(cell_of, return_index=True)
    last = np.r_[first[1:], len(cell_of)]
    batch_rows = max(1, budget_bytes // 6 // (model.dim * 2))
    hits: list[tuple[np.ndarray, ...]] = []  # (new row, member number, cell, cosine) at or above min_cosine
    pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def compare() -> None:
        members = np.concatenate([p[0] for p in pending])
        matrix = np.concatenate([p[1] for p in pending])
        assigned = np.concatenate([p[2] for p in pending])
        pending.clear()
        member_cell = assigned.ravel()
        member_row = np.arange(len(member_cell)) // assigned.shape[1]
        position = np.searchsorted(cells, member_cell)
        wanted = position < len(cells)
        wanted[wanted] = cells[position[wanted]] == member_cell[wanted]
        member_row, position = member_row[wanted], position[wanted]
        order = np.argsort(position, kind="stable")
        member_row, position = member_row[order], position[order]
        starts = np.flatnonzero(np.r_[True, position[1:] != position[:-1]]) if len(position) else position
        for start, stop in zip(starts, np.r_[starts[1:], len(position)], strict=True):
            cell = position[start]
            left_rows = row_of[first[cell]:last[cell]]
            right_rows = member_row[start:stop]
            scores = vectors[left_rows].astype(np.float32) @ matrix[right_rows].astype(np.float32).T
            hit_left, hit_right = np.nonzero(scores >= min_cosine)
            if len(hit_left):
                hits.append((left_rows[hit_left], members[right_rows[hit_right]], np.full(len(hit_left), cell),
                             scores[hit_left, hit_right]))  # fmt: skip

    held = 0
    for _, members, matrix in numbered_shards(conn, store, model, "works: new vectors against their cells",
                                              show_progress):  # fmt: skip
        assigned = (plan.cells.assign(matrix).astype(np.int64) if plan.cells
                    else np.zeros((len(members), 1), np.int64))  # fmt: skip
        pending.append((members, matrix, assigned))
        held += len(members)
        if held >= batch_rows:
            compare()
            held = 0
    if pending:
        compare()
    if not hits:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
    left, right, cell, cosine = (np.concatenate(column) for column in zip(*hits, strict=True))
    if per_row is not None:  # each new vector's best per_row in a cell (ties kept), itself counted, as in a cell join
        key = left * len(cells) + cell
        order = np.lexsort((-cosine, key))
        key_sorted = key[order]
        starts = np.flatnonzero(np.r_[True, key_sorted[1:] != key_sorted[:-1]])
        counts = np.diff(np.r_[starts, len(order)])
        kth = np.full(len(starts), -np.inf, np.float32)
        full = counts >= per_row
        kth[full] = cosine[order][starts[full] + per_row - 1]
        keep = np.zeros(len(order), bool)
        keep[order] = cosine[order] >= np.repeat(kth, counts)
        left, right, cosine = left[keep], right[keep], cosine[keep]
    a = numbers[left]
    keep = a != right
    pairs = np.stack([np.minimum(a, right), np.maximum(a, right)], 1)[keep]
    return pairs, cosine[keep]


def _join_group(spill: Path, group: int, dim: int, min_cosine: float, per_row: int | None,
                new: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    numbers = np.fromfile(spill / f"{group}.n", dtype=np.int32).astype(np.int64)
    cells = np.fromfile(spill / f"{group}.cell", dtype=np.int32)
    vectors = np.fromfile(spill / f"{group}.vec", dtype=np.float16).reshape(-1, dim)
    order = np.argsort(cells, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(cells[order]) != 0]) if len(order) else np.zeros(0, np.int64)
    found, cosines = [], []
    for start, stop in zip(starts, np.r_[starts[1:], len(order)], strict=True):
        members = order[start:stop]
        if len(members) < 2:
            continue
        member_numbers = numbers[members]
        rows = np.asarray(vectors[members], dtype=np.float32)
        if new is None:
            pairs, values = _pairs_above(rows, rows, min_cosine, member_numbers, member_numbers, True, per_row)
        else:
            fresh = new[member_numbers]
            if not fresh.any():
                continue
            pairs, values = _pairs_above(rows[fresh], rows, min_cosine, member_numbers[fresh], member_numbers, False,
                                         per_row)  # fmt: skip
        found.append(pairs)
        cosines.append(values)
    if not found:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
    return np.concatenate(found), np.concatenate(cosines)


def _gather(conn, store: ObjectStore, model_id: int, images: np.ndarray, dim: int
            ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(float16 rows aligned with ``images`` (sorted numbers), a bool per image: it has a vector), reading each shard
    that holds one of them once."""
    vectors = np.zeros((len(images), dim), np.float16)
    have = np.zeros(len(images), bool)
    with conn.cursor(name="works_gather") as cur:
        cur.itersize = 50_000
        cur.execute("""SELECT s.storage_key, e.row, w.n FROM unnest(%s::int[]) AS q(n)
                       JOIN works_image w ON w.n = q.n
                       JOIN image_embedding e ON e.sha256 = w.sha256 AND e.model_id = %s
                       JOIN embedding_shard s ON s.shard_id = e.shard_id ORDER BY e.shard_id, e.row""",
                    (images.tolist(), model_id))  # fmt: skip
        key, rows, numbers = None, [], []

        def flush() -> None:
            if rows:
                position = np.searchsorted(images, numbers)
                vectors[position] = read_shard(store, key)[rows]
                have[position] = True

        for storage_key, row, n in cur:
            if storage_key != key:
                flush()
                key, rows, numbers = storage_key, [], []
            rows.append(row)
            numbers.append(n)
        flush()
    return vectors, have


def pair_cosines(conn: psycopg2.extensions.connection, store: ObjectStore, model: EmbeddingModel, pairs: np.ndarray,
                 *, budget_bytes: int) -> np.ndarray:  # fmt: skip
    """Cosine of each pair (NaN where an image has no vector of the model), gathering at most the budget's worth of
    vectors at once (a pass over the shards per that many images)."""
    cosines = np.full(len(pairs), np.nan, np.float32)
    per_pass = max(2, budget_bytes // 2 // max(1, model.dim * 2))  # images whose vectors fit half the budget
    for start in range(0, len(pairs), per_pass // 2):
        batch = pairs[start:start + per_pass // 2]
        images = np.unique(batch)
        vectors, have = _gather(conn, store, model.model_id, images, model.dim)
        a, b = np.searchsorted(images, batch[:, 0]), np.searchsorted(images, batch[:, 1])
        both = have[a] & have[b]
        left = vectors[a[both]].astype(np.float32)
        right = vectors[b[both]].astype(np.float32)
        cosines[start:start + len(batch)][both] = np.einsum("ij,ij->i", left, right)
    return cosines

