"""Reading and decoding stored images in DataLoader worker processes."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from pony_tasks.config import Settings


def decode_image(data: bytes, size: int, max_pixels: int) -> Image.Image:
    """RGB image, at least ``size`` px on the short side but not much more: JPEGs are shrunk while decoding
    (``draft``), other formats by a fast integer box reduction down to about twice ``size``, so the model's own
    (antialiased) resize starts from a small image."""
    Image.MAX_IMAGE_PIXELS = max_pixels
    image = Image.open(io.BytesIO(data))
    if image.format == "JPEG":
        image.draft("RGB", (size, size))
    image = image.convert("RGB")
    factor = min(image.size) // (2 * size)
    return image.reduce(factor) if factor >= 2 else image


class StoredImages:
    """A map-style dataset over (sha256, storage key) pairs: item i → (sha256, tensor) or (sha256, error text)."""

    def __init__(self, items: list[tuple[str, str]], settings: Settings, preprocess: Any, size: int) -> None:
        self.items, self.settings, self.preprocess, self.size = items, settings, preprocess, size
        self._store = None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[str, Any]:
        sha256, key = self.items[index]
        if self._store is None:  # one store (and S3 client) per worker process
            from pony_tasks.storage import open_store

            self._store = open_store(settings=self.settings)
        try:
            image = decode_image(self._store.get_bytes(key), self.size, self.settings.image_max_pixels)
            return sha256, self.preprocess(image)
        except Exception as exc:  # a corrupt or vanished file must not stop the batch: reported per image
            return sha256, f"{type(exc).__name__}: {exc}"


def init_worker(_: int) -> None:
    """Decoding workers use one thread each: the model in the main process keeps the cores' BLAS threads."""
    import torch

    torch.set_num_threads(1)


def collate(batch: list[tuple[str, Any]]) -> tuple[list[str], Any, list[tuple[str, str]]]:
    import torch

    good = [(sha, tensor) for sha, tensor in batch if not isinstance(tensor, str)]
    failed = [(sha, error) for sha, error in batch if isinstance(error, str)]
    stacked = torch.stack([t for _, t in good]) if good else None
    return [sha for sha, _ in good], stacked, failed
