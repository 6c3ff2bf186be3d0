"""Inter-rater agreement: Krippendorff's alpha (ordinal) over images rated by two or more raters."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import psycopg2.extensions


@dataclass(frozen=True)
class Agreement:
    ratings: int
    images: int
    raters: dict[str, int]
    images_with_several_raters: int
    krippendorff_alpha: float | None  # ordinal; None with fewer than two raters on any image

    def describe(self) -> str:
        per_rater = ", ".join(f"{name} {count}" for name, count in sorted(self.raters.items())) or "none"
        text = f"{self.ratings} ratings of {self.images} images by {len(self.raters)} raters ({per_rater})"
        if self.krippendorff_alpha is None:
            return text + "; agreement: needs images rated by two or more raters"
        return (
            text + f"; Krippendorff's alpha (ordinal) {self.krippendorff_alpha:.3f} "
            f"over {self.images_with_several_raters} images with several raters"
        )


def rater_agreement(conn: psycopg2.extensions.connection) -> Agreement:
    """Each rater's latest rating per image counts once."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT DISTINCT ON (sha256, rater) sha256, rater, rating FROM human_rating
               ORDER BY sha256, rater, rated_at DESC"""
        )
        latest = cur.fetchall()
        cur.execute("SELECT count(*) FROM human_rating")
        total = cur.fetchone()[0]
    raters = sorted({r for _, r, _ in latest})
    images = sorted({s for s, _, _ in latest})
    counts = {rater: sum(1 for _, r, _ in latest if r == rater) for rater in raters}
    per_image: dict[str, int] = {}
    for sha, _, _ in latest:
        per_image[sha] = per_image.get(sha, 0) + 1
    shared = [sha for sha, n in per_image.items() if n >= 2]
    alpha = None
    if len(raters) >= 2 and shared:
        import krippendorff

        column = {sha: i for i, sha in enumerate(shared)}
        row = {rater: i for i, rater in enumerate(raters)}
        matrix = np.full((len(raters), len(shared)), np.nan)
        for sha, rater, rating in latest:
            if sha in column:
                matrix[row[rater], column[sha]] = rating
        alpha = float(krippendorff.alpha(reliability_data=matrix, level_of_measurement="ordinal",
                                         value_domain=[1, 2, 3, 4, 5]))  # fmt: skip
    return Agreement(total, len(images), counts, len(shared), alpha)
