"""`make airflow`'s environment with the fakes (issue 27): the fine-tune's default base model is a real, local
diffusers directory (the tiny random-init one), so an asset-triggered fine-tune can train; an operator's own
defaults win."""

from __future__ import annotations

import json

from pony_tasks.config import load_settings
from pony_tasks.finetune.base_model import check_base_model
from pony_tasks.orchestration.standalone import TINY_FINETUNE, fake_environment


def test_make_airflow_defaults_the_fine_tune_to_the_tiny_local_model(tmp_path) -> None:
    home = tmp_path / "home"
    environment = fake_environment(home)
    defaults = json.loads(environment["PONY_FINETUNE_PARAM_DEFAULTS"])
    assert "SD 1.x" in check_base_model(defaults["base_model"])
    assert defaults["base_model"].startswith(str(home)) and {k: defaults[k] for k in TINY_FINETUNE} == TINY_FINETUNE
    settings = load_settings(home=home, finetune_param_defaults=defaults)  # what DAGs read from that variable
    assert settings.finetune_param_defaults["steps"] == TINY_FINETUNE["steps"]
    mine = fake_environment(home, {"base_model": "/models/sdxl", "steps": 500})
    assert json.loads(mine["PONY_FINETUNE_PARAM_DEFAULTS"])["base_model"] == "/models/sdxl"
    assert json.loads(mine["PONY_FINETUNE_PARAM_DEFAULTS"])["steps"] == 500
