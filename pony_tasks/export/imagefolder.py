"""The image-folder export: the stored images and one ``metadata.jsonl``, the layout HF ``datasets``' ``imagefolder``
builder reads (``load_dataset("imagefolder", data_dir=…)``: the ``file_name`` column names the image beside it), as
diffusers' ``train_text_to_image.py`` and most one-file trainers take their data.

Each JSON line: ``file_name``, ``text`` (one training line, ready to use: shuffled once, no ``|||``), ``captions``
(every pre-sampled line in the same form, to pick one per epoch) and the sample's metadata
(:meth:`ExportSample.metadata`).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from pony_tasks.captions.lines import Line
from pony_tasks.export.selection import CaptionSetInfo, ExportSample


def write_imagefolder(
    prefix: str, samples: Iterable[ExportSample], put_path: Callable[[str, Path], None],
    copy: Callable[[str, str, str], None], tick: Callable[[ExportSample, list[Line]], None],
    caption_set: CaptionSetInfo, variants: int,
) -> int:  # fmt: skip
    """Copy every sample's image inside the store and write ``metadata.jsonl`` (by sha256: the samples' order) line
    by line to a temporary file, stored from it; returns the samples."""
    count = 0
    with tempfile.TemporaryDirectory(prefix="pony-imagefolder-") as workdir:
        path = Path(workdir) / "metadata.jsonl"
        with open(path, "w", encoding="utf-8") as metadata:
            for sample in samples:
                file_name = f"{sample.sha256}.{sample.extension}"
                copy(f"{prefix}/{file_name}", sample.storage_key, sample.sha256)
                lines = sample.lines(variants, caption_set.token_limit)
                caption, captions = sample.plain_captions(lines)
                metadata.write(
                    json.dumps(
                        {"file_name": file_name, "text": caption, **sample.metadata(caption_set, captions)},
                        ensure_ascii=False,
                    )
                    + "\n"
                )
                tick(sample, lines)
                count += 1
        put_path(f"{prefix}/metadata.jsonl", path)
    return count
