"""The pair judge's artist-credit signal: two posts that both credit artists and share none are two works, whatever
their pixels; placeholders in the artist category and uncredited posts do not count."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image, ImageDraw

from pony_tasks.images.validate import decode
from pony_tasks.works.decide import ImageFacts, judge


def _facts(artists: set[str], quality: int) -> ImageFacts:
    rng = random.Random(7)
    image = Image.new("RGB", (160, 120), (200, 180, 160))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = rng.randrange(140), rng.randrange(100)
        draw.rectangle((x, y, x + rng.randrange(10, 60), y + rng.randrange(10, 50)),
                       fill=tuple(rng.randrange(256) for _ in range(3)))  # fmt: skip
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    decoded = decode(buffer.getvalue(), 50_000_000)
    return ImageFacts(decoded.sha256, decoded.width, decoded.height, decoded.format, len(buffer.getvalue()),
                      decoded.signatures, frozenset(artists))  # fmt: skip


@pytest.mark.parametrize(("credits_a", "credits_b", "verdict"), [
    ({"inkwell"}, {"inkwell"}, "duplicate"),
    ({"inkwell_(artist)"}, {"inkwell"}, "duplicate"),  # Danbooru's qualifier
    ({"inkwell"}, set(), "duplicate"),  # an uncredited re-post (Gelbooru gives no tag types)
    ({"inkwell"}, {"conditional_dnp", "unknown_artist"}, "duplicate"),  # credits nobody
    ({"inkwell", "sunbeam"}, {"sunbeam"}, "duplicate"),  # a collaboration, one artist named
    ({"inkwell"}, {"sunbeam"}, "distinct"),
    ({"inkwell", "conditional_dnp"}, {"sunbeam"}, "distinct"),
])  # fmt: skip
def test_a_re_encode_is_one_work_unless_the_posts_credit_other_artists(credits_a, credits_b, verdict) -> None:
    verdict_of, evidence = judge(_facts(credits_a, 92), _facts(credits_b, 60))
    assert evidence["phash_bits"] <= 4  # the pixels agree as a re-encode's do
    assert verdict_of == verdict, evidence
    if verdict == "distinct":
        assert any(r.startswith("credited to other artists") for r in evidence["reasons"])
