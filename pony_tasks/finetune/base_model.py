"""The base model a fine-tune starts from, checked before anyone is asked to approve the run (issue 27).

A diffusers model directory: ``model_index.json`` naming its components, each a subfolder with its config (SD 1.x:
``unet``, ``vae``, ``text_encoder``, ``tokenizer``, ``scheduler``; SDXL adds ``text_encoder_2`` and ``tokenizer_2``).
Only files are read — no weights are loaded — so the check takes milliseconds and runs where training runs (the
same pod image and volumes: ``pony finetune preflight``).
"""

from __future__ import annotations

import json
from pathlib import Path

from pony_tasks.errors import PermanentError

REQUIRED = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
HOW_TO_SET = ("set the run's `base_model` parameter, or the default of every run with the setting "
              "finetune_param_defaults (PONY_FINETUNE_PARAM_DEFAULTS='{\"base_model\": \"/models/…\"}'); "
              "`pony finetune tiny-model DIR` writes a tiny random-init one for trying the pipeline")  # fmt: skip


class BaseModelError(PermanentError, ValueError):
    """The base model is missing or is not a diffusers model directory: a setting to fix, not a retry."""


def check_base_model(base: Path | str) -> str:
    """A description of the diffusers model directory ``base`` (family and components); raises
    :class:`BaseModelError` naming what is missing and how to set it."""
    base = Path(base)
    if not base.is_dir():
        raise BaseModelError(f"base model {base} does not exist on this machine: {HOW_TO_SET}")
    index_path = base / "model_index.json"
    try:
        index = json.loads(index_path.read_text())
    except FileNotFoundError:
        raise BaseModelError(f"base model {base} is not a diffusers model directory (no model_index.json): "
                             f"{HOW_TO_SET}") from None  # fmt: skip
    except json.JSONDecodeError as exc:
        raise BaseModelError(f"base model {base}: model_index.json is not JSON ({exc})") from None
    components = [name for name, value in index.items() if not name.startswith("_") and isinstance(value, list)
                  and value and value[0] is not None]  # fmt: skip
    missing = [name for name in REQUIRED if name not in components]
    missing += [name for name in components if not (base / name).is_dir()]
    if missing:
        raise BaseModelError(f"base model {base} lacks {', '.join(sorted(set(missing)))}: a diffusers text-to-image "
                             f"model directory has {', '.join(REQUIRED)} — {HOW_TO_SET}")  # fmt: skip
    family = "SDXL" if "text_encoder_2" in components else "SD 1.x"
    return f"{index.get('_class_name', 'pipeline')} ({family}) at {base}: {', '.join(sorted(components))}"
