"""Perceptual hashes and file hashes for stored images that lack them (stored before migrations 0013/0015/0016/0017,
or by an older worker): read from the object store, decoded, hashed, written back in batches. Idempotent and
resumable: only NULL rows are read."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from PIL import Image

from pony_tasks.config import Settings, get_settings
from pony_tasks.db import connect
from pony_tasks.images.validate import SIGNATURE_COLUMNS, perceptual_hashes
from pony_tasks.progress import progress_bar
from pony_tasks.storage import open_store

BATCH = 500
MISSING = "phash IS NULL OR inner_detail IS NULL OR crop_phash IS NULL OR md5 IS NULL"
UPDATE = (f"UPDATE image SET {', '.join(f'{c} = %s' for c in SIGNATURE_COLUMNS)}, md5 = %s, sha512 = %s "
          "WHERE sha256 = %s")


@dataclass
class HashReport:
    hashed: int = 0
    unreadable: int = 0

    def summary(self) -> str:
        return f"perceptual hashes: {self.hashed} images hashed, {self.unreadable} unreadable (left NULL)"


def hash_stored_images(settings: Settings | None = None, limit: int | None = None) -> HashReport:
    settings = settings or get_settings()
    store = open_store(settings=settings)
    report = HashReport()
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM image WHERE {MISSING}")
        total = cur.fetchone()[0] if limit is None else min(limit, cur.fetchone()[0])
    skip: list[str] = []  # unreadable this run: not asked for again
    with progress_bar(total=total, desc="hashing images", unit="img") as bar:
        while limit is None or report.hashed + report.unreadable < limit:
            with connect(settings) as conn, conn.cursor() as cur:
                cur.execute(f"""SELECT sha256, storage_key FROM image WHERE ({MISSING}) AND NOT sha256 = ANY(%s)
                               ORDER BY sha256 LIMIT %s""", (skip, BATCH))  # fmt: skip
                rows = cur.fetchall()
                if not rows:
                    break
                for sha256, key in rows:
                    try:
                        data = store.get_bytes(key)
                        with Image.open(io.BytesIO(data)) as image:
                            signatures = perceptual_hashes(image)
                    except Exception:  # noqa: BLE001 - a missing or damaged object stays unhashed; the rest go on
                        skip.append(sha256)
                        report.unreadable += 1
                    else:
                        cur.execute(UPDATE, (*signatures.columns(), hashlib.md5(data).hexdigest(),
                                     hashlib.sha512(data).hexdigest(), sha256))  # fmt: skip
                        report.hashed += 1
                    bar.update(1)
    return report
