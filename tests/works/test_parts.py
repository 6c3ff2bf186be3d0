"""Works' embedding candidates in parts (the works_build DAG's mapped tasks): the parts of a plan find exactly the
pairs one process finds with the same budget, a retried part replaces its own pairs, the linking task refuses a plan
with an unfinished part or one made for other embeddings, and the plan is gone (rows and cells) once used."""

from __future__ import annotations

import numpy as np
import pytest

from pony_tasks.db import connect
from pony_tasks.storage import open_store
from pony_tasks.works.candidates import EMBEDDING_NEIGHBOURS, MIN_CANDIDATE_COSINE
from pony_tasks.works.catalogue import number_images
from pony_tasks.works.embedding_join import CellPlan, embedding_pairs, usable_model
from pony_tasks.works.parts import (
    PlanError,
    cells_key,
    drop_plan,
    plan_part_numbers,
    plan_parts,
    planned_pairs,
    run_part,
)
from tests.works.test_embedding_join import COUNT, embedded  # noqa: F401 - the fixture

BUDGET_MIB = 1  # many spill groups


@pytest.fixture
def small_budget(embedded):  # noqa: F811 - the imported fixture
    settings, vectors, planted, missing = embedded
    return settings.model_copy(update={"memory_budget_mib": BUDGET_MIB}), planted


@pytest.mark.parametrize("budget_mib", [BUDGET_MIB, 256])  # many groups; one group a part (more than it needs)
def test_the_parts_of_a_plan_find_the_pairs_one_process_finds(embedded, budget_mib) -> None:  # noqa: F811
    settings, _, planted, _ = embedded
    settings = settings.model_copy(update={"memory_budget_mib": budget_mib})
    store = open_store(settings=settings)
    parts = plan_parts(settings, "manual__2026-12-07T23:50:00+00:00", parts=3)
    assert parts == [0, 1, 2] == plan_part_numbers("manual__2026-12-07T23:50:00+00:00", settings)
    key = cells_key("manual__2026-12-07T23:50:00+00:00")
    assert ":" not in key and "+" not in key and store.exists(key)
    plan = CellPlan.from_bytes(store.get_bytes(key))
    assert plan.passes == 3 and plan.groups >= 3 and plan.cells is not None and plan.cells.cells > 1
    counts = [run_part(settings, "manual__2026-12-07T23:50:00+00:00", part) for part in parts]
    assert run_part(settings, "manual__2026-12-07T23:50:00+00:00", 1) == counts[1]  # a retry replaces its pairs
    with connect(settings) as conn:
        number_images(conn)
        model = usable_model(conn, store)
        found = planned_pairs(conn, "manual__2026-12-07T23:50:00+00:00", model.model_id)
        whole = embedding_pairs(conn, store, model, MIN_CANDIDATE_COSINE, per_row=EMBEDDING_NEIGHBOURS, new=None,
                                budget_bytes=budget_mib * 2**20)  # fmt: skip
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM works_plan_pair")
            stored = cur.fetchone()[0]
    assert stored == sum(counts) >= len(whole[0]) > 100  # a pair two parts both found is stored twice, read once
    np.testing.assert_array_equal(found[0], whole[0])
    np.testing.assert_allclose(found[1], whole[1], atol=1e-6)
    assert len(planted - set(map(tuple, found[0].tolist()))) <= 3


def test_a_plan_with_an_unfinished_part_or_other_embeddings_is_refused_and_dropped_whole(small_budget) -> None:
    settings, _ = small_budget
    store = open_store(settings=settings)
    plan_parts(settings, "p", parts=2)
    run_part(settings, "p", 0)
    with connect(settings) as conn:
        number_images(conn)
        model_id = usable_model(conn, store).model_id
        with pytest.raises(PlanError, match=r"parts 1 have not finished \(`pony works part p N`"):
            planned_pairs(conn, "p", model_id)
        with pytest.raises(PlanError, match="made for embedding model .* make the plan again"):
            planned_pairs(conn, "p", model_id + 1)
        with pytest.raises(PlanError, match="no works plan 'q'"):
            planned_pairs(conn, "q", model_id)
        drop_plan(conn, store, "p")
        conn.commit()
        with conn.cursor() as cur:
            cur.execute("SELECT (SELECT count(*) FROM works_plan) + (SELECT count(*) FROM works_plan_part) "
                        "+ (SELECT count(*) FROM works_plan_pair)")  # fmt: skip
            assert cur.fetchone()[0] == 0
    assert not store.exists(cells_key("p"))
    plan_parts(settings, "p", parts=1)
    with pytest.raises(PlanError, match="has no part 5"):
        run_part(settings, "p", 5)


def test_cells_survive_the_round_trip_through_the_store(small_budget) -> None:
    settings, _ = small_budget
    plan_parts(settings, "r", parts=1)
    store = open_store(settings=settings)
    plan = CellPlan.from_bytes(store.get_bytes(cells_key("r")))
    vectors = np.random.default_rng(1).standard_normal((500, 128)).astype(np.float32)
    again = CellPlan.from_bytes(plan.to_bytes())
    np.testing.assert_array_equal(plan.cells.assign(vectors), again.cells.assign(vectors))
    assert (again.groups, again.passes, again.cells.metric) == (plan.groups, 1, "ip")
    assert [plan.groups_of_pass(0)] == [(0, plan.groups)]
    with pytest.raises(ValueError, match="pass 1 of a plan of 1"):
        plan.groups_of_pass(1)


def _pairs_and_works(settings) -> tuple[set, set]:
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT sha_a, sha_b, verdict, evidence::text FROM work_pair")
        pairs = set(cur.fetchall())
        cur.execute("SELECT array_agg(sha256 ORDER BY sha256) FROM work_image GROUP BY work_id")
        works = {tuple(row[0]) for row in cur.fetchall()}
        cur.execute("TRUNCATE work_pair, work_image, work CASCADE")
    return pairs, works


def test_works_linked_through_a_plan_are_the_works_one_run_links(migrated) -> None:
    from pony_tasks.embed.run import _write_shard
    from pony_tasks.works.link import run_works
    from tests.works.test_works import ALTERATIONS, _artwork, _save, _store

    picture_of = {}
    for picture in range(8):
        original = _artwork(picture)
        picture_of[_store(migrated, _save(original, "PNG"))] = picture
        for alter in ALTERATIONS.values():
            picture_of[_store(migrated, alter(original))] = picture
    for seed in range(100, 116):  # other pictures
        picture_of[_store(migrated, _save(_artwork(seed), "PNG"))] = seed
    rng = np.random.default_rng(2)
    centres = {p: rng.standard_normal(128) for p in set(picture_of.values())}
    shas = sorted(picture_of)
    vectors = np.array([centres[picture_of[s]] + 0.05 * rng.standard_normal(128) for s in shas])
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float16)
    with connect(migrated) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO embedding_model (name, pretrained, dimension, image_size) "
                    "VALUES ('test', 'none', 128, 224) RETURNING model_id")  # fmt: skip
        model_id = cur.fetchone()[0]
        conn.commit()
        _write_shard(open_store(settings=migrated), conn, model_id, "test", shas, vectors, [])

    one = run_works(migrated)
    assert "used" in one.embeddings and one.multi_image_works == 8
    whole = _pairs_and_works(migrated)
    assert any('"embedding"' in evidence for *_, evidence in whole[0])
    assert plan_parts(migrated, "build", parts=2) == [0]  # one cell (below the exact limit): one part
    run_part(migrated, "build", 0)
    planned = run_works(migrated, plan_key="build")
    assert planned.summary() == one.summary() and "embedding candidates of the plan's parts read" in planned.seconds
    assert _pairs_and_works(migrated) == whole
    with connect(migrated) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM works_plan")
        assert cur.fetchone()[0] == 0, "the plan is deleted once its works are linked"
    with pytest.raises(PlanError, match="no works plan 'build'"):
        run_works(migrated, plan_key="build")
