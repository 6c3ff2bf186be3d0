"""The Parquet export: ``data/train-NNNNN.parquet`` (a Hugging Face Hub split layout), images embedded.

Columns: ``image`` — a struct of ``bytes`` and ``path``, the layout of HF ``datasets``' ``Image`` feature, declared
in the schema's ``huggingface`` metadata so ``load_dataset("parquet", …)`` (or a Hub repo of this folder) decodes it
as an image; ``text`` (one training line, ready to use: shuffled once, no ``|||``); ``captions`` (every pre-sampled
line in the same form, to pick one per epoch); then every field of the sample JSON flattened: ``sha256``, ``work``,
``width``, ``height``, ``format``, ``rating``, ``band``, ``aesthetic_score``, ``percentile``, ``sites`` and
``post_ids`` (lists, in step), ``caption_set``, ``scheme``, ``aesthetic_version``. Spark and pandas read the same
files (the image as a struct column). A file closes before it would pass ``shard_bytes`` of image data; row groups
hold ``ROW_GROUP`` samples. Each file is written on disk and stored from there: memory holds one row group, not a
file (a file in memory, then copied out as bytes, was ~3× ``shard_bytes``: 3.4 GiB at the default 1 GiB).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from pony_tasks.captions.lines import Line
from pony_tasks.export.selection import CaptionSetInfo, ExportSample
from pony_tasks.storage import ObjectStore

ROW_GROUP = 256


def _schema():  # noqa: ANN202 - pyarrow.Schema
    import pyarrow as pa

    features = {
        "image": {"_type": "Image"}, "text": {"dtype": "string", "_type": "Value"},
        "captions": {"feature": {"dtype": "string", "_type": "Value"}, "_type": "List"},
        **{name: {"dtype": dtype, "_type": "Value"} for name, dtype in (
            ("sha256", "string"), ("work", "string"), ("width", "int32"), ("height", "int32"), ("format", "string"),
            ("rating", "string"), ("band", "int16"), ("aesthetic_score", "float64"), ("percentile", "float64"))},
        "sites": {"feature": {"dtype": "string", "_type": "Value"}, "_type": "List"},
        "post_ids": {"feature": {"dtype": "int64", "_type": "Value"}, "_type": "List"},
        "caption_set": {"dtype": "int64", "_type": "Value"}, "scheme": {"dtype": "string", "_type": "Value"},
        "aesthetic_version": {"dtype": "int64", "_type": "Value"},
    }  # fmt: skip
    fields = [
        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])), ("text", pa.string()),
        ("captions", pa.list_(pa.string())),
        ("sha256", pa.string()), ("work", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
        ("format", pa.string()), ("rating", pa.string()), ("band", pa.int16()), ("aesthetic_score", pa.float64()),
        ("percentile", pa.float64()), ("sites", pa.list_(pa.string())), ("post_ids", pa.list_(pa.int64())),
        ("caption_set", pa.int64()), ("scheme", pa.string()), ("aesthetic_version", pa.int64()),
    ]  # fmt: skip
    return pa.schema(fields, metadata={"huggingface": json.dumps({"info": {"features": features}})})


def _row(sample: ExportSample, image: bytes, caption_set: CaptionSetInfo, lines: list[Line]) -> dict:
    meta = sample.metadata(caption_set)
    caption, captions = sample.plain_captions(lines)
    return {"image": {"bytes": image, "path": f"{sample.sha256}.{sample.extension}"}, "text": caption,
            "captions": captions,
            **{k: meta[k] for k in ("sha256", "work", "width", "height", "format", "rating", "band",
                                    "aesthetic_score", "percentile", "caption_set", "scheme", "aesthetic_version")},
            "sites": [s for s, _ in sample.posts], "post_ids": [p for _, p in sample.posts]}  # fmt: skip


def write_parquet(
    store: ObjectStore, prefix: str, samples: Iterable[ExportSample], put_path: Callable[[str, Path], None],
    tick: Callable[[ExportSample, list[Line]], None], caption_set: CaptionSetInfo, shard_bytes: int, variants: int,
) -> int:  # fmt: skip
    """Write the Parquet files; returns how many."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schema()
    files = 0
    writer = path = None
    batch: list[dict] = []
    size = 0
    workdir = Path(tempfile.mkdtemp(prefix="pony-parquet-"))

    def flush() -> None:
        nonlocal batch
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema), row_group_size=ROW_GROUP)
            batch = []

    def finish() -> None:
        nonlocal writer, files
        if writer is not None:
            flush()
            writer.close()
            writer = None
            put_path(f"{prefix}/data/train-{files:05d}.parquet", path)  # stored from the file
            files += 1

    try:
        for sample in samples:
            image = store.get_bytes(sample.storage_key)
            if writer is not None and size + len(image) > shard_bytes:
                finish()
            if writer is None:
                path, size = workdir / f"train-{files:05d}.parquet", 0
                writer = pq.ParquetWriter(path, schema, compression="zstd")
            lines = sample.lines(variants, caption_set.token_limit)
            batch.append(_row(sample, image, caption_set, lines))
            size += len(image)
            if len(batch) >= ROW_GROUP:
                flush()
            tick(sample, lines)
        finish()
    finally:
        if writer is not None:
            writer.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return files
