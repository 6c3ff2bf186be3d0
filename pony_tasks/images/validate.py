"""Checks on downloaded bytes: the site's hash, then a full decode under a decompression-bomb limit — and, from the
decoded pixels, the perceptual hashes that near-duplicate matching starts from (:func:`perceptual_hashes`)."""

from __future__ import annotations

import functools
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


CROP_LEVELS = (0.025, 0.05)  # shares cut off every side for the crop views (migration 0017)
SIGNATURE_COLUMNS = ("phash", "colour_thumb", "detail", "inner_phash", "inner_colour_thumb", "inner_detail",
                     "crop_phash", "crop_colour_thumb", "crop_detail")  # the ``image`` columns, in this order


@dataclass(frozen=True)
class Signatures:
    """What near-duplicate matching compares, of the whole picture, of its content inside a uniform frame (a
    border some re-poster added; the same as the whole picture when there is none), and of the picture with a
    little cut off every side (``CROP_LEVELS``: a re-poster's small crop matches one of them)."""

    phash: int  # 64-bit DCT hash of the luminance, as a signed 64-bit integer (PostgreSQL bigint)
    colour_thumb: bytes  # the picture averaged to 4×4 RGB (48 bytes)
    detail: bytes  # the picture's brightness at 16×16 (256 bytes): where two close pictures differ
    inner_phash: int
    inner_colour_thumb: bytes
    inner_detail: bytes
    crop_phash: tuple[int, ...] = ()  # one per CROP_LEVELS
    crop_colour_thumb: tuple[bytes, ...] = ()
    crop_detail: tuple[bytes, ...] = ()

    def views(self) -> dict[str, tuple[int, bytes, bytes]]:
        """(pHash, colour thumbnail, detail) of the whole picture, of its inside (when it has a border) and of its
        crop views (``crop1``, ``crop2``: CROP_LEVELS)."""
        whole = (self.phash, self.colour_thumb, self.detail)
        inner = (self.inner_phash, self.inner_colour_thumb, self.inner_detail)
        views = {"whole": whole} if inner == whole else {"whole": whole, "inner": inner}
        for level, view in enumerate(zip(self.crop_phash, self.crop_colour_thumb, self.crop_detail, strict=True), 1):
            views[f"crop{level}"] = view
        return views

    def columns(self) -> tuple:
        """The values of SIGNATURE_COLUMNS (the crop views as lists: PostgreSQL arrays)."""
        return (self.phash, self.colour_thumb, self.detail, self.inner_phash, self.inner_colour_thumb,
                self.inner_detail, list(self.crop_phash), list(self.crop_colour_thumb),
                list(self.crop_detail))  # fmt: skip


@dataclass(frozen=True)
class DecodedImage:
    sha256: str
    width: int
    height: int
    format: str  # Pillow's name: JPEG, PNG, …
    signatures: Signatures | None = None  # perceptual signatures (None: over the pixel limit, never decoded)

    @property
    def phash(self) -> int | None:
        return self.signatures.phash if self.signatures else None

    @property
    def colour_thumb(self) -> bytes | None:
        return self.signatures.colour_thumb if self.signatures else None

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
                    signatures = perceptual_hashes(image) if width * height <= max_pixels else None
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
    return DecodedImage(hashlib.sha256(data).hexdigest(), width, height, image_format, signatures)


HASH_SOURCE_SIDE = 256  # images larger than twice this are box-reduced to about this size before hashing


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


FRAME_TOLERANCE = 48  # of 255, per channel: a border's pixels may differ this much from its corner (JPEG noise)
FRAME_FILL = 0.85  # share of a frame line's pixels that must be the corner's colour
MAX_FRAME_SHARE = 8  # a frame is at most 1/8 of the shorter side


def frame_width(rgb: Image.Image) -> int:
    """Width of a uniform frame around the picture: the number of lines, the same on all four sides, that are (almost
    all) the colour of the top-left corner. A border a re-poster added has the same width on every side; content that
    merely touches the edge in that colour on one side does not count (the narrowest side decides)."""
    import numpy as np

    pixels = np.asarray(rgb, dtype=np.int16)
    height, width = pixels.shape[:2]
    corner = pixels[0, 0]
    limit = min(height, width) // MAX_FRAME_SHARE

    def depth(lines) -> int:
        for k in range(limit):
            if (np.abs(lines(k) - corner).max(axis=-1) <= FRAME_TOLERANCE).mean() < FRAME_FILL:
                return k
        return limit

    return min(depth(lambda k: pixels[k]), depth(lambda k: pixels[height - 1 - k]),
               depth(lambda k: pixels[:, k]), depth(lambda k: pixels[:, width - 1 - k]))  # fmt: skip


def _signatures_of(rgb: Image.Image) -> tuple[int, bytes, bytes]:
    import imagehash  # scipy and PyWavelets: only when an image is decoded

    return (_signed64(int(str(imagehash.phash(rgb)), 16)), rgb.resize((4, 4), Image.BOX).tobytes(),
            rgb.convert("L").resize((16, 16), Image.BOX).tobytes())  # fmt: skip


def perceptual_hashes(image: Image.Image) -> Signatures:
    """Signatures of a decoded image (first frame; palette and alpha flattened onto RGB): imagehash's pHash (8×8 DCT
    of a 32×32 luminance thumbnail) and the picture box-averaged to 4×4 RGB pixels — of the whole picture and of what
    lies inside a uniform frame (:func:`frame_width`; a 4-px white border on a 100-px picture moves its pHash by up to
    22 bits, the inner hash by none)."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    if max(rgb.size) > 2 * HASH_SOURCE_SIDE:  # both signatures look at ≤ 32×32: box-reduce big images first (5× faster
        rgb = rgb.reduce(max(rgb.size) // HASH_SOURCE_SIDE)  # at 12 MP), the same way for every image
    whole = _signatures_of(rgb)
    frame = frame_width(rgb)
    inner = _signatures_of(rgb.crop((frame, frame, rgb.width - frame, rgb.height - frame))) if frame else whole
    crops = []
    for share in CROP_LEVELS:
        dx, dy = max(1, round(rgb.width * share)), max(1, round(rgb.height * share))
        crops.append(_signatures_of(rgb.crop((dx, dy, rgb.width - dx, rgb.height - dy))))
    return Signatures(*whole, *inner, *(tuple(view[i] for view in crops) for i in range(3)))


def colour_distance(a: bytes, b: bytes) -> float:
    """Mean absolute difference of two colour thumbnails, 0..255."""
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a)


def hamming(a: int, b: int) -> int:
    """Bits that differ between two 64-bit hashes (signed or not)."""
    return ((a ^ b) & ((1 << 64) - 1)).bit_count()


@functools.cache
def _comparison_constants():
    """(JFIF full-range RGB → Y, Cb, Cr matrix, the 16×16 detail's rows and columns padded by their edge cells):
    numpy is imported when signatures are first compared, not with this module."""
    import numpy as np

    ycbcr = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]).T
    return ycbcr, np.clip(np.arange(-1, 17), 0, 15)


def luma_chroma_distance(a: bytes, b: bytes) -> tuple[float, float]:
    """(luma, chroma): mean absolute difference of two colour thumbnails' brightness (Y) and of their colour (Cb and
    Cr), 0..255. Re-encoding and resizing move the brightness of a cell a little and its colour hardly at all (JPEG
    keeps the cell means); a recolour moves the colour."""
    import numpy as np

    ycbcr, _ = _comparison_constants()
    cells = np.frombuffer(a + b, dtype=np.uint8).reshape(2, -1, 3) @ ycbcr
    difference = np.abs(cells[0] - cells[1])
    return float(difference[:, 0].mean()), float(difference[:, 1:].sum() / (2 * len(difference)))


CHANGED_CELL = 20  # of 255: a detail cell this much brighter or darker than its counterpart has changed


def changed_share(a: bytes, b: bytes, margin: int = 0) -> float:
    """Share of the 16×16 detail cells that changed between two pictures, whichever way round is more: near 0 for a
    re-encode, a resize, a small crop; a few cells for a signature; more where a part of the picture moved or was
    redrawn. A cell has changed when it lies more than CHANGED_CELL outside the range of the other picture's cells
    within one cell of the same place (a crop or a border shifts the picture by up to a cell, and a cell across an
    edge then holds a mix of its neighbours); ``margin``: only cells at least this many cells from the edge count."""
    import numpy as np

    _, edge = _comparison_constants()
    cells = np.frombuffer(a + b, dtype=np.uint8).astype(np.int16).reshape(2, 16, 16)
    padded = cells[:, edge][:, :, edge]
    # each cell's 3×3 neighbourhood's range, rows then columns (a few array operations: this runs for every pair)
    low = np.minimum(np.minimum(padded[:, :-2], padded[:, 1:-1]), padded[:, 2:])
    high = np.maximum(np.maximum(padded[:, :-2], padded[:, 1:-1]), padded[:, 2:])
    low = np.minimum(np.minimum(low[:, :, :-2], low[:, :, 1:-1]), low[:, :, 2:])
    high = np.maximum(np.maximum(high[:, :, :-2], high[:, :, 1:-1]), high[:, :, 2:])
    other = cells[::-1]  # a against b's ranges, b against a's
    outside = (other < low - CHANGED_CELL) | (other > high + CHANGED_CELL)
    if margin:
        outside = outside[:, margin:-margin, margin:-margin]
    return float(outside.mean(axis=(1, 2)).max())
