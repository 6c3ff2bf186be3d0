"""Contact sheets: rows of labelled thumbnails of stored images as one PNG (works decisions, style clusters)."""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image, ImageDraw

from pony_tasks.storage import ObjectStore

THUMB = 128
LABEL = 28


def tile(store: ObjectStore, key: str, caption: str) -> Image.Image:
    """One thumbnail with a two-line caption; a missing or unreadable object shows as an empty tile."""
    tile = Image.new("RGB", (THUMB, THUMB + LABEL), (32, 32, 32))
    try:
        with Image.open(io.BytesIO(store.get_bytes(key))) as image:
            image.thumbnail((THUMB, THUMB))
            tile.paste(image.convert("RGB"), ((THUMB - image.width) // 2, (THUMB - image.height) // 2))
    except Exception:  # noqa: BLE001 - a missing object shows as an empty tile, the sheet is still made
        caption = "(unreadable) " + caption
    draw = ImageDraw.Draw(tile)
    for line, text in enumerate((caption[:22], caption[22:44])):
        draw.text((3, THUMB + 1 + 13 * line), text, fill=(230, 230, 230))
    return tile


def sheet_png(store: ObjectStore, rows: Sequence[Sequence[tuple[str, str]]], title: str,
              row_labels: Sequence[str] | None = None) -> bytes:  # fmt: skip
    """PNG of ``rows`` of (storage key, caption) tiles under ``title``; ``row_labels`` (optional) left of each row."""
    margin = 96 if row_labels else 0
    width = margin + max([len(r) for r in rows] + [1]) * (THUMB + 4) + 4
    sheet = Image.new("RGB", (max(width, 400), 24 + len(rows) * (THUMB + LABEL + 4)), (16, 16, 16))
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 6), title, fill=(255, 255, 255))
    for r, row in enumerate(rows):
        top = 24 + r * (THUMB + LABEL + 4)
        if row_labels:
            for line, text in enumerate(row_labels[r].split("\n")[:4]):
                draw.text((4, top + 4 + 14 * line), text[:15], fill=(255, 255, 255))
        for c, (key, caption) in enumerate(row):
            sheet.paste(tile(store, key, caption), (margin + 4 + c * (THUMB + 4), top))
    buffer = io.BytesIO()
    sheet.save(buffer, "PNG")
    return buffer.getvalue()
