"""One vocabulary for the tags of a work's posts: a tag's spelling made common (lower case, spaces → underscores:
Derpibooru writes "blue eyes", Danbooru "blue_eyes"), then the mapping table ``tag_synonyms.csv`` (data, one row per
tag with the sites that use it and the evidence).

How a row gets into the table: only a true synonym — the same thing named differently by a site's naming rule
(e621's series qualifier ``twilight_sparkle_(mlp)`` for Derpibooru's ``twilight sparkle``), never a near meaning:
e621 ``female`` is not Danbooru ``1girl`` (one counts characters, the other tags a sex, also of animals), Danbooru
``solo`` and e621 ``solo`` are spelled alike and kept as they are. A tag not in the table is left alone."""

from __future__ import annotations

import csv
import functools
import hashlib
from pathlib import Path

TABLE = Path(__file__).with_name("tag_synonyms.csv")


def common_spelling(tag: str) -> str:
    return "_".join(tag.strip().lower().split())


@functools.lru_cache(maxsize=1)
def synonyms() -> dict[str, str]:
    """tag (common spelling) → the vocabulary's tag."""
    with TABLE.open(encoding="utf-8", newline="") as handle:
        return {common_spelling(row["tag"]): common_spelling(row["common"]) for row in csv.DictReader(handle)}


def table_digest() -> str:
    """Short digest of the table: cached caption content depends on it."""
    return hashlib.md5(TABLE.read_bytes()).hexdigest()[:12]


def common_tag(tag: str) -> str:
    """The vocabulary's name for a site's tag (a Derpibooru ``artist:``/``oc:`` prefix is kept)."""
    spelled = common_spelling(tag)
    return synonyms().get(spelled, spelled)
