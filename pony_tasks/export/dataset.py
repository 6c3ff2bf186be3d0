"""``pony export dataset``: images and captions for a selection, written to the object store with a manifest.

Selection: the active caption set, optionally a minimum band, unified ratings and sites. Formats:

- ``kohya``: ``<name>/<sha256>.<ext>`` + ``<sha256>.txt`` (the caption, with the ``|||`` keep separator for
  ``keep_tokens_separator``) and ``meta.json`` (kohya fine-tune metadata: image key → caption);
- ``webdataset``: ``<name>/shard-NNNNNN.tar`` of about ``shard_bytes`` each, one sample per image
  (``<sha256>.<ext>``, ``.txt``, ``.json``), each tar written locally then stored in one atomic put.

``manifest.json`` (written last) records counts, bytes, the sha256 of every written file, the caption set, the
aesthetic version and scheme, and the selection — a reader who finds the manifest finds a complete export.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg2.extensions

from pony_tasks.captions.sets import active_set
from pony_tasks.progress import progress_bar
from pony_tasks.storage import ObjectStore
from pony_tasks.storage.keys import validate_key
from pony_tasks.works.members import work_key, work_of

DEFAULT_SHARD_BYTES = 1 << 30


@dataclass
class ExportResult:
    name: str
    format: str
    samples: int = 0
    bytes: int = 0
    files: dict[str, str] = field(default_factory=dict)  # key -> sha256

    def summary(self) -> str:
        return (
            f"exported {self.samples} samples ({self.bytes / 1e6:.1f} MB, {len(self.files)} files) as {self.format} "
            f"to exports/{self.name}/ (manifest.json last)"
        )


def _selection(
    conn: psycopg2.extensions.connection, min_band: int | None, ratings: list[str] | None, sites: list[str] | None
) -> tuple[int, list[tuple]]:
    set_id = active_set(conn)
    if set_id is None:
        raise LookupError("no active caption set: run `pony captions regenerate` first")
    with conn.cursor() as cur:
        cur.execute(
            """SELECT DISTINCT ON (c.sha256) c.sha256, c.text, c.band, i.storage_key, i.format, p.site, p.post_id,
                      p.rating
               FROM caption c
               JOIN image i ON i.sha256 = c.sha256
               JOIN booru_post_image bi ON bi.sha256 = c.sha256
               JOIN booru_post p ON p.site = bi.site AND p.post_id = bi.post_id
               WHERE c.set_id = %(set)s AND NOT p.deleted
                 -- one sample per work: an image whose work's canonical image is captioned in this set is left out
                 AND NOT EXISTS (SELECT 1 FROM work_image w JOIN work k ON k.work_id = w.work_id
                                 JOIN caption kc ON kc.set_id = c.set_id AND kc.sha256 = k.canonical_sha256
                                 WHERE w.sha256 = c.sha256 AND k.canonical_sha256 <> c.sha256)
                 AND (%(band)s::int IS NULL OR c.band >= %(band)s)
                 AND (%(ratings)s::text[] IS NULL OR p.rating = ANY(%(ratings)s))
                 AND (%(sites)s::text[] IS NULL OR p.site = ANY(%(sites)s))
               ORDER BY c.sha256, p.site, p.post_id""",
            {"set": set_id, "band": min_band, "ratings": ratings, "sites": sites},
        )
        return set_id, cur.fetchall()


def export_dataset(
    conn: psycopg2.extensions.connection, store: ObjectStore, name: str, fmt: str, *, min_band: int | None = None,
    ratings: list[str] | None = None, sites: list[str] | None = None, shard_bytes: int = DEFAULT_SHARD_BYTES,
    show_progress: bool | None = None,
) -> ExportResult:  # fmt: skip
    if fmt not in ("kohya", "webdataset"):
        raise ValueError(f"format must be kohya or webdataset, got {fmt!r}")
    prefix = f"exports/{validate_key(name)}"
    set_id, rows = _selection(conn, min_band, ratings, sites)
    with conn.cursor() as cur:
        cur.execute("""SELECT s.scheme, s.aesthetic_version_id FROM caption_set s WHERE s.set_id = %s""", (set_id,))
        scheme, version = cur.fetchone()
    result = ExportResult(name, fmt)

    def put(key: str, data: bytes) -> None:
        store.put_bytes(key, data)
        result.files[key] = hashlib.sha256(data).hexdigest()
        result.bytes += len(data)

    with progress_bar(show_progress, total=len(rows), desc=f"export {name}", unit="img") as bar:
        if fmt == "kohya":
            meta = {}
            for sha, text, _band, key, *_ in rows:
                extension = key.rsplit(".", 1)[-1]
                put(f"{prefix}/{sha}.{extension}", store.get_bytes(key))
                put(f"{prefix}/{sha}.txt", text.encode())
                meta[f"{sha}.{extension}"] = {"caption": text}
                result.samples += 1
                bar.update(1)
            put(f"{prefix}/meta.json", json.dumps(meta, ensure_ascii=False, indent=1).encode())
        else:
            _write_shards(store, prefix, rows, shard_bytes, set_id, put, result, bar)
    shas = [row[0] for row in rows]
    members = work_of(conn, shas)
    manifest = {
        "name": name, "format": fmt, "created_at": datetime.now(UTC).isoformat(), "samples": result.samples,
        "bytes": result.bytes, "caption_set": set_id, "scheme": scheme, "aesthetic_version": version,
        "selection": {"min_band": min_band, "ratings": ratings, "sites": sites}, "files": result.files,
        "works": sorted(work_key(sha, members) for sha in shas),  # each sample's work: what fine-tune gates count
    }  # fmt: skip
    store.put_bytes(f"{prefix}/manifest.json", json.dumps(manifest, indent=1).encode())
    return result


def _write_shards(store, prefix, rows, shard_bytes, set_id, put, result, bar) -> None:  # noqa: ANN001
    shard_index, size, handle, tar, path = 0, 0, None, None, None
    workdir = Path(tempfile.mkdtemp(prefix="pony-wds-"))

    def close() -> None:
        nonlocal tar, handle
        if tar is not None:
            tar.close()
            handle.close()
            put(f"{prefix}/shard-{shard_index:06d}.tar", path.read_bytes())
            path.unlink()
            tar = None

    def add(member: str, data: bytes) -> None:
        info = tarfile.TarInfo(member)
        info.size, info.mtime = len(data), 0
        tar.addfile(info, io.BytesIO(data))

    for sha, text, band, key, image_format, site, post_id, rating in rows:
        image = store.get_bytes(key)
        if tar is not None and size + len(image) > shard_bytes:
            close()
            shard_index += 1
        if tar is None:
            path = workdir / f"shard-{shard_index:06d}.tar"
            handle = open(path, "wb")  # noqa: SIM115 (closed in close())
            tar, size = tarfile.open(fileobj=handle, mode="w"), 0
        extension = key.rsplit(".", 1)[-1]
        add(f"{sha}.{extension}", image)
        add(f"{sha}.txt", text.encode())
        add(f"{sha}.json", json.dumps({"site": site, "post_id": post_id, "rating": rating, "band": band,
                                       "caption_set": set_id, "format": image_format}).encode())  # fmt: skip
        size += len(image) + len(text)
        result.samples += 1
        bar.update(1)
    close()
    workdir.rmdir()
