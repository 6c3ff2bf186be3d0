import itertools
import random

import pytest
from click.testing import CliRunner

from pony_tasks.captions.quality import band_for, quality_tags, sample_quality
from pony_tasks.captions.render import KEEP_SEPARATOR, build_caption, clean_tag, content_tags, sample_caption
from pony_tasks.cli import cli


@pytest.mark.parametrize(
    ("band", "expected"),
    [
        (9, "score_9, score_8_up, score_7_up, score_6_up, score_5_up, score_4_up"),
        (8, "score_8, score_7_up, score_6_up, score_5_up, score_4_up"),
        (7, "score_7, score_6_up, score_5_up, score_4_up"),
        (6, "score_6, score_5_up, score_4_up"),
        (5, "score_5, score_4_up"),
        (4, "score_4"),
    ],
)
def test_v6_is_exactly_pony_diffusion_v6s_chain(band: int, expected: str) -> None:
    tags = quality_tags("v6", band)
    assert ", ".join(sample_quality(tags, random.Random(0))) == expected
    caption = build_caption(tags, "danbooru", "general", {}, ["smile"])
    assert caption.render().startswith(expected + ", source_anime, rating_safe " + KEEP_SEPARATOR)


@pytest.mark.parametrize(
    ("percentile", "band"), [(0.95, 9), (0.9, 9), (0.85, 8), (0.75, 7), (0.55, 5), (0.25, 2), (0.1, 1), (0.0, 1)]
)
def test_bands_follow_the_percentile_thresholds(percentile: float, band: int) -> None:
    assert band_for(percentile) == band


def test_floor_and_thresholds_are_configurable() -> None:
    assert band_for(0.0, floor=3) == 3
    assert band_for(0.5, thresholds=(0.99, 0.5)) == 8
    with pytest.raises(ValueError, match="0..1"):
        band_for(1.5)
    assert quality_tags("v7", 4, floor=2).up_tags == ("score_3_up", "score_2_up")
    assert quality_tags("v7", 3).up_tags == ("score_2_up", "score_1_up")


def test_v7_up_tags_appear_independently_of_each_other() -> None:
    tags = quality_tags("v7", 9)
    rng = random.Random(42)
    draws = 20_000
    samples = [set(sample_quality(tags, rng)) for _ in range(draws)]
    assert all("score_9" in s for s in samples), "the band tag is always there"
    presence = {tag: sum(tag in s for s in samples) / draws for tag in tags.up_tags}
    assert all(0.47 < p < 0.53 for p in presence.values()), presence
    for first, second in itertools.combinations(tags.up_tags, 2):
        both = sum(first in s and second in s for s in samples) / draws
        assert abs(both - presence[first] * presence[second]) < 0.02, (first, second, both)
        # neither determines the other: each is seen without the other
        assert any(first in s and second not in s for s in samples)
        assert any(second in s and first not in s for s in samples)


def test_v7_training_captions_never_repeat_one_fixed_quality_string() -> None:
    caption = build_caption(quality_tags("v7", 8), "e621", "explicit", {}, ["anthro", "solo", "smile"])
    rng = random.Random(1)
    quality_strings = {
        tuple(t for t in sample_caption(caption, rng).split(", ") if t.startswith("score_")) for _ in range(500)
    }
    assert len(quality_strings) > 100
    assert sample_caption(caption, random.Random(7)) == sample_caption(caption, random.Random(7)), "seeded"


def test_content_tags_are_cleaned_ordered_and_filtered() -> None:
    groups = {"general": ["smile", "looking_at_viewer"], "artist": ["inkwell"], "character": ["saber_(fate)"],
              "copyright": ["my_little_pony"]}  # fmt: skip
    tags = ["smile", "looking_at_viewer", "inkwell", "saber_(fate)", "my_little_pony", "tagme", "pinkie&#039;s_party"]
    assert content_tags(groups, tags) == [
        "saber \\(fate\\)", "my little pony", "inkwell", "smile", "looking at viewer", "pinkie's party",
    ]  # fmt: skip
    assert "inkwell" not in content_tags(groups, tags, include_artist=False)
    derpi = content_tags({}, ["artist:quill", "safe", "twilight sparkle", "oc:star"])
    assert derpi == ["quill", "star", "twilight sparkle"]
    assert clean_tag("a_(b)_c") == "a \\(b\\) c"


def test_special_tags_from_site_rating_and_tags() -> None:
    v6 = quality_tags("v6", 7)
    derpibooru = build_caption(v6, "derpibooru", "sensitive", {}, ["pony"])
    assert derpibooru.fixed_part()[-2:] == ["source_pony", "rating_safe"]
    assert build_caption(v6, "e621", "explicit", {}, ["solo"]).fixed_part()[-2:] == ["source_furry", "rating_explicit"]
    assert build_caption(v6, "gelbooru", "questionable", {}, ["1girl"]).fixed_part()[-2:] == [
        "source_anime", "rating_questionable"]  # fmt: skip
    assert build_caption(v6, "danbooru", "general", {}, ["cartoon"]).source == "source_cartoon"
    with pytest.raises(ValueError, match="rating"):
        build_caption(v6, "danbooru", "nsfw", {}, [])


def test_preview_command_prints_a_caption_without_the_pipeline() -> None:
    arguments = ["captions", "preview", "--scheme", "v6", "--percentile", "0.95", "--site", "derpibooru",
                 "--tags", "twilight_sparkle smile", "--samples", "2"]  # fmt: skip
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 0, result.output
    assert "stored:   score_9, score_8_up, score_7_up, score_6_up, score_5_up, score_4_up, source_pony" in result.output
    assert result.output.count("sample ") == 2
