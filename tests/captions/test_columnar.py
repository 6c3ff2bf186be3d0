"""The columnar (polars) content encoder writes exactly the row encoder's COPY lines, whatever shape a post has."""

from __future__ import annotations

import json
import random

import polars.exceptions
import pytest

from pony_tasks.captions.columnar import ColumnarContentEncoder
from pony_tasks.captions.sets import ContentLineEncoder, _csv_array_element, _encode_chunk

VOCABULARY = ['say_"cheese"', "back\\slash", "ribbon_(object)", "caf&eacute;", "a,b", "\\N", "tagme", "highres",
              "artist:someone", "oc:nova", "pony", "my_little_pony", "日本語_tag", "{braces}", "Smile", "smile",
              "solo", "fox", "cartoon", "hero_(series)", "franchise", "blue_eyes", "blue eyes", "Anthro",
              "x"]  # fmt: skip


def post_json(rng: random.Random, index: int) -> str:
    tags = rng.sample(VOCABULARY, rng.randint(0, 12)) + (["solo"] if rng.random() < 0.2 else [])  # a duplicate
    shape = rng.choice(["flat", "empty", "grouped", "other"])
    groups: dict[str, list[str]] = {}
    if shape == "grouped":
        for group in ("character", "copyright", "artist", "species", "general", "oc"):
            if rng.random() < 0.5:
                groups[group] = rng.sample(tags, min(len(tags), rng.randint(0, 3)))
    elif shape == "other":  # only a group captions leave out: its tags are still not "ungrouped"
        groups["meta"] = tags[:2]
    return json.dumps({"d": f"{index:032x}", "s": rng.choice(["danbooru", "e621", "derpibooru", "gelbooru"]),
                       "r": rng.choice(["general", "sensitive", "questionable", "explicit"]), "t": tags,
                       "g": groups, "y": rng.choice([None, 2009, 2016, 2024]),
                       "c": rng.choice([None, None, 3, 17])})  # fmt: skip


@pytest.mark.parametrize("include_artist", [True, False])
def test_columnar_lines_equal_the_row_encoder(include_artist) -> None:
    rng = random.Random(16)
    lines = [post_json(rng, index) for index in range(3000)]
    frequencies = {"solo": 900, "smile": 40, "fox": 40, "x": 3, "blue eyes": 7}
    rows = ContentLineEncoder(include_artist=include_artist, frequencies=frequencies)
    columnar = ColumnarContentEncoder(include_artist=include_artist, frequencies=frequencies,
                                      element=_csv_array_element)  # fmt: skip
    keys = sorted({key for line in lines for key in json.loads(line)["g"]})
    expected = "".join(rows.encode(lines)[1])
    assert columnar.encode(lines, keys) == expected
    flat = [line for line in lines if not json.loads(line)["g"]]
    for line in lines[:40]:  # one post with groups among posts without (list.set_difference panicked on that)
        chunk = [line, *flat[:36]]
        assert columnar.encode(chunk, keys) == "".join(rows.encode(chunk)[1])


def test_a_chunk_polars_cannot_read_is_encoded_row_by_row() -> None:
    line = json.dumps({"d": "0" * 32, "s": "e621", "r": "general", "t": ["fox"], "g": {"general": "fox"}, "y": None,
                       "c": None})  # fmt: skip
    rows, columnar = ContentLineEncoder(), ColumnarContentEncoder(element=_csv_array_element)
    with pytest.raises(polars.exceptions.PolarsError):
        columnar.encode([line], ["general"])
    assert _encode_chunk([line], ["general"], columnar, rows) == "".join(rows.encode([line])[1])
