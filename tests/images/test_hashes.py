"""Perceptual signatures: the same picture altered the way boorus alter it stays close; another picture, or the same
drawing in other colours, does not look the same to the pair (pHash, colour thumbnail)."""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw

from pony_tasks.db import connect
from pony_tasks.images.hashing import hash_stored_images
from pony_tasks.images.validate import colour_distance, decode, hamming
from pony_tasks.storage import open_store

MAX_PIXELS = 50_000_000


def _artwork(seed: int, size=(320, 240)) -> Image.Image:
    rng = random.Random(seed)
    image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(25):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        w, h = rng.randrange(20, 140), rng.randrange(20, 120)
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x, y, x + w, y + h), fill=tuple(rng.randrange(256) for _ in range(3)))
    return image


def _bytes(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _hashes(data: bytes) -> tuple[int, bytes]:
    decoded = decode(data, MAX_PIXELS)
    return decoded.phash, decoded.colour_thumb


def test_booru_alterations_stay_within_a_few_bits_and_other_pictures_do_not() -> None:
    original = _artwork(1)
    phash, colour = _hashes(_bytes(original, "PNG"))
    width, height = original.size
    signed = original.copy()
    ImageDraw.Draw(signed).text((width - 60, height - 16), "artist", fill=(255, 255, 255))
    altered = {
        "resized 50%": _bytes(original.resize((width // 2, height // 2), Image.LANCZOS), "PNG"),
        "jpeg q90": _bytes(original, "JPEG", quality=90),
        "jpeg q40": _bytes(original, "JPEG", quality=40),
        "resized jpeg": _bytes(original.resize((width * 3 // 4, height * 3 // 4)), "JPEG", quality=75),
        "webp": _bytes(original, "WEBP", quality=80),
        "3% border cropped": _bytes(original.crop((10, 7, width - 10, height - 7)), "PNG"),
        "signature added": _bytes(signed, "PNG"),
    }
    for kind, data in altered.items():
        other_phash, other_colour = _hashes(data)
        assert hamming(phash, other_phash) <= 8, (kind, hamming(phash, other_phash))
        assert colour_distance(colour, other_colour) <= 5, (kind, colour_distance(colour, other_colour))
    others = [hamming(phash, _hashes(_bytes(_artwork(seed), "PNG"))[0]) for seed in range(2, 22)]
    assert min(others) > 14, others
    # another artist's colour swap: pHash (luminance) moves a few bits like an alteration, the colour thumbnail a lot
    swapped = Image.merge("RGB", original.split()[::-1])
    swap_phash, swap_colour = _hashes(_bytes(swapped, "PNG"))
    assert colour_distance(colour, swap_colour) > 20, colour_distance(colour, swap_colour)


def test_stored_images_without_hashes_are_hashed_once_and_unreadable_ones_are_left(migrated) -> None:
    store = open_store(settings=migrated)
    rows = []
    for seed in range(3):
        data = _bytes(_artwork(seed), "PNG")
        decoded = decode(data, MAX_PIXELS)
        key = f"images/{decoded.sha256}.png"
        store.put_bytes(key, data)
        rows.append((decoded.sha256, key, len(data), decoded.phash))
    rows.append(("f" * 64, "images/missing.png", 10, None))  # its object is gone
    with connect(migrated) as conn, conn.cursor() as cur:
        for sha, key, size, _ in rows:
            cur.execute("INSERT INTO image (sha256, storage_key, byte_size, width, height, format) "
                        "VALUES (%s, %s, %s, 320, 240, 'PNG')", (sha, key, size))  # fmt: skip
    report = hash_stored_images(migrated)
    assert (report.hashed, report.unreadable) == (3, 1)
    with connect(migrated) as conn, conn.cursor() as cur:
        cur.execute("SELECT sha256, phash FROM image ORDER BY sha256")
        stored = dict(cur.fetchall())
    assert all(stored[sha] == phash for sha, _, _, phash in rows)  # the same value as computed on fetch
    again = hash_stored_images(migrated)
    assert (again.hashed, again.unreadable) == (0, 1)  # re-running re-hashes nothing
