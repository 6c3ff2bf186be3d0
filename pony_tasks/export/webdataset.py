"""The webdataset export: ``shard-NNNNNN.tar`` files that the ``webdataset`` package and HF ``datasets``
(``load_dataset("webdataset", data_files=…)``) both load unchanged.

One sample per work: ``<sha256>.<image key>``, ``<sha256>.txt`` (one training line, ready to use: webdataset and HF
``datasets`` do not shuffle, so its tags are shuffled once and it has no ``|||``) and ``<sha256>.json``
(:meth:`ExportSample.metadata`, ``captions``: every pre-sampled line in the same form, to pick one per epoch).
HF ``datasets`` infers one set of columns from the first samples and refuses
samples whose member names differ, so every sample's image must have the same key: ``image_format``

- ``auto`` (default): the stored files as they are when they share one format, else every image losslessly
  re-encoded as PNG (the decoded pixels exactly: a JPEG's pixels are not degraded again, the file grows);
- ``png`` / ``webp`` (lossless) / ``jpg`` (quality 95, lossy: only for a JPEG-only training setup): every image
  in that format (files already in it are copied as they are);
- ``native``: each file as stored, keyed by its own extension — webdataset reads it, HF ``datasets`` does not when
  formats mix.

A shard closes before it would grow past ``shard_bytes``, counted as the tar file's real size (headers, padding,
every member, the end blocks, tar's 10 KiB records; one sample larger than that gets a shard of its own), and is
written locally then stored in one atomic put.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from pony_tasks.captions.lines import Line
from pony_tasks.export.selection import CaptionSetInfo, ExportSample
from pony_tasks.storage import ObjectStore

IMAGE_FORMATS = ("auto", "png", "webp", "jpg", "native")
_PILLOW = {"png": "PNG", "webp": "WEBP", "jpg": "JPEG"}
_EXTENSIONS = {"PNG": "png", "WEBP": "webp", "JPEG": "jpg"}


def image_key(extensions: Iterable[str], image_format: str) -> str | None:
    """The extension every sample's image gets (None: each its own, ``native``); ``extensions`` (the selection's
    image extensions) are read only for ``auto``, up to the second distinct one."""
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image format must be one of {', '.join(IMAGE_FORMATS)}, got {image_format!r}")
    if image_format == "native":
        return None
    if image_format == "auto":
        first = None
        for extension in extensions:
            if first is None:
                first = extension
            elif extension != first:
                return "png"
        return first or "png"
    return image_format


def encode_as(data: bytes, stored_format: str, key: str) -> bytes:
    """The image bytes in the format of ``key`` (``png``/``webp``/``jpg``): as they are when already in it."""
    target = _PILLOW.get(key)
    if target is None or _EXTENSIONS.get(stored_format) == key:
        return data
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        out = io.BytesIO()
        if target == "JPEG":
            image.convert("RGB").save(out, "JPEG", quality=95)
        elif target == "WEBP":
            image.save(out, "WEBP", lossless=True, method=2)
        else:
            image.save(out, "PNG", compress_level=1)
    return out.getvalue()


def write_shards(
    store: ObjectStore, prefix: str, samples: Iterable[ExportSample], put_path: Callable[[str, Path], None],
    tick: Callable[[ExportSample, list[Line]], None], caption_set: CaptionSetInfo, shard_bytes: int, key: str | None,
    variants: int,
) -> int:  # fmt: skip
    """Write the shards; returns how many."""
    shard_index, handle, tar, path = 0, None, None, None
    workdir = Path(tempfile.mkdtemp(prefix="pony-wds-"))

    def close() -> None:
        nonlocal tar, handle
        if tar is not None:
            tar.close()
            handle.close()
            put_path(f"{prefix}/shard-{shard_index:06d}.tar", path)  # stored from the file, not read into memory
            tar = None

    def member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        return info, data

    try:
        for sample in samples:
            image = store.get_bytes(sample.storage_key)
            extension = key or sample.extension
            lines = sample.lines(variants, caption_set.token_limit)
            caption, captions = sample.plain_captions(lines)
            members = [
                member(f"{sample.sha256}.{extension}", encode_as(image, sample.format, extension)),
                member(f"{sample.sha256}.txt", caption.encode()),
                member(f"{sample.sha256}.json", json.dumps(sample.metadata(caption_set, captions)).encode()),
            ]
            size = sum(512 + -(-len(data) // 512) * 512 for _, data in members)  # header + padded data
            # the archive ends in two zero blocks and is padded to tarfile's 10 KiB records
            closed_size = -(-(handle.tell() + size + 1024) // tarfile.RECORDSIZE) * tarfile.RECORDSIZE if tar else 0
            if tar is not None and closed_size > shard_bytes:
                close()
                shard_index += 1
            if tar is None:
                path = workdir / f"shard-{shard_index:06d}.tar"
                handle = open(path, "wb")  # noqa: SIM115 (closed in close())
                tar = tarfile.open(fileobj=handle, mode="w", format=tarfile.USTAR_FORMAT)
            for info, data in members:
                tar.addfile(info, io.BytesIO(data))
            tick(sample, lines)
        close()
    finally:
        if tar is not None:
            tar.close()
            handle.close()
        for leftover in workdir.iterdir():
            leftover.unlink()
        workdir.rmdir()
    return shard_index + 1 if handle is not None else 0
