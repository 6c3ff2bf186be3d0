"""Loading open_clip models the same way in production and in tests.

``pretrained`` is an open_clip tag (``openai``, ``laion2b_s32b_b82k``, … — needs the weights to be downloadable or
cached), a local checkpoint file, or an object-store URI (``s3://…`` / ``file://…``, fetched into
``PONY_HOME/cache/models``). The package ships small model configs (``model_configs/``; ``pony-tiny-vit``) so tests
and the demo can save a seeded random-init model and load it back through the very same ``pretrained=PATH`` path.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pony_tasks.config import Settings, get_settings

logger = logging.getLogger(__name__)
CONFIG_DIR = Path(__file__).with_name("model_configs")
DEMO_MODEL = "pony-tiny-vit"


@dataclass
class LoadedModel:
    name: str
    pretrained: str
    weights_sha256: str | None
    model: Any  # open_clip.CLIP
    preprocess: Any  # torchvision transform
    dimension: int
    image_size: int
    device: str


def _open_clip():
    import open_clip

    open_clip.add_model_config(CONFIG_DIR)
    return open_clip


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but no CUDA device is visible; use --device auto or cpu")
    return device


def _local_weights(pretrained: str, settings: Settings) -> Path | None:
    """A local file for ``pretrained`` if it names one (fetching object-store URIs into the cache)."""
    if "://" in pretrained:
        from pony_tasks.storage import open_store

        scheme_path = pretrained.split("://", 1)[1]
        bucket_or_root, _, key = scheme_path.partition("/")
        store_url = pretrained[: len(pretrained) - len(key)].rstrip("/")
        store = open_store(store_url, settings)
        cache = settings.resolved_home / "cache" / "models" / hashlib.sha256(pretrained.encode()).hexdigest()[:16]
        target = cache / Path(key).name
        if not target.exists():
            cache.mkdir(parents=True, exist_ok=True)
            store.get_file(key, target)
        return target
    path = Path(pretrained)
    return path if path.is_file() else None


def load_model(name: str, pretrained: str, *, device: str = "auto", settings: Settings | None = None) -> LoadedModel:
    settings = settings or get_settings()
    open_clip = _open_clip()
    if name not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {name!r}; e.g. ViT-B-32, ViT-L-14 or {DEMO_MODEL} (bundled)")
    device = resolve_device(device)
    local = _local_weights(pretrained, settings)
    weights_sha256 = hashlib.sha256(local.read_bytes()).hexdigest() if local else None
    model, _, preprocess = open_clip.create_model_and_transforms(
        name, pretrained=str(local) if local else pretrained, device=device
    )
    model.eval()
    vision = model.visual
    image_size = vision.image_size[0] if isinstance(vision.image_size, tuple | list) else int(vision.image_size)
    dimension = int(getattr(vision, "output_dim", None) or model.text_projection.shape[1])
    return LoadedModel(name, pretrained, weights_sha256, model, preprocess, dimension, image_size, device)


def save_random_model(path: Path, name: str = DEMO_MODEL, seed: int = 0) -> Path:
    """A seeded random-init model saved as a checkpoint file (tests and the demo: no downloadable weights here)."""
    import torch

    open_clip = _open_clip()
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path
