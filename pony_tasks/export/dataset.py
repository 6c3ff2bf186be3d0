"""``pony export dataset``: images and captions for a selection, written to the object store with a manifest.

Selection (export.selection): the active caption set, optionally a minimum band, ratings and sites; one sample per
work. Formats:

- ``kohya`` (export.kohya): ``<sha256>.<ext>`` + ``<sha256>.txt`` (V7: several pre-sampled lines), sd-scripts'
  ``meta.json`` and ready ``dataset.toml`` / ``dataset-finetune.toml``;
- ``webdataset`` (export.webdataset): ``shard-NNNNNN.tar``, one image key for every sample so HF ``datasets`` loads
  them too;
- ``parquet`` (export.parquet): ``data/train-NNNNN.parquet``, images embedded as HF ``Image`` structs;
- ``imagefolder`` (export.imagefolder): the images and ``metadata.jsonl``, HF ``imagefolder``'s layout.

Captions: each sample has ``variants`` training lines (captions.lines: V7, each its own draw of ``score_K_up`` tags
and the content that fits beside them within the token limit). kohya gets them as a multi-line caption file with
``|||`` (it shuffles and picks a line per step); the loaders that do not shuffle (webdataset, Parquet, image
folder) get one line shuffled once, with no separator, as the caption and every line in a ``captions`` list.
kohya exports leave out images smaller than ``min_side`` on a side (no bucket fits them), counted in the card.

Beside the data: ``README.md`` (dataset card), ``styles.csv`` and ``quality-prefixes.txt`` (export.card), then
``SHA256SUMS`` (the sha256 of every written file, ``sha256sum -c`` checks it inside the export's folder; written as
the files are stored, never held: a kohya export has two files a sample) and ``manifest.json`` last: counts, bytes,
the listing's own sha256, the caption set, the aesthetic version and scheme, the selection, each sample's work — a
reader who finds the manifest finds a complete export.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg2.extensions

from pony_tasks.captions.lines import Line, LineStats, has_content
from pony_tasks.export.card import SampleStats, dataset_card, prefixes_text, styles_csv
from pony_tasks.export.imagefolder import write_imagefolder
from pony_tasks.export.kohya import DEFAULT_VARIANTS, MIN_SIDE, dataset_configs, write_kohya
from pony_tasks.export.parquet import write_parquet
from pony_tasks.export.selection import (
    CaptionSetInfo,
    ExportSample,
    active_set_info,
    chosen_extensions,
    iter_samples,
)
from pony_tasks.export.webdataset import image_key, write_shards
from pony_tasks.progress import progress_bar
from pony_tasks.storage import LocalObjectStore, ObjectStore
from pony_tasks.storage.keys import validate_key

DEFAULT_SHARD_BYTES = 1 << 30
FORMATS = ("kohya", "webdataset", "parquet", "imagefolder")


@dataclass
class ExportResult:
    name: str
    format: str
    samples: int = 0
    bytes: int = 0
    file_count: int = 0  # files written, SHA256SUMS and the manifest not counted
    lines: LineStats = field(default_factory=LineStats)
    too_small: int = 0  # images left out: smaller than min_side on a side (kohya)

    def large_enough(self, samples: Iterable[ExportSample], min_side: int) -> Iterator[ExportSample]:
        """The samples at least ``min_side`` on both sides; the others counted in ``too_small``."""
        for sample in samples:
            if min(sample.width, sample.height) >= min_side:
                yield sample
            else:
                self.too_small += 1

    def summary(self) -> str:
        small = f"; {self.too_small} images under the smallest bucket left out" if self.too_small else ""
        return (
            f"exported {self.samples} samples ({self.bytes / 1e6:.1f} MB, {self.file_count} files) as {self.format} "
            f"to exports/{self.name}/ (README.md: the dataset card; manifest.json last){small}"
        )


CHECKSUMS = "SHA256SUMS"


class ChecksumListing:
    """Every stored file's sha256 as ``<digest>  <path in the export>`` lines (sha256sum's format), appended to an
    anonymous temporary file as the files are stored (gone with the process, whatever happens) and hashed as it
    grows: a dict of every file was ~680 MiB a million kohya samples."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._file = tempfile.TemporaryFile(prefix="pony-sums-")  # noqa: SIM115 - closed by store()
        self._digest = hashlib.sha256()

    def add(self, key: str, digest: str) -> None:
        """One file (the caller serialises calls)."""
        line = f"{digest}  {key[len(self.prefix) + 1:]}\n".encode()
        self._file.write(line)
        self._digest.update(line)

    def store(self, store: ObjectStore) -> str:
        """Store the listing as ``CHECKSUMS`` in the export; returns its own sha256."""
        with self._file:
            self._file.seek(0)
            store.put_stream(f"{self.prefix}/{CHECKSUMS}", self._file)
        return self._digest.hexdigest()


def iter_checksums(store: ObjectStore, name: str) -> Iterator[tuple[str, str]]:
    """(object key, sha256) of every file of export ``name``, streamed from its SHA256SUMS."""
    prefix = f"exports/{validate_key(name)}"
    with store.open_read(f"{prefix}/{CHECKSUMS}") as handle:
        for line in handle:
            digest, _, path = line.decode("utf-8").rstrip("\n").partition("  ")
            yield f"{prefix}/{path}", digest


def _selection_extensions(
    conn: psycopg2.extensions.connection, caption_set: CaptionSetInfo, min_band: int | None,
    ratings: list[str] | None, sites: list[str] | None,
) -> Iterator[str]:  # fmt: skip
    """The selection's image extensions, as cheaply as they are known: the band's images' when they all share one (a
    superset of the selection: one query, no pass over the samples), else each sample's in turn (the reader stops at
    the second distinct one: on mixed real data, after a few samples)."""
    candidates = chosen_extensions(conn, caption_set, min_band)
    if len(candidates) <= 1:
        yield from candidates
        return
    samples = iter_samples(conn, caption_set, min_band, ratings, sites)
    try:
        for sample in samples:
            yield sample.extension
    finally:
        samples.close()  # its named cursor, before the export opens its own


def export_dataset(
    conn: psycopg2.extensions.connection, store: ObjectStore, name: str, fmt: str, *, min_band: int | None = None,
    ratings: list[str] | None = None, sites: list[str] | None = None, shard_bytes: int = DEFAULT_SHARD_BYTES,
    image_format: str = "auto", variants: int = DEFAULT_VARIANTS, min_side: int = MIN_SIDE,
    show_progress: bool | None = None,
) -> ExportResult:  # fmt: skip
    """Export the selection as ``fmt``. ``image_format`` (webdataset): see export.webdataset; ``variants`` (V7):
    training lines per image; ``min_side`` (kohya): images smaller on a side are left out."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if variants < 1:
        raise ValueError(f"variants must be ≥ 1, got {variants}")
    if min_side < 1:
        raise ValueError(f"min_side must be ≥ 1 pixel, got {min_side}")
    prefix = f"exports/{validate_key(name)}"
    caption_set = active_set_info(conn)
    result = ExportResult(name, fmt)
    key = None
    if fmt == "webdataset":  # one image key for every sample
        extensions = _selection_extensions(conn, caption_set, min_band, ratings, sites)
        try:
            key = image_key(extensions, image_format)
        finally:
            extensions.close()  # its cursor, when image_key stopped at a second extension
    samples = iter_samples(conn, caption_set, min_band, ratings, sites)  # streamed: never every sample at once
    if fmt == "kohya":
        samples = result.large_enough(samples, min_side)
    stats = SampleStats()
    works: list[str] = []
    lock = threading.Lock()
    listing = ChecksumListing(prefix)

    def record(object_key: str, digest: str, size: int) -> None:
        """A file stored: into the listing and the counts (from the writer threads too)."""
        with lock:
            listing.add(object_key, digest)
            result.file_count += 1
            result.bytes += size

    def put(object_key: str, data: bytes) -> None:
        store.put_bytes(object_key, data)
        record(object_key, hashlib.sha256(data).hexdigest(), len(data))

    def put_path(object_key: str, path: Path) -> None:
        """A file written on disk first (shards, meta.json, metadata.jsonl), hashed a chunk at a time and moved into
        the store (the local store renames it: no second copy of a 1 GiB shard or an 8 GB meta.json)."""
        with open(path, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        size = path.stat().st_size
        store.move_file(object_key, path)
        record(object_key, digest, size)

    def copy(object_key: str, source_key: str, sha256: str) -> None:
        """A stored image copied inside the store (no bytes through Python); content-addressed: its sha256 is its
        name."""
        record(object_key, sha256, store.copy(source_key, object_key))

    # the files are made durable together (one sync, not two fsyncs each); the manifest, written after, marks the
    # export complete
    with (
        store.deferred_sync(),
        progress_bar(show_progress, desc=f"export {name}", unit="img") as bar,
    ):  # fmt: skip

        def tick(sample: ExportSample, lines: list[Line]) -> None:
            with lock:
                result.samples += 1
                result.lines.add(sample.band, lines, has_content(sample.content))
                stats.add(sample)
                works.append(sample.work)
                bar.update(1)

        if fmt == "kohya":
            write_kohya(prefix, samples, put, copy, tick, token_limit=caption_set.token_limit, variants=variants,
                        put_path=put_path, writers=store.parallel_writes())  # fmt: skip
            image_dir = str(store.root / prefix) if isinstance(store, LocalObjectStore) else "."
            for file_name, text in dataset_configs(image_dir, caption_set).items():
                put(f"{prefix}/{file_name}", text.encode())
        elif fmt == "webdataset":
            write_shards(store, prefix, samples, put_path, tick, caption_set, shard_bytes, key, variants)
        elif fmt == "parquet":
            write_parquet(store, prefix, samples, put_path, tick, caption_set, shard_bytes, variants)
        else:
            write_imagefolder(prefix, samples, put_path, copy, tick, caption_set, variants)
    selection = {"min_band": min_band, "ratings": ratings, "sites": sites}
    floor = int(caption_set.parameters.get("floor", 1))
    card = dataset_card(conn, name, fmt, caption_set, stats, selection, lines=result.lines,
                        too_small=(result.too_small, min_side) if fmt == "kohya" else None)  # fmt: skip
    put(f"{prefix}/README.md", card.encode())
    put(f"{prefix}/styles.csv", styles_csv(caption_set.scheme, floor).encode())
    put(f"{prefix}/quality-prefixes.txt", prefixes_text(caption_set.scheme, floor).encode())
    checksums = listing.store(store)
    manifest = {
        "name": name, "format": fmt, "created_at": datetime.now(UTC).isoformat(), "samples": result.samples,
        "bytes": result.bytes, "caption_set": caption_set.set_id, "scheme": caption_set.scheme,
        "aesthetic_version": caption_set.aesthetic_version_id, "token_limit": caption_set.token_limit,
        "selection": selection, "image_format": key if fmt == "webdataset" else None,
        "kohya_caption_variants": variants if fmt == "kohya" else None, "caption_lines": result.lines.as_dict(),
        "left_out_too_small": {"images": result.too_small, "min_side": min_side} if fmt == "kohya" else None,
        "files": result.file_count, "checksums": {"file": CHECKSUMS, "sha256": checksums},
        "works": sorted(works),  # each sample's work: what fine-tune gates count
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="pony-export-") as workdir:  # dumped to a file, not one huge string
        path = Path(workdir) / "manifest.json"
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=1)
        store.put_file(f"{prefix}/manifest.json", path)
    return result
