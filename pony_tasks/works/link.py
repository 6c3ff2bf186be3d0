"""Group images into works: candidates → judged pairs (stored with evidence) → connected components of the
``duplicate`` pairs, never joining two images an operator said are distinct → works whose ids stay stable across
runs. Operator decisions are never overwritten by the matcher; a re-run with nothing new changes nothing."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import numpy as np
import psycopg2.extensions

from pony_tasks.config import Settings, get_settings
from pony_tasks.db import connect
from pony_tasks.db.bulk import copy_rows, foreign_keys_checked_once
from pony_tasks.runs import recorded_run
from pony_tasks.storage import open_store
from pony_tasks.works.candidates import (
    EMBEDDING,
    EMBEDDING_NEIGHBOURS,
    MIN_CANDIDATE_COSINE,
    Candidates,
    merge_candidates,
    signal_candidates,
)
from pony_tasks.works.catalogue import (
    FACT_COLUMNS,
    FACT_JOINS,
    FETCH_ROWS,
    facts_of,
    image_facts,
    number_images,
    search_signals,
    unlinked,
)
from pony_tasks.works.decide import canonical_image, judge
from pony_tasks.works.embedding_join import EmbeddingModel, embedding_pairs, pair_cosines, usable_model

log = logging.getLogger(__name__)


@dataclass
class WorksReport:
    images: int = 0
    candidates: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    works: int = 0
    multi_image_works: int = 0
    changed_images: int = 0
    embeddings: str = ""
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each phase

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time one phase of the run (logged, and kept in the run's summary)."""
        started = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - started, 1)
        log.info("works: %s in %.1f s", name, self.seconds[name])

    def summary(self) -> str:
        return (f"works: {self.images} images in {self.works} works ({self.multi_image_works} with more than one "
                f"image); {self.candidates} candidate pairs judged {dict(sorted(self.verdicts.items()))}; "
                f"{self.changed_images} images changed work; {self.embeddings}")  # fmt: skip


MAX_UNRELATED_COSINE = 0.8  # median cosine of random pairs above which a model's embeddings are not used
BULK_MEMBERSHIPS = 100_000  # from this many images moving (and half of all), foreign keys are checked by one join
JUDGE_BATCH_PAIRS = 20_000  # pairs judged per batch: the full facts of at most twice as many images in memory


def embeddings_to_use(conn: psycopg2.extensions.connection, store) -> tuple[EmbeddingModel | None, str]:
    """The newest embedding model when its embeddings tell pictures apart (else None), and what to say of it."""
    model = usable_model(conn, store)
    if model is None:
        return None, "no embeddings yet"
    if model.vectors < 2 or model.median_cosine > MAX_UNRELATED_COSINE:
        text = (f"embeddings of model {model.model_id} ({model.name}) not used: random pairs have a median cosine of "
                f"{model.median_cosine:.2f} (> {MAX_UNRELATED_COSINE}: the model does not tell pictures apart)")
        log.warning("works: %s", text)
        return None, text
    return model, (f"embeddings of model {model.model_id} ({model.name}) used (random pairs: median cosine "
                   f"{model.median_cosine:.2f})")  # fmt: skip


def find_candidates(conn: psycopg2.extensions.connection, settings: Settings, count: int, new: np.ndarray | None,
                    report: WorksReport, plan_key: str | None = None) -> Candidates:  # fmt: skip
    """pHash and thumbnail candidates, then — when the newest embedding model tells pictures apart — embedding
    candidates (found here, or by the mapped tasks of plan ``plan_key``: :mod:`pony_tasks.works.parts`) and the
    cosine of every candidate pair (what the judge's embedding veto reads)."""
    budget = settings.memory_budget_mib * 2**20
    with report.phase("signals read"):
        signals = search_signals(conn, count)
    with report.phase("pHash and thumbnail candidates"):
        found = signal_candidates(signals, new)
    del signals
    store = open_store(settings=settings)
    model, report.embeddings = embeddings_to_use(conn, store)
    if plan_key is not None:
        from pony_tasks.works.parts import planned_pairs

        with report.phase("embedding candidates of the plan's parts read"):
            pairs, cosines = planned_pairs(conn, plan_key, None if model is None else model.model_id)
    elif model is None or (new is not None and not new.any()):
        return found
    else:
        with report.phase("embedding candidates"):
            pairs, cosines = embedding_pairs(conn, store, model, MIN_CANDIDATE_COSINE, per_row=EMBEDDING_NEIGHBOURS,
                                             new=new, budget_bytes=budget,
                                             scratch_bytes=settings.scratch_budget_mib * 2**20)  # fmt: skip
    if model is None:
        return found
    found = merge_candidates([(found.pairs, found.sources, None), (pairs, EMBEDDING, cosines)])
    unknown = np.flatnonzero(np.isnan(found.cosines))
    if len(unknown):
        with report.phase(f"cosines of {len(unknown)} other pairs"):
            found.cosines[unknown] = pair_cosines(conn, store, model, found.pairs[unknown], budget_bytes=budget)
    return found


def judge_candidates(conn: psycopg2.extensions.connection, candidates: Candidates, *, bulk: bool = False) -> Counter:
    """Judge every candidate pair and store the matcher's verdicts (operator decisions are left as they are), a
    batch of pairs at a time: the facts of a batch's images are read, judged, and copied out before the next.
    ``bulk`` (a full run of at least ``BULK_MEMBERSHIPS`` pairs): ``work_pair``'s foreign keys are checked by one
    join each after the upsert instead of two index probes into ``image`` per new pair."""
    verdicts: Counter = Counter()
    with conn.cursor() as cur:
        cur.execute("CREATE TEMPORARY TABLE works_judged (sha_a text, sha_b text, verdict text, evidence jsonb) "
                    "ON COMMIT DROP")  # fmt: skip
        for start in range(0, len(candidates.pairs), JUDGE_BATCH_PAIRS):
            batch = candidates.pairs[start:start + JUDGE_BATCH_PAIRS]
            facts = facts_of(conn, np.unique(batch).tolist())
            rows = []
            for offset, (a, b) in enumerate(batch.tolist()):
                cosine = float(candidates.cosines[start + offset])
                verdict, evidence = judge(facts[a], facts[b], None if np.isnan(cosine) else cosine)
                evidence["found_by"] = candidates.found_by(start + offset)
                verdicts[verdict] += 1
                rows.append((facts[a].sha256, facts[b].sha256, verdict, json.dumps(evidence)))
            copy_rows(cur, "works_judged", ("sha_a", "sha_b", "verdict", "evidence"), rows)
        with ExitStack() as keys:
            if bulk and len(candidates.pairs) >= BULK_MEMBERSHIPS:
                keys.enter_context(_step("pair foreign keys dropped and checked again"))
                keys.enter_context(foreign_keys_checked_once(cur, "work_pair"))
            cur.execute("""INSERT INTO work_pair (sha_a, sha_b, verdict, decided_by, evidence)
                           SELECT sha_a, sha_b, verdict, 'matcher', evidence FROM works_judged ORDER BY sha_a, sha_b
                           ON CONFLICT (sha_a, sha_b) DO UPDATE SET verdict = EXCLUDED.verdict,
                               evidence = EXCLUDED.evidence, decided_at = now()
                           WHERE work_pair.decided_by = 'matcher' AND (work_pair.verdict, work_pair.evidence)
                                 IS DISTINCT FROM (EXCLUDED.verdict, EXCLUDED.evidence)""")
        cur.execute("DROP TABLE works_judged")
    return verdicts


def components(shas: list, duplicates: list[tuple], distinct: set[tuple]) -> list[set]:
    """Connected components of the duplicate pairs, never merging two components when that would put a pair an
    operator called distinct into one work (pairs processed in the given order)."""
    parent = {sha: sha for sha in shas}
    members = {sha: {sha} for sha in shas}

    def root(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    forbidden: dict = {}
    for a, b in distinct:
        forbidden.setdefault(a, set()).add(b)
        forbidden.setdefault(b, set()).add(a)
    for a, b in duplicates:
        ra, rb = root(a), root(b)
        if ra == rb:
            continue
        small, large = sorted((ra, rb), key=lambda r: len(members[r]))
        if any(forbidden.get(sha, set()) & members[large] for sha in members[small]):
            continue  # an operator split these apart
        parent[small] = large
        members[large] |= members.pop(small)
    return [members[r] for r in {root(s) for s in shas}]


def _number_pairs(conn: psycopg2.extensions.connection, where: str) -> np.ndarray:
    """(m, 2) image numbers of the stored pairs matching ``where`` (both images numbered), sorted."""
    parts = []
    with conn.cursor(name="works_pairs") as cur:
        cur.itersize = FETCH_ROWS
        cur.execute(f"""SELECT wa.n, wb.n FROM work_pair p JOIN works_image wa ON wa.sha256 = p.sha_a
                        JOIN works_image wb ON wb.sha256 = p.sha_b WHERE {where}""")  # fmt: skip
        while rows := cur.fetchmany(FETCH_ROWS):
            parts.append(np.array(rows, dtype=np.int64).reshape(-1, 2))
    pairs = np.concatenate(parts) if parts else np.zeros((0, 2), np.int64)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def component_labels(count: int, duplicates: np.ndarray, distinct: np.ndarray) -> np.ndarray:
    """A label 0…g-1 per image: connected components of the duplicate pairs (scipy's, linear), except that a
    component holding a pair an operator called distinct is split again by :func:`components` (only its images)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if count == 0:
        return np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(len(duplicates), np.int8), (duplicates[:, 0], duplicates[:, 1])),
                       shape=(count, count))  # fmt: skip
    _, labels = connected_components(graph, directed=False)
    labels = labels.astype(np.int64)
    clash = labels[distinct[:, 0]] == labels[distinct[:, 1]] if len(distinct) else np.zeros(0, bool)
    if clash.any():
        bad = np.unique(labels[distinct[clash, 0]])
        inside = np.isin(labels[duplicates[:, 0]], bad)
        images = np.flatnonzero(np.isin(labels, bad)).tolist()
        groups = components(images, [tuple(p) for p in duplicates[inside].tolist()],
                            {tuple(p) for p in distinct.tolist()})  # fmt: skip
        next_label = int(labels.max()) + 1
        for group in groups:
            labels[list(group)] = next_label
            next_label += 1
    return np.unique(labels, return_inverse=True)[1].astype(np.int64)


def _current_works(conn: psycopg2.extensions.connection, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(each image's work id or -1, whether it is its work's canonical image)."""
    current = np.full(count, -1, np.int64)
    canonical = np.zeros(count, bool)
    with conn.cursor(name="works_current") as cur:
        cur.itersize = FETCH_ROWS
        cur.execute("""SELECT w.n, i.work_id, k.canonical_sha256 = w.sha256 FROM works_image w
                       JOIN work_image i ON i.sha256 = w.sha256 JOIN work k ON k.work_id = i.work_id""")
        while rows := cur.fetchmany(FETCH_ROWS):
            block = np.array(rows, dtype=np.int64).reshape(-1, 3)
            current[block[:, 0]] = block[:, 1]
            canonical[block[:, 0]] = block[:, 2] == 1
    return current, canonical


def _choose_works(labels: np.ndarray, current: np.ndarray, canonical: np.ndarray, group_rank: np.ndarray
                  ) -> np.ndarray:  # fmt: skip
    """Each group's work id (-1: a new work): groups in ``group_rank`` order each take, of the works their images
    already belong to and no earlier group took, the one whose canonical image they hold, else the one holding most
    of their images, else the lowest id. Only groups that share a work with another group need the ordered pass;
    the rest take their first choice at once."""
    groups = len(group_rank)
    chosen = np.full(groups, -1, np.int64)
    held = np.flatnonzero(current >= 0)
    if not len(held):
        return chosen
    label, work = labels[held], current[held]
    span = int(work.max()) + 1  # (group, work) pairs as one integer key
    keys, inverse, counts = np.unique(label * span + work, return_inverse=True, return_counts=True)
    row_label, row_work = keys // span, keys % span
    row_canonical = np.bincount(inverse, weights=canonical[held], minlength=len(keys)) > 0
    order = np.lexsort((row_work, -counts, ~row_canonical, row_label))  # each group's rows, best first
    row_label, row_work = row_label[order], row_work[order]
    works, groups_per_work = np.unique(row_work, return_counts=True)
    contested_rows = np.isin(row_work, works[groups_per_work > 1])
    contested = np.zeros(groups, bool)
    contested[row_label[contested_rows]] = True
    first = np.flatnonzero(np.r_[True, row_label[1:] != row_label[:-1]])
    easy = ~contested[row_label[first]]
    chosen[row_label[first][easy]] = row_work[first][easy]
    hard = np.flatnonzero(contested[row_label])
    rows_of: dict[int, list[int]] = {}
    for group, work_id in zip(row_label[hard].tolist(), row_work[hard].tolist(), strict=True):
        rows_of.setdefault(group, []).append(work_id)
    taken: set[int] = set()
    for group in sorted(rows_of, key=lambda g: group_rank[g]):
        for work_id in rows_of[group]:
            if work_id not in taken:
                chosen[group] = work_id
                taken.add(work_id)
                break
    return chosen


def _canonical_images(conn: psycopg2.extensions.connection, labels: np.ndarray, sizes: np.ndarray,
                      skip: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Each group's canonical image number (``decide.canonical_image`` over the facts of a group of several, read
    group by group from a server-side cursor; a group of one is its image); -1 for the groups ``skip`` marks."""
    canonical = np.full(len(sizes), -1, np.int64)
    single = sizes[labels] == 1
    canonical[labels[single]] = np.flatnonzero(single)
    several = np.flatnonzero(~single if skip is None else ~single & ~skip[labels])
    if not len(several):
        return canonical
    with conn.cursor() as cur:
        cur.execute("CREATE TEMPORARY TABLE works_group (n int, label bigint) ON COMMIT DROP")
        copy_rows(cur, "works_group", ("n", "label"), _rows(several, labels[several]))
    with conn.cursor(name="works_group_facts") as cur:
        cur.itersize = FETCH_ROWS
        cur.execute(f"""SELECT g.label, {FACT_COLUMNS} FROM works_group g JOIN works_image w ON w.n = g.n
                        {FACT_JOINS} ORDER BY g.label""")  # fmt: skip
        group, numbers, members = None, [], []

        def close() -> None:
            best = canonical_image(members)
            canonical[group] = numbers[next(i for i, facts in enumerate(members) if facts is best)]

        for label, *row in cur:
            if label != group and members:
                close()
                numbers, members = [], []
            group = label
            n, facts = image_facts(tuple(row))
            numbers.append(n)
            members.append(facts)
        if members:
            close()
    with conn.cursor() as cur:
        cur.execute("DROP TABLE works_group")
    return canonical


@contextmanager
def _step(name: str) -> Iterator[None]:
    """Log one step of linking with its wall time (the linking phase's own breakdown)."""
    started = time.perf_counter()
    yield
    log.info("works: linking: %s in %.1f s", name, time.perf_counter() - started)


def _heap_order(conn: psycopg2.extensions.connection, numbers: np.ndarray) -> np.ndarray:
    """The permutation that puts image ``numbers`` in the order of their rows in the ``image`` table."""
    if len(numbers) < 2:
        return np.arange(len(numbers))
    with conn.cursor() as cur:
        cur.execute("CREATE TEMPORARY TABLE works_order (i int, n int) ON COMMIT DROP")
        copy_rows(cur, "works_order", ("i", "n"), _rows(np.arange(len(numbers)), numbers))
    with conn.cursor(name="works_heap_order") as cur:
        cur.itersize = FETCH_ROWS
        cur.execute("SELECT o.i FROM works_order o JOIN works_image w ON w.n = o.n ORDER BY w.heap")
        order = np.fromiter((row[0] for row in cur), np.int64, count=len(numbers))
    with conn.cursor() as cur:
        cur.execute("DROP TABLE works_order")
    return order


def _rows(*columns: np.ndarray) -> Iterator[tuple]:
    """Rows of equal-length numpy columns as Python numbers, a page at a time (never every row as a Python list)."""
    for start in range(0, len(columns[0]), FETCH_ROWS):
        yield from zip(*(column[start:start + FETCH_ROWS].tolist() for column in columns), strict=True)


def settled_groups(labels: np.ndarray, current: np.ndarray, canonical: np.ndarray, groups: int) -> np.ndarray:
    """A bool per group: its images are exactly one existing work's numbered images, one of them that work's
    canonical image — a group linking leaves as it is (an incremental run does not look at it again)."""
    if not len(labels):
        return np.zeros(groups, bool)
    order = np.argsort(labels, kind="stable")
    starts = np.flatnonzero(np.r_[True, labels[order][1:] != labels[order][:-1]])
    lowest = np.minimum.reduceat(current[order], starts)
    highest = np.maximum.reduceat(current[order], starts)
    sizes = np.diff(np.r_[starts, len(order)])
    works, members = np.unique(current[current >= 0], return_counts=True)
    if not len(works):
        return np.zeros(groups, bool)
    found = np.minimum(np.searchsorted(works, lowest), len(works) - 1)
    whole = (lowest >= 0) & (lowest == highest) & (works[found] == lowest) & (members[found] == sizes)
    settled = np.zeros(groups, bool)
    settled[labels[order][starts]] = whole
    return settled & (np.bincount(labels[canonical], minlength=groups) == 1)


def link_works(conn: psycopg2.extensions.connection, count: int, *, only_changed: bool = False
               ) -> tuple[int, int, int]:  # fmt: skip
    """Rewrite work membership from the stored pair decisions; returns (works, multi-image works, images that
    changed work). A group keeps the work id most of its images already had (stable ids). ``only_changed`` (an
    incremental run): a group that is exactly one existing work keeps that work's canonical image (a full run
    chooses every work's canonical image again, from the facts as they are now), so only the groups that gained,
    lost or merged images read their facts, and only the works that lost images are checked for emptiness. Memory:
    a few numpy numbers per image and per duplicate pair; the facts of one group at a time."""
    with _step("pairs read, components"):
        duplicates = _number_pairs(conn, "p.verdict = 'duplicate'")
        distinct = _number_pairs(conn, "p.verdict = 'distinct' AND p.decided_by = 'operator'")
        labels = component_labels(count, duplicates, distinct)
    del duplicates
    groups = int(labels.max()) + 1 if count else 0
    sizes = np.bincount(labels, minlength=groups)
    with _step("current works read"):
        current, is_canonical = _current_works(conn, count)
    # A work's id goes to the group that holds its canonical image, else to the group holding most of its images.
    canonical_held = np.bincount(labels[is_canonical], minlength=groups)
    first = np.full(groups, count, np.int64)
    np.minimum.at(first, labels, np.arange(count))  # numbers follow sha256: the group's smallest sha256
    group_rank = np.empty(groups, np.int64)
    group_rank[np.lexsort((first, -sizes, -canonical_held))] = np.arange(groups)
    chosen = _choose_works(labels, current, is_canonical, group_rank)
    settled = settled_groups(labels, current, is_canonical, groups) if only_changed else np.zeros(groups, bool)
    with _step(f"canonical images chosen ({groups - int(settled.sum())} groups)"):
        canonical = _canonical_images(conn, labels, sizes, skip=settled)
        canonical[labels[is_canonical & settled[labels]]] = np.flatnonzero(is_canonical & settled[labels])
    kept = np.flatnonzero(chosen >= 0)
    unchanged = is_canonical[canonical[kept]] & (current[canonical[kept]] == chosen[kept])
    updates = kept[~unchanged]  # works that continue with another canonical image
    fresh = np.flatnonzero(chosen < 0)
    with _step(f"{len(fresh)} new works put in image-row order"):
        fresh = fresh[_heap_order(conn, canonical[fresh])]  # new ids follow their canonical image rows' places
    # Written set-wise (COPY into temporary tables, one statement each): a first run at the real size moves every
    # image, and a statement per image would be tens of millions of round trips. Rows are written in the order of
    # the image rows they reference: each foreign-key check locks its image row, and in sha256 order every check
    # visits a random page of a table larger than memory (the 10M first build's linking took 30× its 1M time).
    # a first run reserves one id per image: read from a server-side cursor a page at a time straight into numpy
    # (a client-side cursor would hold the whole result in libpq's memory however it is fetched)
    with conn.cursor(name="works_new_ids") as ids:
        ids.itersize = FETCH_ROWS
        ids.execute("SELECT nextval(pg_get_serial_sequence('work', 'work_id')) FROM generate_series(1, %s)",
                    (len(fresh),))  # fmt: skip
        chosen[fresh] = np.fromiter((row[0] for row in ids), np.int64, count=len(fresh))
    with conn.cursor() as cur:
        moved = np.flatnonzero(current != chosen[labels])
        cur.execute("""CREATE TEMPORARY TABLE works_new (work_id bigint, n int) ON COMMIT DROP;
                       CREATE TEMPORARY TABLE works_kept (work_id bigint, n int) ON COMMIT DROP;
                       CREATE TEMPORARY TABLE works_moved (n int, work_id bigint) ON COMMIT DROP""")
        copy_rows(cur, "works_new", ("work_id", "n"), _rows(chosen[fresh], canonical[fresh]))
        copy_rows(cur, "works_kept", ("work_id", "n"), _rows(chosen[updates], canonical[updates]))
        copy_rows(cur, "works_moved", ("n", "work_id"), _rows(moved, chosen[labels[moved]]))
        with ExitStack() as bulk:  # a first build writes every row: foreign keys checked by one join each, not per row
            if len(moved) >= max(BULK_MEMBERSHIPS, count // 2):
                bulk.enter_context(_step("foreign keys dropped and checked again"))
                bulk.enter_context(foreign_keys_checked_once(cur, "work"))
                bulk.enter_context(foreign_keys_checked_once(cur, "work_image"))
            with _step(f"{len(fresh)} works inserted"):
                cur.execute("""INSERT INTO work (work_id, canonical_sha256) OVERRIDING SYSTEM VALUE
                               SELECT k.work_id, w.sha256 FROM works_new k JOIN works_image w ON w.n = k.n
                               ORDER BY k.work_id""")  # fmt: skip
            with _step(f"{len(updates)} works' canonical images updated"):
                cur.execute("""UPDATE work k SET canonical_sha256 = w.sha256, updated_at = now()
                               FROM works_kept c JOIN works_image w ON w.n = c.n
                               WHERE k.work_id = c.work_id AND k.canonical_sha256 <> w.sha256""")  # fmt: skip
            with _step(f"{len(moved)} memberships written"):
                cur.execute("""INSERT INTO work_image (sha256, work_id)
                               SELECT w.sha256, m.work_id FROM works_moved m JOIN works_image w ON w.n = m.n
                               ORDER BY w.heap
                               ON CONFLICT (sha256) DO UPDATE SET work_id = EXCLUDED.work_id""")  # fmt: skip
        cur.execute("DROP TABLE works_new, works_kept, works_moved")
        with _step("empty works deleted"):
            if only_changed:  # only a work an image moved out of can have become empty
                left = np.unique(current[moved][current[moved] >= 0])
                cur.execute("""DELETE FROM work w WHERE w.work_id = ANY(%s) AND NOT EXISTS
                               (SELECT 1 FROM work_image i WHERE i.work_id = w.work_id)""", (left.tolist(),))
            else:
                cur.execute("DELETE FROM work w WHERE NOT EXISTS "
                            "(SELECT 1 FROM work_image i WHERE i.work_id = w.work_id)")  # fmt: skip
    return groups, int((sizes > 1).sum()), len(moved)


def run_works(settings: Settings | None = None, *, only_new: bool = False, plan_key: str | None = None) -> WorksReport:
    """Judge candidates (``only_new``: pairs with an image not yet in a work — incremental) and relink; recorded as
    a ``works`` pipeline run whose summary holds the merged share the works suite compares the next run with.
    ``plan_key``: the embedding candidates are those the mapped tasks of that plan found (its ``only_new`` is the
    plan's); the plan is deleted with the works written. Memory stays within ``settings.memory_budget_mib`` plus a
    few numbers per image (no image's full facts are held beyond one batch)."""
    settings = settings or get_settings()
    report = WorksReport()
    with connect(settings) as conn:
        if plan_key is not None:
            from pony_tasks.works.parts import plan_scope

            only_new = plan_scope(conn, plan_key)
        with recorded_run(conn, "works", {"only_new": only_new, **({"plan": plan_key} if plan_key else {})}) as run:
            with report.phase("images numbered"):
                count = number_images(conn)
                new = unlinked(conn, count) if only_new else None
            report.images = count
            candidates = find_candidates(conn, settings, count, new, report, plan_key)
            report.candidates = len(candidates.pairs)
            with report.phase("judged"):
                report.verdicts = dict(judge_candidates(conn, candidates, bulk=not only_new))
            del candidates
            with report.phase("linked"):
                linked = link_works(conn, count, only_changed=only_new)
                report.works, report.multi_image_works, report.changed_images = linked
            if plan_key is not None:
                from pony_tasks.works.parts import drop_plan

                drop_plan(conn, open_store(settings=settings), plan_key)
            run.summary = {"images": report.images, "works": report.works,
                           "multi_image_works": report.multi_image_works,
                           "merged_share": report.multi_image_works / report.works if report.works else 0.0,
                           "candidates": report.candidates, "verdicts": report.verdicts,
                           "changed_images": report.changed_images, "seconds": report.seconds}  # fmt: skip
    return report


def record_operator_decision(conn: psycopg2.extensions.connection, a: str, b: str, verdict: str, reason: str) -> None:
    """An operator's verdict on a pair (``distinct`` to unlink, ``duplicate`` to link); it wins over the matcher's."""
    if verdict not in ("duplicate", "variant", "distinct"):
        raise ValueError(f"verdict must be duplicate, variant or distinct, not {verdict!r}")
    if a == b:
        raise ValueError("a pair needs two different images")
    a, b = sorted((a, b))
    with conn.cursor() as cur:
        cur.execute("""INSERT INTO work_pair (sha_a, sha_b, verdict, decided_by, evidence, reason)
                       VALUES (%s, %s, %s, 'operator', '{}', %s)
                       ON CONFLICT (sha_a, sha_b) DO UPDATE SET verdict = EXCLUDED.verdict, decided_by = 'operator',
                           reason = EXCLUDED.reason, decided_at = now()""", (a, b, verdict, reason))  # fmt: skip


def split_image(conn: psycopg2.extensions.connection, sha256: str, reason: str) -> int:
    """Take an image out of its work: an operator ``distinct`` decision against every other member; returns how
    many. The next link keeps it apart, also after re-runs."""
    with conn.cursor() as cur:
        cur.execute("""SELECT o.sha256 FROM work_image i JOIN work_image o ON o.work_id = i.work_id
                       AND o.sha256 <> i.sha256 WHERE i.sha256 = %s""", (sha256,))  # fmt: skip
        others = [row[0] for row in cur.fetchall()]
    if not others:
        raise LookupError(f"image {sha256[:12]}… is not in a work with other images")
    for other in others:
        record_operator_decision(conn, sha256, other, "distinct", reason)
    return len(others)
