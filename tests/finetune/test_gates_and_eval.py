"""Each gate blocks when unmet (and every decision is recorded); the tag evaluation scores every tag variant."""

from __future__ import annotations

import io
import json

import torch

from pony_tasks.db import connect
from pony_tasks.finetune.gates import check_gates
from pony_tasks.storage import open_store
from tests.finetune.conftest import write_export


def _active_version(settings, tmp_path) -> int:
    """An active aesthetic version on a random-init tiny CLIP (the real loading paths, no downloaded weights)."""
    from pony_tasks.aesthetic.head import build_head
    from pony_tasks.embed.models import DEMO_MODEL, load_model, save_random_model

    weights = save_random_model(tmp_path / "clip.pt")
    dimension = load_model(DEMO_MODEL, str(weights), device="cpu", settings=settings).dimension
    torch.manual_seed(0)
    head = build_head("linear", dimension)
    buffer = io.BytesIO()
    torch.save({"architecture": "linear", "dimension": dimension, "state_dict": head.state_dict()}, buffer)
    open_store(settings=settings).put_bytes("aesthetic/test-head.pt", buffer.getvalue())
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO embedding_model (name, pretrained, dimension, image_size) VALUES (%s, %s, %s, 32) "
                    "RETURNING model_id", (DEMO_MODEL, str(weights), dimension))  # fmt: skip
        model_id = cur.fetchone()[0]
        cur.execute("""INSERT INTO aesthetic_model (embedding_model_id, architecture, hyperparameters, metrics,
                           training_set_sha256, training_images, weights_key, score_cdf, status)
                       VALUES (%s, 'linear', '{}', '{}', 'x', 0, 'aesthetic/test-head.pt', '{0,1}', 'active')
                       RETURNING version_id""", (model_id,))  # fmt: skip
        return cur.fetchone()[0]


def _captions_check(settings, set_id: int, blocking: int) -> None:
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO dq_result (suite, batch, rows_checked, success, blocking_failures, warnings, failed,
                           result_key, outcome) VALUES ('captions', %s, 10, %s, %s, 0, '[]', 'k', %s)""",
                    (json.dumps({"set_id": set_id}), blocking == 0, blocking,
                     "passed" if blocking == 0 else "failed"))  # fmt: skip


def test_a_captions_check_with_no_rows_does_not_pass_the_quality_gate(migrated, tmp_path) -> None:
    version = _active_version(migrated, tmp_path)
    write_export(migrated, "empty", aesthetic_version=version, caption_set=8)
    with connect(migrated) as conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO dq_result (suite, batch, rows_checked, success, blocking_failures, warnings, failed,
                           result_key, outcome) VALUES ('captions', '{"set_id": 8}', 0, false, 0, 0, '[]', 'k',
                           'no_rows')""")  # fmt: skip
    decisions = {d.gate: d for d in check_gates("empty", min_new_images=0, context="test", settings=migrated)}
    assert not decisions["dataset_quality"].passed and "no rows" in decisions["dataset_quality"].detail


def _gates(settings, name: str, min_new: int) -> dict[str, bool]:
    decisions = check_gates(name, min_new_images=min_new, context="test", settings=settings)
    return {d.gate: d.passed for d in decisions}


def test_each_gate_blocks_when_unmet_and_decisions_are_recorded(migrated, tiny_base, tmp_path) -> None:
    version = _active_version(migrated, tmp_path)
    write_export(migrated, "stale", aesthetic_version=version + 100, caption_set=7)
    assert _gates(migrated, "stale", 1) == {"dataset_quality": False, "active_model": False, "new_images": True}
    _captions_check(migrated, 7, blocking=2)
    assert _gates(migrated, "stale", 1)["dataset_quality"] is False  # a check with blocking failures
    _captions_check(migrated, 7, blocking=0)
    write_export(migrated, "good", aesthetic_version=version, caption_set=7)
    assert _gates(migrated, "good", 12) == {"dataset_quality": True, "active_model": True, "new_images": True}
    assert _gates(migrated, "good", 13)["new_images"] is False  # only 12 images
    # after a completed run on this export, the same images are not new any more
    from pony_tasks.finetune.train import FinetuneConfig, run_finetune

    run = run_finetune(tiny_base, "good", FinetuneConfig(method="lora", steps=2, batch_size=2, resolution=32,
                                                         checkpoint_every=2), settings=migrated)  # fmt: skip
    assert _gates(migrated, "good", 1)["new_images"] is False
    with connect(migrated) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*), count(*) FILTER (WHERE NOT passed) FROM finetune_gate WHERE context = 'test'")
        assert cur.fetchone() == (15, 6)  # five evaluations of three gates; 3 + 1 + 0 + 1 + 1 failed

    # the evaluation: every tag variant generated, embedded and scored; a plot stored
    from pony_tasks.finetune.evaluate import evaluate_tags, prompt_variants

    evaluation = evaluate_tags(run.run_id, settings=migrated, prompts=("pony, smile",), seeds=(0, 1), steps=2,
                               resolution=32, device="cpu")  # fmt: skip
    assert [r["label"] for r in evaluation.results] == [label for label, _, _ in prompt_variants()]
    assert all(r["images"] == 2 and 0 <= r["mean"] <= 1 for r in evaluation.results)
    assert evaluation.spearman is None or -1 <= evaluation.spearman <= 1
    assert open_store(settings=migrated).get_bytes(evaluation.plot_key)[:8] == b"\x89PNG\r\n\x1a\n"
    with connect(migrated) as conn, conn.cursor() as cur:
        cur.execute("SELECT run_id, jsonb_array_length(results) FROM finetune_eval")
        assert cur.fetchone() == (run.run_id, 19)


def test_a_rejection_fails_the_approval_gate() -> None:
    from pony_tasks.finetune.gates import approval_decision

    assert approval_decision({"chosen_options": ["Reject"], "responded_by_user": {"name": "ana"}}).passed is False
    assert approval_decision({"chosen_options": ["Approve"]}).passed is True
    assert approval_decision(None).passed is True  # the approval task marked successful by hand


def test_new_images_are_counted_in_works_when_exports_list_them(migrated) -> None:
    """A better copy of a trained work becoming its canonical image is a new file but not a new work."""
    from pony_tasks.finetune.data import Export, Sample
    from pony_tasks.finetune.gates import evaluate_gates

    before = {"files": {"exports/a/1.png": "x", "exports/a/2.png": "y"}, "works": ["w1", "w2"]}
    after = Export("b", {"files": {"exports/b/3.png": "x", "exports/b/2.png": "y"}, "works": ["w1", "w2"]}, "", [])
    with connect(migrated) as conn:
        gate = {d.gate: d for d in evaluate_gates(conn, after, min_new_images=1, previous_manifest=before)}
        assert not gate["new_images"].passed and gate["new_images"].detail.startswith("0 works")
        older = {"files": before["files"]}  # written before works existed: images are compared
        gate = {d.gate: d for d in evaluate_gates(conn, after, min_new_images=1, previous_manifest=older)}
        assert gate["new_images"].passed and gate["new_images"].detail.startswith("1 images")
        counted = Export("c", {"files": 3, "works": ["w1", "w2"]},  # files listed in SHA256SUMS, not the manifest
                         "", [Sample("3", "exports/c/3.png", ""), Sample("2", "exports/c/2.png", "")])  # fmt: skip
        gate = {d.gate: d for d in evaluate_gates(conn, counted, min_new_images=1, previous_manifest=older)}
        assert gate["new_images"].passed and gate["new_images"].detail.startswith("1 images")
