"""`make demo`'s Airflow run in a brand-new home: every DAG succeeds and the summary counts are consistent."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.airflow.conftest import ROOT

pytestmark = pytest.mark.slow
EXPECTED_RUNS = ["booru_scrape", "booru_score_refresh", "images_fetch", "scores_normalize", "embed_and_score",
                 "works_link", "style_clusters", "aesthetic_train", "captions_regenerate", "nightly_rescore",
                 "finetune"]  # fmt: skip


def test_make_demo_runs_every_dag_through_airflow_in_a_fresh_home(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PONY_"))}
    env["PYTHONPATH"] = str(ROOT / "plugins")
    result = subprocess.run([sys.executable, "-m", "pony_airflow.demo", "--home", str(tmp_path / "home")], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    runs = re.findall(r"^\[airflow\]\s+(\S+)\s+(\S+)", result.stdout, re.M)
    assert [dag for dag, _ in runs] == EXPECTED_RUNS and all(state == "success" for _, state in runs), runs
    posts, images, embeddings, scores, captions, works = map(int, re.search(
        r"(\d+) posts, (\d+) images, (\d+) embeddings, (\d+) scores by aesthetic version \d+, (\d+) captions in "
        r"the active set \(one per work: (\d+) works\)", result.stdout).groups())  # fmt: skip
    assert posts > 2000 and images == embeddings == scores > 1900
    assert captions == works < images, "one caption per work; the corpus's re-posts share works"
    assert "[export]   band ≥ 7: exported" in result.stdout
    styled = re.search(r"\[styles\]   clustering v\d+ active: 16 clusters; (\d+) of (\d+) captions carry a "
                       r"style_cluster", result.stdout)  # fmt: skip
    assert styled and int(styled.group(1)) == int(styled.group(2)) == captions, result.stdout[-3000:]
    assert re.search(r"\[finetune\] run \d+: 40 LoRA steps, last loss [0-9.]+; tag evaluation: score_9", result.stdout)
