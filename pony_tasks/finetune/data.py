"""Training data from a kohya export: samples, aspect-ratio buckets, and VAE latents cached once.

``load_export`` reads ``exports/<name>/manifest.json`` and ``meta.json`` (image file → caption; a V7 caption is
several pre-sampled lines, one picked per step as kohya does). Each image goes to
the bucket (width, height — multiples of 64 px scaled to the resolution, area ≤ resolution²) nearest its aspect
ratio, is resized to cover it and centre-cropped. Latents (the VAE posterior mean × scaling factor) are cached under
``PONY_HOME/cache/latents/<vae digest>/<sha256>-<w>x<h>.pt``: encoded once per (VAE, image, bucket), reused by every
later run and by resumed runs.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

from pony_tasks.export.kohya import kohya_unescape
from pony_tasks.storage import ObjectStore


@dataclass(frozen=True)
class Sample:
    sha256: str
    image_key: str
    caption: str


@dataclass(frozen=True)
class Export:
    name: str
    manifest: dict
    manifest_sha256: str
    samples: list[Sample]


class DatasetError(ValueError):
    pass


def load_export(store: ObjectStore, name: str) -> Export:
    prefix = f"exports/{name}"
    try:
        raw = store.get_bytes(f"{prefix}/manifest.json")
    except (FileNotFoundError, KeyError) as exc:
        raise DatasetError(f"no export {name!r} (exports/{name}/manifest.json is missing): run "
                           f"`pony export dataset --format kohya --name {name}` first") from exc  # fmt: skip
    manifest = json.loads(raw)
    if manifest.get("format") != "kohya":
        raise DatasetError(f"export {name!r} is {manifest.get('format')}; fine-tunes read the kohya format")
    meta = json.loads(store.get_bytes(f"{prefix}/meta.json"))
    samples = [  # kohya form (V7: one pre-sampled line each, braces doubled) to ours: render.sample_caption_text
        Sample(file.rsplit(".", 1)[0], f"{prefix}/{file}", kohya_unescape(entry["caption"]))
        for file, entry in sorted(meta.items())
    ]
    if not samples:
        raise DatasetError(f"export {name!r} holds no samples")
    return Export(name, manifest, hashlib.sha256(raw).hexdigest(), samples)


def make_buckets(resolution: int, step: int | None = None) -> list[tuple[int, int]]:
    """(width, height) pairs, multiples of ``step`` (default resolution/8), area ≤ resolution², aspect 1:2 … 2:1."""
    step = step or max(8, resolution // 8)
    buckets = set()
    for width in range(resolution // 2, resolution * 2 + 1, step):
        height = (resolution * resolution // width) // step * step
        if height >= resolution // 2 and 0.5 <= width / height <= 2:
            buckets.add((width, height))
    return sorted(buckets)


def nearest_bucket(width: int, height: int, buckets: list[tuple[int, int]]) -> tuple[int, int]:
    ratio = math.log(width / height)
    return min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - ratio), -b[0] * b[1]))


def image_tensor(data: bytes, bucket: tuple[int, int]):
    """Decode, resize to cover the bucket, centre-crop; a CHW float tensor in [-1, 1]."""
    import numpy as np
    import torch
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("RGB")
        width, height = bucket
        scale = max(width / image.width, height / image.height)
        resized = image.resize((max(width, round(image.width * scale)), max(height, round(image.height * scale))),
                               Image.Resampling.BICUBIC)  # fmt: skip
        left, top = (resized.width - width) // 2, (resized.height - height) // 2
        crop = resized.crop((left, top, left + width, top + height))
    array = np.asarray(crop, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def module_digest(module) -> str:
    """A digest of a module's weights (which VAE made a cached latent)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes()[:4096])
        digest.update(str(tuple(tensor.shape)).encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class CachedLatent:
    sample: Sample
    bucket: tuple[int, int]
    path: Path


def cache_latents(
    samples: list[Sample], store: ObjectStore, vae, cache_root: Path, resolution: int, *, device: str = "cpu",
    show_progress: bool | None = None,
) -> tuple[list[CachedLatent], int]:  # fmt: skip
    """Latents of every sample, encoding only those not cached yet; returns (latents, newly encoded)."""
    import torch
    from PIL import Image

    from pony_tasks.progress import progress_bar

    buckets = make_buckets(resolution)
    directory = cache_root / module_digest(vae)
    directory.mkdir(parents=True, exist_ok=True)
    out, encoded = [], 0
    scaling = getattr(vae.config, "scaling_factor", 0.18215)
    with progress_bar(show_progress, total=len(samples), desc="latents", unit="img") as bar:
        for sample in samples:
            data = None
            sized = sorted(directory.glob(f"{sample.sha256}-*.pt"))
            if sized:
                width, height = map(int, sized[0].stem.split("-", 1)[1].split("x"))
                out.append(CachedLatent(sample, (width, height), sized[0]))
            else:
                data = store.get_bytes(sample.image_key)
                with Image.open(io.BytesIO(data)) as probe:
                    bucket = nearest_bucket(probe.width, probe.height, buckets)
                pixels = image_tensor(data, bucket).unsqueeze(0).to(device, dtype=vae.dtype)
                with torch.no_grad():
                    latent = vae.encode(pixels).latent_dist.mean[0] * scaling
                path = directory / f"{sample.sha256}-{bucket[0]}x{bucket[1]}.pt"
                partial = path.with_suffix(".partial")
                torch.save(latent.cpu().float(), partial)
                partial.replace(path)
                out.append(CachedLatent(sample, bucket, path))
                encoded += 1
            bar.update(1)
    return out, encoded
