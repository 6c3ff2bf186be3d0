"""Generated images with planted quality: varied content and style, then a defect whose strength falls with quality."""

from __future__ import annotations

import io
import random
import struct
import zlib

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

STYLES = ("flat", "sketch", "painterly", "pixel", "shaded")
DEFECTS = ("none", "blur", "noise", "jpeg", "low_contrast")


def _palette(rng: random.Random, count: int) -> list[tuple[int, int, int]]:
    return [(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(count)]


def render_image(seed: int, width: int, height: int, style: str) -> Image.Image:
    """A picture of shapes in one of five styles (content varies with the seed)."""
    rng = random.Random(seed)
    colors = _palette(rng, 6)
    if style == "sketch":
        image = Image.new("RGB", (width, height), (245, 242, 235))
    else:
        top, bottom = np.array(colors[0], float), np.array(colors[1], float)
        ramp = np.linspace(0, 1, height)[:, None, None]
        gradient = (top * (1 - ramp) + bottom * ramp).repeat(width, axis=1)
        image = Image.fromarray(gradient.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(3, 9)):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1, y1 = x0 + rng.randint(8, width // 2 + 8), y0 + rng.randint(8, height // 2 + 8)
        color = rng.choice(colors[2:])
        shape = rng.choice(("ellipse", "rectangle", "line"))
        if style == "sketch":
            draw.ellipse((x0, y0, x1, y1), outline=(30, 30, 30), width=2) if shape == "ellipse" else draw.line(
                (x0, y0, x1, y1), fill=(30, 30, 30), width=2
            )
        elif shape == "ellipse":
            draw.ellipse((x0, y0, x1, y1), fill=color)
        elif shape == "rectangle":
            draw.rectangle((x0, y0, x1, y1), fill=color)
        else:
            draw.line((x0, y0, x1, y1), fill=color, width=rng.randint(2, 6))
    if style == "painterly":
        image = image.filter(ImageFilter.SMOOTH_MORE).filter(ImageFilter.EDGE_ENHANCE)
    elif style == "pixel":
        image = image.resize((max(1, width // 8), max(1, height // 8)), Image.NEAREST).resize(
            (width, height), Image.NEAREST
        )
    elif style == "shaded":
        shade = np.linspace(0.6, 1.2, width)[None, :, None]
        image = Image.fromarray(np.clip(np.asarray(image, float) * shade, 0, 255).astype(np.uint8), "RGB")
    return image


def degrade(image: Image.Image, defect: str, quality: float, seed: int) -> tuple[Image.Image, int]:
    """Apply ``defect`` with strength 1 - quality; returns the image and the JPEG quality to save it with."""
    strength = 1.0 - quality
    jpeg_quality = 92
    if defect == "blur":
        image = image.filter(ImageFilter.GaussianBlur(radius=0.3 + 4 * strength))
    elif defect == "noise":
        rng = np.random.default_rng(seed)
        noisy = np.asarray(image, float) + rng.normal(0, 5 + 70 * strength, (image.height, image.width, 3))
        image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")
    elif defect == "jpeg":
        jpeg_quality = max(2, int(90 - 88 * strength))
    elif defect == "low_contrast":
        image = ImageEnhance.Contrast(image).enhance(max(0.08, 1.0 - 0.9 * strength))
    return image, jpeg_quality


def encode(image: Image.Image, file_ext: str, jpeg_quality: int) -> bytes:
    buffer = io.BytesIO()
    if file_ext == "png":
        image.save(buffer, "PNG", optimize=False, compress_level=3)
    else:
        image.save(buffer, "JPEG", quality=jpeg_quality)
    return buffer.getvalue()


def decompression_bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A tiny PNG whose header claims a huge image (what a decompression bomb looks like to a decoder)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(64)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def oversized_png(seed: int, side: int = 1400) -> bytes:
    """Incompressible noise: a file of several MB, for the download size cap."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()
