"""Checks on downloaded bytes: the site's hash, then a full decode under a decompression-bomb limit — and, from the
decoded pixels, the perceptual hashes that near-duplicate matching starts from (:func:`perceptual_hashes`)."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

FORMAT_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "BMP": "bmp", "TIFF": "tiff"}


class ImageRejected(ValueError):
    """The file is not a usable image; ``reason`` is a short code stored in the quarantine table."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class DecodedImage:
    sha256: str
    width: int
    height: int
    format: str  # Pillow's name: JPEG, PNG, …
    phash: int | None = None  # 64-bit DCT hash of the luminance, as a signed 64-bit integer (PostgreSQL bigint)
    colour_thumb: bytes | None = None  # the image averaged to 4×4 RGB (48 bytes)

    @property
    def extension(self) -> str:
        return FORMAT_EXTENSIONS.get(self.format, self.format.lower())


def check_hashes(data: bytes, md5: str | None, sha512: str | None) -> None:
    if md5 and hashlib.md5(data).hexdigest() != md5.lower():
        raise ImageRejected("hash_mismatch", f"md5 of the {len(data)} bytes is not the site's {md5}")
    if sha512 and hashlib.sha512(data).hexdigest() != sha512.lower():
        raise ImageRejected("hash_mismatch", f"sha512 of the {len(data)} bytes is not the site's")


def decode(data: bytes, max_pixels: int) -> DecodedImage:
    """Fully decode ``data`` (so truncation shows), refusing images over ``max_pixels``."""
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                with Image.open(io.BytesIO(data)) as image:
                    image_format = image.format or "unknown"
                    width, height = image.size
                    image.load()
                    hashes = perceptual_hashes(image) if width * height <= max_pixels else (None, None)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                raise ImageRejected("decompression_bomb", str(exc)) from None
            except UnidentifiedImageError:
                raise ImageRejected("not_an_image", f"{data[:16]!r}… is no image format Pillow knows") from None
            except (OSError, SyntaxError, ValueError) as exc:
                raise ImageRejected("corrupt", f"decoding failed: {exc}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = previous
    if width * height > max_pixels:
        raise ImageRejected("decompression_bomb", f"{width}x{height} is over the {max_pixels}-pixel limit")
    return DecodedImage(hashlib.sha256(data).hexdigest(), width, height, image_format, *hashes)


HASH_SOURCE_SIDE = 256  # images larger than twice this are box-reduced to about this size before hashing


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def perceptual_hashes(image: Image.Image) -> tuple[int, bytes]:
    """(phash, colour_thumb) of a decoded image (first frame; palette and alpha flattened onto RGB): imagehash's pHash
    (8×8 DCT of a 32×32 luminance thumbnail) and the picture box-averaged to 4×4 RGB pixels."""
    import imagehash  # scipy and PyWavelets: only when an image is decoded

    rgb = image if image.mode == "RGB" else image.convert("RGB")
    if max(rgb.size) > 2 * HASH_SOURCE_SIDE:  # both signatures look at ≤ 32×32: box-reduce big images first (5× faster
        rgb = rgb.reduce(max(rgb.size) // HASH_SOURCE_SIDE)  # at 12 MP), the same way for every image
    phash = _signed64(int(str(imagehash.phash(rgb)), 16))
    return phash, rgb.resize((4, 4), Image.BOX).tobytes()


def colour_distance(a: bytes, b: bytes) -> float:
    """Mean absolute difference of two colour thumbnails, 0..255."""
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a)


def hamming(a: int, b: int) -> int:
    """Bits that differ between two 64-bit hashes (signed or not)."""
    return ((a ^ b) & ((1 << 64) - 1)).bit_count()
