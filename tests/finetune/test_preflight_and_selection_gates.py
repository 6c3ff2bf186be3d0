"""Issue 27: a fine-tune's base model is checked before anyone is asked, and its gates decide on what the export
would hold — a run its gates skip writes nothing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pony_tasks.captions.sets import regenerate
from pony_tasks.db import connect
from pony_tasks.errors import EXIT_PERMANENT
from pony_tasks.finetune.base_model import BaseModelError, check_base_model
from pony_tasks.finetune.gates import check_selection_gates
from pony_tasks.storage import open_store
from tests.captions.conftest import COUNT, scored  # noqa: F401 - the fixture


def test_the_base_model_check_names_the_setting_and_accepts_a_real_layout(tiny_base, tmp_path) -> None:
    assert "SD 1.x" in check_base_model(tiny_base) and "unet" in check_base_model(tiny_base)
    with pytest.raises(BaseModelError, match="finetune_param_defaults"):
        check_base_model(tmp_path / "models" / "stable-diffusion-v1-5")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BaseModelError, match="no model_index.json"):
        check_base_model(empty)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text((tiny_base / "model_index.json").read_text())
    with pytest.raises(BaseModelError, match="lacks .*unet"):
        check_base_model(broken)
    done = subprocess.run([sys.executable, "-m", "pony_tasks", "finetune", "preflight", "--base", str(empty)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == EXIT_PERMANENT and "base_model" in done.stderr + done.stdout, done


def test_gates_decide_on_the_selection_before_anything_is_exported(scored) -> None:  # noqa: F811
    store = open_store(settings=scored)
    with connect(scored) as conn:
        set_id = regenerate(conn, scheme="v7").set_id
        with conn.cursor() as cur:
            cur.execute("""INSERT INTO dq_result (suite, batch, rows_checked, success, blocking_failures, warnings,
                               failed, result_key, outcome) VALUES ('captions', %s, 10, true, 0, 0, '[]', 'k',
                               'passed')""", (json.dumps({"set_id": set_id}),))  # fmt: skip
    decisions = {d.gate: d for d in check_selection_gates("ft-1", min_band=None, min_new_images=COUNT,
                                                          context="run-1", settings=scored)}  # fmt: skip
    assert all(d.passed for d in decisions.values()), decisions
    assert decisions["new_images"].detail.startswith(f"{COUNT} works")
    banded = {d.gate: d for d in check_selection_gates("ft-2", min_band=9, min_new_images=COUNT // 10 + 1,
                                                       context="run-2", settings=scored)}  # fmt: skip
    assert not banded["new_images"].passed and banded["new_images"].detail.startswith(f"{COUNT // 10} works")
    assert not list(store.list("exports/")), "the gates wrote nothing"
    with connect(scored) as conn, conn.cursor() as cur:
        cur.execute("SELECT context, gate, passed FROM finetune_gate ORDER BY decision_id")
        recorded = cur.fetchall()
    assert [r for r in recorded if not r[2]] == [("run-2", "new_images", False)] and len(recorded) == 6
