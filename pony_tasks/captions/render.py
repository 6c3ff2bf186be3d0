"""Captions: special tags, cleaned content tags, and the kohya keep separator between the fixed and shuffled parts.

Layout: ``<fixed part> ||| <shuffleable part>``. Under ``v6`` the quality chain leads the fixed part as one string
(as V6 captioned); under ``v7`` only the band tag is fixed and the independent ``score_K_up`` tokens go to the
shuffleable part, where the train-time sampler keeps or drops each one and shuffles them among the content tags.
"""

from __future__ import annotations

import functools
import html
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass

from pony_tasks.captions.quality import QualityTags, sample_quality

KEEP_SEPARATOR = "|||"
RATING_TAGS = {"general": "rating_safe", "sensitive": "rating_safe", "questionable": "rating_questionable",
               "explicit": "rating_explicit"}  # fmt: skip
DEFAULT_BLACKLIST = frozenset({
    "tagme", "translation_request", "commentary_request", "bad_id", "bad_pixiv_id", "highres", "absurdres",
    "duplicate", "image_sample", "md5_mismatch", "watermark", "artist_name", "signature", "web_address",
    "safe", "suggestive", "questionable", "explicit",  # Derpibooru's rating tags: the rating_* tag says it
})  # fmt: skip
GROUP_ORDER = ("character", "oc", "copyright", "artist", "species", "general")
FURRY_HINTS = frozenset({"anthro", "furry", "feral", "canine", "feline", "fox", "wolf", "dragon"})
ANIME_HINTS = frozenset({"1girl", "1boy", "2girls", "solo_focus", "anime", "original"})


def source_tag(site: str, tags: Iterable[str]) -> str:
    """``source_pony`` / ``source_furry`` / ``source_cartoon`` / ``source_anime`` from the site and its tags."""
    tagset = {t.lower() for t in tags}
    if site == "derpibooru" or {"pony", "my_little_pony", "my little pony"} & tagset:
        return "source_pony"
    if site == "e621" or FURRY_HINTS & tagset:
        return "source_furry"
    if "cartoon" in tagset or "western" in tagset:
        return "source_cartoon"
    return "source_anime"


@functools.lru_cache(maxsize=1 << 18)
def clean_tag(tag: str) -> str:
    """Entities decoded, underscores to spaces, parentheses escaped (``\\(``) as the trainers expect."""
    text = html.unescape(tag).strip().replace("_", " ")
    text = re.sub(r"\s+", " ", text)
    return text.replace("(", "\\(").replace(")", "\\)")


def content_tags(
    tag_groups: dict[str, list[str]], tags: Iterable[str], *, include_artist: bool = True,
    blacklist: frozenset[str] = DEFAULT_BLACKLIST,
) -> list[str]:  # fmt: skip
    """Content tags ordered character, copyright, artist (optional), general; sites without categories fall back
    to the flat tag list. Derpibooru prefixes (``artist:``) are dropped from the text, its rating tags removed."""
    seen: set[str] = set()
    ordered: list[str] = []

    def add(raw: str) -> None:
        cleaned = _caption_form(raw, blacklist)
        if cleaned and cleaned not in seen:
            seen.add(cleaned)
            ordered.append(cleaned)

    groups = tag_groups or {}
    grouped: set[str] = set()
    for members in groups.values():
        grouped.update(members)
    for group in GROUP_ORDER:
        if group == "artist" and not include_artist:
            continue
        for raw in groups.get(group, []):
            add(raw)
    for raw in sorted(tags):  # tags not in a known group (and every tag on sites without groups)
        if raw not in grouped:
            add(raw)
    return ordered


@functools.lru_cache(maxsize=1 << 18)
def _caption_form(raw: str, blacklist: frozenset[str]) -> str | None:
    """A site tag as it appears in captions (None if blacklisted): namespace prefix dropped, cleaned."""
    prefix, colon, rest = raw.partition(":")
    name = rest if colon and prefix in ("artist", "oc") else raw
    if raw.lower() in blacklist or name.lower() in blacklist:
        return None
    return clean_tag(name) or None


@dataclass(frozen=True)
class Caption:
    """A structured caption: what is stored per (image, aesthetic version, scheme)."""

    quality: QualityTags
    source: str
    rating: str
    content: tuple[str, ...]

    def fixed_part(self) -> list[str]:
        quality = (
            [self.quality.band_tag] if self.quality.independent else [self.quality.band_tag, *self.quality.up_tags]
        )
        return [*quality, self.source, self.rating]

    def render(self) -> str:
        """The stored text: every tag, the independent quality tokens listed in the shuffleable part."""
        flexible = [*(self.quality.up_tags if self.quality.independent else ()), *self.content]
        return f"{', '.join(self.fixed_part())} {KEEP_SEPARATOR} {', '.join(flexible)}".strip()


def build_caption(
    quality: QualityTags, site: str, rating: str, tag_groups: dict[str, list[str]], tags: Iterable[str],
    *, include_artist: bool = True,
) -> Caption:  # fmt: skip
    tags = list(tags)
    if rating not in RATING_TAGS:
        raise ValueError(f"rating {rating!r} is not one of {sorted(RATING_TAGS)}")
    return Caption(quality, source_tag(site, tags), RATING_TAGS[rating],
                   tuple(content_tags(tag_groups, tags, include_artist=include_artist)))  # fmt: skip


def sample_caption(caption: Caption, rng: random.Random, keep_probability: float = 0.5) -> str:
    """One training-step caption: the fixed part in order, then (v7) independently kept quality tokens shuffled
    with the content tags. Seed ``rng`` per step for reproducible runs."""
    flexible = list(caption.content)
    if caption.quality.independent:
        flexible += sample_quality(caption.quality, rng, keep_probability)[1:]
    rng.shuffle(flexible)
    return ", ".join([*caption.fixed_part(), *flexible])
