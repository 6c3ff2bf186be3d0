"""Judging one candidate pair from more than one signal: a close pHash alone is not enough — pHash reads only the
luminance, so another artist's colour swap of the same line art has a close pHash; a different crop or a sequence
frame changes the shape. A pair is a ``duplicate`` only when the pHash, the colour thumbnail and the aspect ratio agree
(and the CLIP embeddings, when both images have one); else ``distinct``, with the reason in the evidence."""

from __future__ import annotations

from dataclasses import dataclass

from pony_tasks.images.validate import colour_distance, hamming

# of 255, 4×4 thumbnails; measured: re-encodes ≤ 4.4, 2.5 % crops ≤ 6.2, the corpus's colour swaps mostly ≥ 6.9
MAX_COLOUR_DISTANCE = 6.5
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
    colour_thumb: bytes

    @property
    def aspect(self) -> float:
        return self.width / self.height if self.height else 0.0

    def canonical_rank(self) -> tuple:
        """Higher is a better canonical image: more pixels, lossless over lossy, more bytes (less re-encoded)."""
        return (self.width * self.height, LOSSLESS.get(self.format, 0), self.byte_size, self.sha256)


def judge(a: ImageFacts, b: ImageFacts, cosine: float | None = None) -> tuple[str, dict]:
    """(verdict, evidence) for a candidate pair."""
    evidence = {"phash_bits": hamming(a.phash, b.phash),
                "colour_distance": round(colour_distance(a.colour_thumb, b.colour_thumb), 2),
                "aspect_ratio": round(max(a.aspect, b.aspect) / max(min(a.aspect, b.aspect), 1e-9), 4)}  # fmt: skip
    if cosine is not None:
        evidence["embedding_cosine"] = round(cosine, 4)
    reasons = []
    if evidence["colour_distance"] > MAX_COLOUR_DISTANCE:
        reasons.append(f"colours differ ({evidence['colour_distance']} > {MAX_COLOUR_DISTANCE})")
    if evidence["aspect_ratio"] > MAX_ASPECT_RATIO:
        reasons.append(f"shapes differ (aspect ratio {evidence['aspect_ratio']} > {MAX_ASPECT_RATIO})")
    if cosine is not None and cosine < MIN_EMBEDDING_COSINE:
        reasons.append(f"embeddings differ (cosine {cosine:.3f} < {MIN_EMBEDDING_COSINE})")
    if reasons:
        evidence["reasons"] = reasons
        return "distinct", evidence
    return "duplicate", evidence
