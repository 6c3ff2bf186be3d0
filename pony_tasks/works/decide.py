"""Judging one candidate pair from more than one signal. A close pHash alone is not enough: pHash reads only the
luminance at 32×32, so another artist's colour swap of the same line art has a close pHash, and so can the next frame
of a sequence (a part of the picture moved). A pair is a ``duplicate`` only when every signal agrees:

- the pHash of the closest views: the whole pictures, what lies inside a border one of them has, or the pictures
  with 2.5 % or 5 % cut off every side (a re-poster's small crop matches one of those);
- the colour thumbnails (4×4), as brightness and colour apart: a recolour moves the colour (Cb/Cr), a re-encode
  hardly does;
- the 16×16 detail away from the edges: how many cells changed (a signature or watermark sits at the edge; a moved
  part or a re-drawing changes the inside), each cell compared with its neighbours too (a crop shifts by a cell);
- past a pHash move a re-encode does not make (``MARK_BITS``), thumbnails that agree closely: a mark added on top;
- the aspect ratio (borders and small crops pass, another crop does not);
- the CLIP embeddings, when both images have one of the same model and the pHashes are not already within a
  re-encode's few bits (there the pixels agree past anything an embedding can say; the demo's random-init model
  puts some true re-encodes at cosine 0.77);
- the artists the posts credit: a re-post of a work credits its artist, so two images whose posts both name artists
  and share none are two works (another artist's edit, recolour or frame), however alike their pixels. Names in the
  artist category that name nobody (``NOT_ARTISTS``: e621's ``conditional_dnp``, ``unknown_artist``…) do not count,
  nor does a side with no credit (Gelbooru's API gives no tag types); Danbooru's ``_(artist)`` qualifier is
  dropped. A re-poster's wrong credit keeps a copy apart: an operator links it (``pony works link``). The signatures
  alone still merge some frames of a sequence whose moved part hardly shows at 16×16 (the closing note of issue 15
  has the figures), which is why this signal is not left out.

Pairs that fail only on colour or detail, whose posts share an artist, and whose drawing is kept (pHash within
``MAX_VARIANT_BITS``, at most ``MAX_VARIANT_CHANGED_SHARE`` of the inner detail changed: a shared artist alone is
not enough) are that artist's ``variant`` (an alternate version: linked, not merged); every other failing pair is
``distinct``, with the reasons in the evidence. The limits below were calibrated on the sample corpus (see the
comment above them); on real images they are a starting point, to be checked with the works page's near misses."""

from __future__ import annotations

from dataclasses import dataclass

from pony_tasks.images.validate import Signatures, changed_share, hamming, luma_chroma_distance

# Calibrated on the sample corpus's seeds 1–5 and checked on seed 621, the demo's (benchmarks/works_matching.py; the
# closing note of issue 15 has the figures): more lenient finds more crops and signatures and merges more sequence
# frames, stricter the reverse.
MAX_CONFIRM_BITS = 20  # pHash bits for a confirmed pair (signatures on 64-px pictures reach 28; re-drawings ≥ 18)
MARK_BITS = 8  # past this many bits (of the closest views) only a mark on top explains the move: thumbnails agree
MAX_MARK_LOOK = 1.2  # luma + chroma allowed past MARK_BITS (the training seeds score 1.2 and 1.5 alike)
MAX_VARIANT_BITS = 12  # an alternate version keeps the drawing: its pHash stays this close …
MAX_VARIANT_CHANGED_SHARE = 0.45  # … and most of its inner 16×16 detail (demo corpus: the artist's alternate
# versions ≤ 11 % of cells changed; same-artist pairs judged variants on a shared artist alone 50 % and 100 %; on six
# seeds 51 of 58 alternate versions stay variants, 52 with no cap, 49 with a cap of 25 %)
MAX_LUMA = 8.0  # of 255, 4×4 brightness: re-encodes ≤ 7.5
MAX_CHROMA = 3.5  # of 255, 4×4 colour: re-encodes ≤ 3.0, crops and borders ≤ 4.1 (the shift); recolours ≥ 3.5
DETAIL_MARGIN = 2  # detail cells this close to the edge are not compared (signatures, watermarks, borders sit there)
MAX_CHANGED_SHARE = 0.015  # of the inner 12×12 detail cells: copies ≤ 2 %, moved parts mostly ≥ 2 % (some 0)
MAX_ASPECT_RATIO = 1.10  # larger of the two width/height ratios over the smaller
MIN_EMBEDDING_COSINE = 0.90  # when both images have an embedding of the same model …
EMBEDDING_VETO_BITS = 4  # … and the pHashes differ by more than this: closer, the pixels agree past any embedding

# Artist-category tags that credit nobody (seen in e621's recorded pages: conditional_dnp, unknown_artist; the rest
# from e621's and Derpibooru's tag conventions).
NOT_ARTISTS = frozenset({
    "conditional_dnp", "unknown_artist", "anonymous_artist", "avoid_posting", "sound_warning", "epilepsy_warning",
    "third-party_edit", "unknown_artist_signature", "artist_request", "banned_artist", "artist_needed",
    "anonymous", "unknown",
})  # fmt: skip

LOSSLESS = {"PNG": 2, "WEBP": 1, "GIF": 1, "BMP": 2, "TIFF": 2}  # lossless over lossy (WEBP/GIF: either)


@dataclass(frozen=True)
class ImageFacts:
    sha256: str
    width: int
    height: int
    format: str
    byte_size: int
    signatures: Signatures
    artists: frozenset[str] = frozenset()  # the artist tags of the image's posts

    @property
    def aspect(self) -> float:
        return self.width / self.height if self.height else 0.0

    def canonical_rank(self) -> tuple:
        """Higher is a better canonical image, before marks are looked at (:func:`canonical_image`): more pixels,
        lossless over lossy, then the file size — a lossy file's more bytes are less re-encoded, a lossless file's
        fewer bytes carry nothing added (a signature, a watermark: the same pixels otherwise)."""
        lossless = LOSSLESS.get(self.format, 0)
        return (self.width * self.height, lossless, -self.byte_size if lossless else self.byte_size, self.sha256)


MARK_CELL_LEVELS = 6  # of 255: 16×16 detail cells two copies differ in by more than this are where a mark may be


def _roughness(detail: bytes, cells: list[int]) -> float:
    """How far each of ``cells`` (indices into the 16×16 detail) stands out from its four neighbours, summed."""
    total = 0.0
    for cell in cells:
        y, x = divmod(cell, 16)
        near = [detail[(y + dy) * 16 + x + dx] for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))
                if 0 <= y + dy < 16 and 0 <= x + dx < 16]  # fmt: skip
        total += abs(detail[cell] - sum(near) / len(near))
    return total


def marked_side(a: ImageFacts, b: ImageFacts) -> ImageFacts | None:
    """Of two copies of one picture at the same size, the one carrying a mark the other lacks (a signature, a
    watermark, a stamp): where their 16×16 details differ, a mark stands out from what is around it, the clean copy
    does not. None when they do not differ or neither stands out more."""
    cells = [i for i, (p, q) in enumerate(zip(a.signatures.detail, b.signatures.detail, strict=True))
             if abs(p - q) > MARK_CELL_LEVELS]  # fmt: skip
    if not cells:
        return None
    rough_a, rough_b = _roughness(a.signatures.detail, cells), _roughness(b.signatures.detail, cells)
    if abs(rough_a - rough_b) <= MARK_CELL_LEVELS * len(cells) / 2:
        return None
    return a if rough_a > rough_b else b


def canonical_image(images: list[ImageFacts]) -> ImageFacts:
    """A work's canonical image: the most pixels, lossless first; among copies tied on those, the one marked the
    fewest times against the others (:func:`marked_side`: the clean copy beats its signed or watermarked re-post),
    then :meth:`ImageFacts.canonical_rank`."""
    best = max(image.canonical_rank()[:2] for image in images)
    tied = [image for image in images if image.canonical_rank()[:2] == best]
    marks = dict.fromkeys((image.sha256 for image in tied), 0)
    if len(tied) > 1:
        for index, a in enumerate(tied):
            for b in tied[index + 1:]:
                if (a.width, a.height) == (b.width, b.height) and (marked := marked_side(a, b)) is not None:
                    marks[marked.sha256] += 1
    return max(tied, key=lambda image: (-marks[image.sha256], image.canonical_rank()))


def credited(artists: frozenset[str]) -> frozenset[str]:
    """The artists a post's artist tags name (common spelling, Danbooru's ``_(artist)`` qualifier dropped)."""
    return frozenset(a.removesuffix("_(artist)") for a in artists if a not in NOT_ARTISTS)


def closest_views(a: ImageFacts, b: ImageFacts) -> tuple[str, int, tuple[bytes, bytes], tuple[bytes, bytes]]:
    """(which views, pHash bits, (thumbnail, detail) of a, of b) of the pair of views with the fewest differing
    bits (the whole pictures on a tie)."""
    best = None
    for name_a, (hash_a, *looks_a) in a.signatures.views().items():
        for name_b, (hash_b, *looks_b) in b.signatures.views().items():
            bits = hamming(hash_a, hash_b)
            if best is None or bits < best[1]:
                best = (f"{name_a}/{name_b}", bits, tuple(looks_a), tuple(looks_b))
    assert best is not None
    return best  # type: ignore[return-value]


def judge(a: ImageFacts, b: ImageFacts, cosine: float | None = None) -> tuple[str, dict]:
    """(verdict, evidence) for a candidate pair: ``duplicate``, ``variant`` or ``distinct``."""
    views, bits, (thumb_a, detail_a), (thumb_b, detail_b) = closest_views(a, b)
    luma, chroma = luma_chroma_distance(thumb_a, thumb_b)
    evidence = {"phash_bits": bits, "views": views, "luma_distance": round(luma, 2),
                "chroma_distance": round(chroma, 2),
                "changed_share": round(changed_share(detail_a, detail_b, DETAIL_MARGIN), 4),
                "aspect_ratio": round(max(a.aspect, b.aspect) / max(min(a.aspect, b.aspect), 1e-9), 4)}  # fmt: skip
    if cosine is not None:
        evidence["embedding_cosine"] = round(cosine, 4)
    shape, looks = [], []  # reasons it is another drawing / reasons it looks different
    if bits > MAX_CONFIRM_BITS:
        shape.append(f"shapes differ (pHash {bits} bits > {MAX_CONFIRM_BITS})")
    if evidence["aspect_ratio"] > MAX_ASPECT_RATIO:
        shape.append(f"shapes differ (aspect ratio {evidence['aspect_ratio']} > {MAX_ASPECT_RATIO})")
    credits_a, credits_b = credited(a.artists), credited(b.artists)
    if credits_a and credits_b and not credits_a & credits_b:
        shape.append(f"credited to other artists ({', '.join(sorted(credits_a))} / {', '.join(sorted(credits_b))})")
    if cosine is not None and cosine < MIN_EMBEDDING_COSINE and bits > EMBEDDING_VETO_BITS:
        looks.append(f"embeddings differ (cosine {cosine:.3f} < {MIN_EMBEDDING_COSINE})")
    if bits > MARK_BITS and luma + chroma > MAX_MARK_LOOK:
        looks.append(f"more than a mark changed (pHash {bits} bits > {MARK_BITS} and the thumbnails differ by "
                     f"{luma + chroma:.2f} > {MAX_MARK_LOOK})")  # fmt: skip
    if chroma > MAX_CHROMA:
        looks.append(f"colours differ (chroma {evidence['chroma_distance']} > {MAX_CHROMA})")
    if luma > MAX_LUMA:
        looks.append(f"brightness differs (luma {evidence['luma_distance']} > {MAX_LUMA})")
    if evidence["changed_share"] > MAX_CHANGED_SHARE:
        looks.append(f"part of the picture changed ({evidence['changed_share']:.1%} of cells > "
                     f"{MAX_CHANGED_SHARE:.1%})")  # fmt: skip
    if not shape and not looks:
        return "duplicate", evidence
    evidence["reasons"] = shape + looks
    shared = sorted(credits_a & credits_b)
    if not shape and bits <= MAX_VARIANT_BITS and shared and evidence["changed_share"] <= MAX_VARIANT_CHANGED_SHARE:
        evidence["shared_artists"] = shared
        return "variant", evidence
    return "distinct", evidence
