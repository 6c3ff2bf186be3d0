"""Judging one candidate pair from more than one signal: a close pHash alone is not enough — pHash reads only the
luminance, so another artist's colour swap of the same line art has a close pHash; a different crop or a sequence
frame changes the shape. A pair is a ``duplicate`` only when the pHash, the colour hash and the aspect ratio agree
(and the CLIP embeddings, when both images have one); else ``distinct``, with the reason in the evidence."""

from __future__ import annotations

from dataclasses import dataclass

from pony_tasks.images.validate import hamming

MAX_COLOUR_BITS = 3  # booru alterations measured ≤ 1 of 42 bits; a colour swap 8
MAX_ASPECT_RATIO = 1.10  # larger of the two width/height ratios over the smaller: borders and small crops pass
MIN_EMBEDDING_COSINE = 0.90  # when both images have an embedding of the same model

LOSSLESS = {"PNG": 2, "WEBP": 1, "GIF": 1, "BMP": 2, "TIFF": 2}  # lossless over lossy (WEBP/GIF: either)


@dataclass(frozen=True)
class ImageFacts:
    sha256: str
    width: int
    height: int
    format: str
    byte_size: int
    phash: int
    colour_hash: int

    @property
    def aspect(self) -> float:
        return self.width / self.height if self.height else 0.0

    def canonical_rank(self) -> tuple:
        """Higher is a better canonical image: more pixels, lossless over lossy, more bytes (less re-encoded)."""
        return (self.width * self.height, LOSSLESS.get(self.format, 0), self.byte_size, self.sha256)


def judge(a: ImageFacts, b: ImageFacts, cosine: float | None = None) -> tuple[str, dict]:
    """(verdict, evidence) for a candidate pair."""
    evidence = {"phash_bits": hamming(a.phash, b.phash), "colour_bits": (a.colour_hash ^ b.colour_hash).bit_count(),
                "aspect_ratio": round(max(a.aspect, b.aspect) / max(min(a.aspect, b.aspect), 1e-9), 4)}  # fmt: skip
    if cosine is not None:
        evidence["embedding_cosine"] = round(cosine, 4)
    reasons = []
    if evidence["colour_bits"] > MAX_COLOUR_BITS:
        reasons.append(f"colours differ ({evidence['colour_bits']} bits > {MAX_COLOUR_BITS})")
    if evidence["aspect_ratio"] > MAX_ASPECT_RATIO:
        reasons.append(f"shapes differ (aspect ratio {evidence['aspect_ratio']} > {MAX_ASPECT_RATIO})")
    if cosine is not None and cosine < MIN_EMBEDDING_COSINE:
        reasons.append(f"embeddings differ (cosine {cosine:.3f} < {MIN_EMBEDDING_COSINE})")
    if reasons:
        evidence["reasons"] = reasons
        return "distinct", evidence
    return "duplicate", evidence
