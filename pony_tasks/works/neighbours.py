"""Nearest neighbours for near-duplicate candidates, at the scale of a booru (millions of images).

- **Embeddings** (:class:`ClusterJoin`): every pair of L2-normalised vectors above a cosine, found the way NeMo
  Curator's SemDeDup does it — faiss k-means cells, then exact cosines (one matrix product per cell) among the
  members of each cell — with each vector in its ``assignments`` nearest cells (SemDeDup uses one; two recover the
  pairs that straddle a cell boundary). New vectors are matched against the cells they fall in, so 10,000 new images
  cost a few matrix products against 1M, not a rebuild. Below ``EXACT_LIMIT`` vectors the join is exact (all pairs).
- **Colour thumbnails** (:func:`thumbnail_pairs`): each row's ``k`` nearest rows with a faiss index (flat up to
  ``FLAT_KNN_LIMIT`` rows, an inverted file above).

``benchmarks/works.py`` measures the join on 1M 768-d fp16 embeddings against faiss's own inverted-file search and
an exact brute-force search in the same run (recall of the exact pairs on a sample, time, memory); ARCHITECTURE.md
(works) says why this and not pgvector's HNSW."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pony_tasks.works.packed_sort import sort_with_order

EXACT_LIMIT = 20_000  # up to this many vectors every pair is compared (a 20k × 20k product is cheap)
FLAT_KNN_LIMIT = 100_000  # up to this many rows a kNN search scans them all (48-d thumbnails: milliseconds a query)
CELLS_PER_ROOT = 2  # k-means cells: this many times the square root of the number of vectors (2,000 for 1M)
TRAIN_SAMPLE = 32  # vectors per cell used to train the cells
TRAIN_ITERATIONS = 10  # k-means iterations (faiss's default is 25; the cells only need to be roughly right)
ASSIGNMENTS = 2  # cells each vector joins
BLOCK = 4096  # rows per matrix product
GROUP_CHUNK = 1 << 20  # assignments per step of grouping rows by cell


def _scores(left: np.ndarray, right: np.ndarray, metric: str, right_norms: np.ndarray | None = None) -> np.ndarray:
    """Inner products (``ip``) or negative squared L2 distances (``l2``): higher is closer either way."""
    products = left @ right.T
    if metric == "ip":
        return products
    right_norms = (right * right).sum(axis=1) if right_norms is None else right_norms
    return 2 * products - (left * left).sum(axis=1)[:, None] - right_norms[None, :]


def _pairs_above(left, right, min_cosine: float, left_rows: np.ndarray, right_rows: np.ndarray, same: bool,
                 per_row: int | None = None, metric: str = "ip") -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Row pairs (a < b) of ``left`` × ``right`` (float32 matrices) scoring ≥ ``min_cosine`` (``metric`` ``ip``:
    cosines of unit rows; ``l2``: negative squared distances, so a bound of -d² keeps pairs within d); ``per_row``:
    only each left row's that many best."""
    found, cosines = [], []
    right_norms = (right * right).sum(axis=1) if metric == "l2" else None
    for start in range(0, left.shape[0], BLOCK):
        scores = _scores(left[start:start + BLOCK], right, metric, right_norms)
        if same:  # a row is not its own neighbour
            block = np.arange(scores.shape[0])
            scores[block, start + block] = -np.inf
        if per_row is not None and scores.shape[1] > per_row:
            kth = np.partition(scores, scores.shape[1] - per_row, axis=1)[:, scores.shape[1] - per_row][:, None]
            scores = np.where(scores >= kth, scores, -np.inf)
        hit_left, hit_right = np.nonzero(scores >= min_cosine)
        if not len(hit_left):
            continue
        a, b = left_rows[start + hit_left], right_rows[hit_right]
        keep = a != b
        found.append(np.stack([np.minimum(a, b), np.maximum(a, b)], 1)[keep])
        cosines.append(scores[hit_left, hit_right][keep])
    if not found:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
    return np.concatenate(found), np.concatenate(cosines)


def _unique(pairs: np.ndarray, cosines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not len(pairs):
        return pairs, cosines
    _, first = np.unique(pairs[:, 0] * (1 << 32) + pairs[:, 1], return_index=True)
    return pairs[first], cosines[first]


CELL_SIZE = 500  # vectors per cell of TwoLevelCells (each vector sits in ASSIGNMENTS cells: ~1,000 per cell)
MAX_TRAIN_VECTORS = 200_000  # training sample of TwoLevelCells, whatever the number of cells


def cell_count(count: int) -> int:
    """Cells for ``count`` vectors: one (an exact join) up to EXACT_LIMIT, else about CELL_SIZE vectors each — a
    join's work per vector stays the same at any size (cells of √n vectors would make it grow with √n)."""
    return 1 if count <= EXACT_LIMIT else max(2, count // CELL_SIZE)


def _kmeans(vectors: np.ndarray, clusters: int, metric: str, seed: int) -> np.ndarray:
    import faiss

    clusters = max(1, min(clusters, len(vectors)))
    if clusters == 1:
        centre = vectors.mean(axis=0, keepdims=True)
        return centre / max(float(np.linalg.norm(centre)), 1e-12) if metric == "ip" else centre
    kmeans = faiss.Kmeans(vectors.shape[1], clusters, niter=TRAIN_ITERATIONS, seed=seed, spherical=metric == "ip",
                          min_points_per_centroid=1, max_points_per_centroid=TRAIN_SAMPLE, verbose=False)  # fmt: skip
    kmeans.train(np.ascontiguousarray(vectors, dtype=np.float32))
    return kmeans.centroids


def _best(scores: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(columns, scores) of each row's ``count`` highest scores."""
    count = min(count, scores.shape[1])
    columns = np.argpartition(-scores, count - 1, axis=1)[:, :count]
    return columns, np.take_along_axis(scores, columns, axis=1)


@dataclass
class TwoLevelCells:
    """k-means cells of about CELL_SIZE vectors, found in two levels — √cells coarse centroids, then √cells fine
    centroids inside each coarse cell, trained on at most MAX_TRAIN_VECTORS vectors — so that assigning a vector
    costs about 2·√cells products, not one per cell (faiss's two-level quantizers do the same). A vector's cells are
    its ``assignments`` nearest fine centroids within its two nearest coarse cells."""

    coarse: np.ndarray  # (coarse cells, d) float32
    fine: list[np.ndarray]  # per coarse cell, its fine centroids
    offsets: np.ndarray  # the global number of coarse cell i's first fine cell
    metric: str = "ip"

    @property
    def cells(self) -> int:
        return int(self.offsets[-1])

    @classmethod
    def train(cls, sample: np.ndarray, cells: int, *, metric: str = "ip", seed: int = 0) -> TwoLevelCells:
        sample = np.ascontiguousarray(sample, dtype=np.float32)
        if len(sample) > MAX_TRAIN_VECTORS:
            sample = sample[np.sort(np.random.default_rng(seed).choice(len(sample), MAX_TRAIN_VECTORS, replace=False))]
        top = max(1, int(round(math.sqrt(cells))))
        coarse = _kmeans(sample, top, metric, seed)
        nearest = _best(_scores(sample, coarse, metric), 1)[0][:, 0]
        fine = []
        for cell in range(len(coarse)):
            members = sample[nearest == cell]
            share = max(1, int(round(cells * len(members) / max(1, len(sample)))))
            fine.append(_kmeans(members, share, metric, seed + cell + 1) if len(members) else coarse[cell:cell + 1])
        offsets = np.concatenate([[0], np.cumsum([len(f) for f in fine])]).astype(np.int64)
        return cls(coarse, fine, offsets, metric)

    def arrays(self) -> dict[str, np.ndarray]:
        """The cells as plain arrays (``np.savez``; :meth:`from_arrays` reads them back): what a plan hands to the
        mapped tasks that must assign vectors to the same cells."""
        return {"coarse": self.coarse, "fine": np.concatenate(self.fine), "offsets": self.offsets,
                "metric": np.array(self.metric)}  # fmt: skip

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> TwoLevelCells:
        offsets = arrays["offsets"].astype(np.int64)
        fine = [arrays["fine"][offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
        return cls(arrays["coarse"], fine, offsets, str(arrays["metric"]))

    def assign(self, vectors: np.ndarray, assignments: int = ASSIGNMENTS) -> np.ndarray:
        """Each row's ``assignments`` nearest cells (global numbers), (rows, assignments) int64."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        probes = min(2, len(self.coarse))
        result = np.empty((len(vectors), assignments), np.int64)
        for start in range(0, len(vectors), 65536):
            block = vectors[start:start + 65536]
            near = _best(_scores(block, self.coarse, self.metric), probes)[0]
            ids = np.full((len(block), probes * assignments), -1, np.int64)
            scores = np.full((len(block), probes * assignments), -np.inf, np.float32)
            for probe in range(probes):
                for cell in np.unique(near[:, probe]):
                    rows = np.flatnonzero(near[:, probe] == cell)
                    columns, best = _best(_scores(block[rows], self.fine[cell], self.metric), assignments)
                    slots = slice(probe * assignments, probe * assignments + columns.shape[1])
                    ids[rows, slots] = self.offsets[cell] + columns
                    scores[rows, slots] = best
            order = np.argsort(-scores, axis=1)[:, :assignments]
            chosen = np.take_along_axis(ids, order, axis=1)
            chosen[chosen < 0] = chosen[:, :1].repeat(assignments, axis=1)[chosen < 0]  # fewer cells than asked
            result[start:start + len(block)] = chosen
        return result


@dataclass
class ClusterJoin:
    """Cells over a set of vectors; ``pairs`` joins them, ``add`` matches new vectors against them."""

    vectors: np.ndarray  # float16 or float32, L2-normalised rows
    assignments: int = ASSIGNMENTS
    per_row: int | None = None  # keep only each vector's that many best pairs per cell (None: all above the cosine)
    seed: int = 0
    centroids: np.ndarray | None = None  # None: one cell holding everything (exact)
    members: list[np.ndarray] = field(default_factory=list)

    @classmethod
    def build(cls, vectors: np.ndarray, *, assignments: int = ASSIGNMENTS, seed: int = 0, exact: bool | None = None,
              per_row: int | None = None) -> ClusterJoin:  # fmt: skip
        join = cls(vectors, assignments, per_row, seed)
        count = len(vectors)
        if exact or (exact is None and count <= EXACT_LIMIT):
            join.members = [np.arange(count)]
            return join
        import faiss

        cells = max(2, int(CELLS_PER_ROOT * math.sqrt(count)))
        kmeans = faiss.Kmeans(vectors.shape[1], cells, niter=TRAIN_ITERATIONS, seed=seed, spherical=True,
                              min_points_per_centroid=1,
                              max_points_per_centroid=TRAIN_SAMPLE, verbose=False)  # fmt: skip
        sample = np.sort(np.random.default_rng(seed).choice(count, size=min(count, cells * TRAIN_SAMPLE),
                                                            replace=False))  # fmt: skip
        kmeans.train(np.ascontiguousarray(vectors[sample], dtype=np.float32))
        join.centroids = kmeans.centroids
        join.members = join._group(join._assign(vectors), np.arange(count), cells)
        return join

    def _assign(self, vectors: np.ndarray) -> np.ndarray:
        """Each row's ``assignments`` nearest cells."""
        centroids = np.ascontiguousarray(self.centroids, dtype=np.float32)
        cells = np.empty((len(vectors), self.assignments), np.int64)
        for start in range(0, len(vectors), 65536):
            scores = np.asarray(vectors[start:start + 65536], dtype=np.float32) @ centroids.T
            cells[start:start + 65536] = np.argpartition(-scores, self.assignments - 1, axis=1)[:, :self.assignments]
        return cells

    @staticmethod
    def _group(cells: np.ndarray, rows: np.ndarray | None, count: int) -> list[np.ndarray]:
        """Each cell's rows (``rows[i]`` for the i-th row of ``cells``; None: i itself), in row order: one packed
        in-place sort (:func:`sort_with_order`: 12 bytes an assignment besides the result, where an argsort, the
        sorted cells and the repeated rows took 24)."""
        flat, order = sort_with_order(cells.ravel().astype(np.uint64), max(1, int(count).bit_length()))
        bounds = np.searchsorted(flat, np.arange(count + 1, dtype=np.uint64))
        del flat
        owners = np.empty(len(order), np.int64 if rows is None else rows.dtype)
        for start in range(0, len(order), GROUP_CHUNK):
            positions = order[start:start + GROUP_CHUNK] // cells.shape[1]
            owners[start:start + GROUP_CHUNK] = positions if rows is None else rows[positions]
        del order
        return [owners[bounds[c]:bounds[c + 1]] for c in range(count)]

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.vectors[rows], dtype=np.float32)

    def pairs(self, min_cosine: float, progress: Callable[[int], None] | None = None
              ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """(row pairs a < b, their cosines) of every pair in a common cell with cosine ≥ ``min_cosine``."""
        found, cosines = [], []
        for members in self.members:
            if len(members) > 1:
                rows = self._rows(members)
                pairs, values = _pairs_above(rows, rows, min_cosine, members, members, True, self.per_row)
                found.append(pairs)
                cosines.append(values)
            if progress:
                progress(1)
        if not found:
            return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
        return _unique(np.concatenate(found), np.concatenate(cosines))

    def add(self, new_vectors: np.ndarray, min_cosine: float) -> tuple[np.ndarray, np.ndarray]:
        """Append ``new_vectors`` (rows numbered after the existing ones) and return their pairs ≥ ``min_cosine``
        with the vectors in their cells and with each other."""
        first = len(self.vectors)
        self.vectors = np.concatenate([self.vectors, new_vectors.astype(self.vectors.dtype)])
        new_rows = np.arange(first, len(self.vectors))
        if self.centroids is None:
            old = self.members[0]
            self.members = [np.concatenate([old, new_rows])]
            groups = {0: new_rows}
        else:
            assigned = self._group(self._assign(new_vectors), new_rows, len(self.members))
            groups = {c: rows for c, rows in enumerate(assigned) if len(rows)}
        found, cosines = [], []
        for cell, rows in groups.items():
            members = self.members[cell] if self.centroids is None else np.concatenate([self.members[cell], rows])
            if self.centroids is not None:
                self.members[cell] = members
            pairs, values = _pairs_above(self._rows(rows), self._rows(members), min_cosine, rows, members, False,
                                         self.per_row)  # fmt: skip
            found.append(pairs)
            cosines.append(values)
        if not found:
            return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
        return _unique(np.concatenate(found), np.concatenate(cosines))


def build_index(vectors: np.ndarray, metric: str = "ip", *, exact: bool | None = None, seed: int = 0,
                nprobe: int = 8):  # fmt: skip
    """A faiss kNN index over ``vectors`` (float32 rows). ``metric``: ``ip`` (cosine for L2-normalised rows) or
    ``l2``. Flat (exact) up to ``FLAT_KNN_LIMIT`` rows unless ``exact`` says; an inverted file above (k-means cells
    trained like :class:`ClusterJoin`'s, ``nprobe`` cells scanned per query)."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    count, dim = vectors.shape
    faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2
    if exact or (exact is None and count <= FLAT_KNN_LIMIT):
        index = faiss.IndexFlat(dim, faiss_metric)
        index.add(vectors)
        return index
    cells = max(2, int(CELLS_PER_ROOT * math.sqrt(count)))
    index = faiss.IndexIVFFlat(faiss.IndexFlat(dim, faiss_metric), dim, cells, faiss_metric)
    index.cp.niter = TRAIN_ITERATIONS
    index.cp.seed = seed
    sample = np.random.default_rng(seed).choice(count, size=min(count, cells * TRAIN_SAMPLE), replace=False)
    index.train(vectors[np.sort(sample)])
    index.add(vectors)
    index.nprobe = nprobe
    return index


def thumbnail_pairs(thumbs: np.ndarray, *, k: int, bound: float, query: np.ndarray | None = None,
                    exact: bool | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(row pairs a < b, squared L2 distances) of every row's ``k`` nearest other rows within ``bound``, over uint8
    thumbnails (one row of 48 numbers per image); ``query``: only these rows look for neighbours (incremental
    matching). Up to ``FLAT_KNN_LIMIT`` rows (or ``exact``) a flat faiss index; above, :class:`TwoLevelCells` over
    the thumbnails and each row's nearest within its cells, exactly — work per row that does not grow with the
    number of rows (an inverted file's cells of √n rows would)."""
    count = len(thumbs)
    rows = None if query is None else np.asarray(query, dtype=np.int64)  # None: every row
    if count < 2 or (rows is not None and not len(rows)):
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
    if exact or (exact is None and count <= FLAT_KNN_LIMIT):
        import faiss

        rows = np.arange(count) if rows is None else rows

        index = faiss.IndexFlatL2(thumbs.shape[1])
        index.add(thumbs.astype(np.float32))
        found, distances = [], []
        for start in range(0, len(rows), 8192):
            chunk = rows[start:start + 8192]
            scores, others = index.search(thumbs[chunk].astype(np.float32), min(k + 1, count))
            keep = (others >= 0) & (others != chunk[:, None]) & (scores <= bound)
            left, right = np.broadcast_to(chunk[:, None], others.shape)[keep], others[keep]
            found.append(np.stack([np.minimum(left, right), np.maximum(left, right)], 1))
            distances.append(scores[keep])
        return _unique(np.concatenate(found), np.concatenate(distances))
    sample = thumbs[np.sort(np.random.default_rng(seed).choice(count, min(count, MAX_TRAIN_VECTORS), replace=False))]
    cells = TwoLevelCells.train(sample.astype(np.float32), cell_count(count), metric="l2", seed=seed)
    assigned = np.empty((count, ASSIGNMENTS), np.int32)  # 8 bytes a row, not chunks of int64 and their concatenation
    for start in range(0, count, 65536):
        assigned[start:start + 65536] = cells.assign(thumbs[start:start + 65536].astype(np.float32))
    querying = np.ones(count, bool) if rows is None else np.zeros(count, bool)
    if rows is not None:
        querying[rows] = True
    members = ClusterJoin._group(assigned, None, cells.cells)
    del assigned
    found, distances = [], []
    for cell_rows in members:
        asking = cell_rows[querying[cell_rows]]
        if len(cell_rows) < 2 or not len(asking):
            continue
        right = thumbs[cell_rows].astype(np.float32)
        pairs, scores = _pairs_above(thumbs[asking].astype(np.float32), right, -bound, asking, cell_rows, False,
                                     k + 1, metric="l2")  # fmt: skip (k + 1: a row finds itself, dropped)
        found.append(pairs)
        distances.append(-scores)
    if not found:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
    return _unique(np.concatenate(found), np.concatenate(distances).astype(np.float32))


def median_random_cosine(vectors: np.ndarray, *, sample: int = 2000, seed: int = 0) -> float:
    """Median cosine of random pairs of rows. Real CLIP embeddings of unrelated pictures sit around 0.4–0.6; an
    untrained model (the demo's seeded random one) puts almost every pair above 0.9 — its neighbours mean nothing."""
    if len(vectors) < 2:
        return 0.0
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(vectors), sample), rng.integers(0, len(vectors), sample)
    keep = a != b
    left = np.asarray(vectors[a[keep]], dtype=np.float32)
    right = np.asarray(vectors[b[keep]], dtype=np.float32)
    return float(np.median(np.einsum("ij,ij->i", left, right)))
