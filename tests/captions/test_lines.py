"""Training lines (issue 26): each line fits the limit with its own draw of score_K_up tags, the rest of it goes to
content in keep order, protected tags are never given up for an optional quality tag."""

from __future__ import annotations

import random

import pytest

from pony_tasks.captions.lines import LineStats, draw_line, draw_lines, reserved_count, up_room
from pony_tasks.captions.quality import quality_tags
from pony_tasks.captions.render import build_caption, pre_sampled_lines, sample_caption
from pony_tasks.captions.tokens import count_tokens, cumulative_costs, tags_cost

GROUPS = {"character": ["twilight_sparkle", "rainbow_dash"], "copyright": ["my_little_pony"],
          "artist": ["some_painter"], "general": [f"detail_{k}" for k in range(40)]}  # fmt: skip
TAGS = [t for group in GROUPS.values() for t in group]


def _caption(band: int, limit: int = 75, style: str | None = "style_cluster_16", groups: dict | None = None):
    groups = GROUPS if groups is None else groups
    tags = [t for group in groups.values() for t in group]
    return build_caption(quality_tags("v7", band), "derpibooru", "general", groups, tags, token_limit=limit,
                         year=2026, style=style)  # fmt: skip


@pytest.mark.parametrize("limit", [75, 150])
def test_every_line_of_every_band_fits_and_holds_its_protected_tags(limit) -> None:
    rng = random.Random(3)
    for band in range(1, 10):
        caption = _caption(band, limit)
        protected = {"style_cluster_16", "twilight sparkle", "rainbow dash", "my little pony", "some painter"}
        assert protected <= set(caption.content)
        for line in pre_sampled_lines(caption, 32, f"sha{band}"):
            text = line.plain(rng)
            assert count_tokens(text) <= tags_cost([*line.fixed, *line.flexible]) == line.tokens <= limit, text
            assert protected <= set(line.flexible), "protected tags are never dropped for score_K_up tags"
            assert line.fixed[0] == f"score_{band}"
            assert line.content_tags() >= len(protected) - 1, "the style tag is not content"


def test_a_line_that_draws_fewer_up_tags_holds_more_content() -> None:
    caption = _caption(9)
    lines = pre_sampled_lines(caption, 200, "seed")
    by_ups: dict[int, set[int]] = {}
    for line in lines:
        by_ups.setdefault(line.ups, set()).add(line.content_tags())
    counts = sorted(by_ups)
    assert len(counts) >= 5
    assert all(max(by_ups[b]) <= min(by_ups[a]) for a, b in zip(counts, counts[1:], strict=False))
    assert max(by_ups[counts[0]]) > min(by_ups[counts[-1]]) + 4, "the budget follows the draw"
    # and the stored content is what the line with no score_K_up tag holds
    assert len(caption.content) - 1 == max(by_ups.get(0, {len(caption.content) - 1})), "content beside the style tag"


def test_when_a_draw_leaves_no_room_for_the_protected_tags_it_is_thinned() -> None:
    many = {"character": [f"character_number_{k}" for k in range(7)], "artist": ["a_painter"],
            "general": ["smile"]}  # fmt: skip
    caption = _caption(9, groups=many)
    assert caption.up_room is not None and caption.up_room < len(caption.quality.up_tags)
    rng = random.Random(0)
    lines = [caption.line(rng, keep_probability=1.0) for _ in range(20)]  # every score_K_up drawn
    protected = {f"character number {k}" for k in range(7)} | {"a painter", "style_cluster_16"}
    for line in lines:
        ups = [t for t in line.flexible if t.endswith("_up")]
        assert line.thinned and len(ups) == caption.up_room and protected <= set(line.flexible)
        assert tags_cost([*line.fixed, *line.flexible]) <= 75
    assert len({tuple(t for t in line.flexible if t.endswith("_up")) for line in lines}) > 1, "removed at random"
    stats = LineStats()
    stats.add(9, lines, True)
    assert stats.thinned == 20 and stats.without_content == 0


def test_reserved_content_and_up_room() -> None:
    assert reserved_count(["style_cluster_3", "smile", "solo"], 1) == 2, "a style alone is not content"
    assert reserved_count(["style_cluster_3", "hero", "smile"], 2) == 2
    assert reserved_count(["hero", "villain", "smile"], 2) == 2 and reserved_count(["smile"], 0) == 1
    assert reserved_count([], 0) == 0
    ups = [f"score_{k}_up" for k in range(8, 0, -1)]  # 6 tokens each
    assert up_room(75, 20, ups, cumulative_costs(["hero", "smile"]), 1) == (75 - 20 - 2) // 6
    assert up_room(75, 20, ups, [], 0) == 8 and up_room(75, 20, [], [], 0) is None


def test_v6_and_band_1_are_one_line_and_lines_are_seeded() -> None:
    v6 = build_caption(quality_tags("v6", 9), "danbooru", "general", GROUPS, TAGS, token_limit=75)
    assert len(pre_sampled_lines(v6, 8, "x")) == 1 and pre_sampled_lines(v6, 8, "x")[0].kohya() == v6.render()
    assert len(pre_sampled_lines(_caption(1), 8, "x")) == 1
    nine = _caption(9)
    assert pre_sampled_lines(nine, 8, "x") == pre_sampled_lines(nine, 8, "x") != pre_sampled_lines(nine, 8, "y")
    assert sample_caption(nine, random.Random(4)) == sample_caption(nine, random.Random(4))


def test_without_a_limit_a_line_keeps_all_its_content() -> None:
    line = draw_line(["score_9", "source_pony"], ["score_8_up"], ["a", "b"], random.Random(0), limit=None, room=None,
                     keep_probability=1.0)  # fmt: skip
    assert line.flexible == ("score_8_up", "a", "b") and line.kohya() == "score_9, source_pony ||| score_8_up, a, b"
    assert draw_lines(["x"], [], [], 8, "s", limit=75, room=None)[0].kohya() == "x |||"


def test_line_stats_median() -> None:
    stats = LineStats()
    lines = draw_lines(["score_1"], [], ["a", "b", "c"], 1, "s", limit=75, room=None)
    stats.add(1, lines, True)
    stats.add(1, draw_lines(["score_1"], [], ["a"], 1, "s", limit=75, room=None), True)
    stats.add(2, draw_lines(["score_2"], [], [], 1, "s", limit=75, room=None), False)
    assert stats.median([1]) == 2 and stats.median([2]) == 0 and stats.median([3]) is None
    assert stats.median([1, 2]) == 1 and stats.without_content == 0 and stats.lines == 3


def test_a_lone_style_tag_keeps_a_content_tag_beside_it_in_every_line() -> None:
    general = {"general": [f"a_rather_long_general_tag_{k}" for k in range(30)]}
    caption = _caption(9, groups=general)
    rng = random.Random(2)
    for line in (caption.line(rng, keep_probability=1.0) for _ in range(50)):
        assert "style_cluster_16" in line.flexible and line.content_tags() >= 1


def test_pony_captions_lines_reports_every_band_from_a_streamed_set(scored, monkeypatch) -> None:
    from click.testing import CliRunner

    from pony_tasks.captions.sets import regenerate
    from pony_tasks.cli import cli
    from pony_tasks.config import get_settings
    from pony_tasks.db import connect

    with connect(scored) as conn:
        regenerate(conn, scheme="v7")
    monkeypatch.setenv("PONY_HOME", str(scored.resolved_home))
    monkeypatch.setenv("PONY_DATABASE_URL", scored.database_url.get_secret_value())
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["captions", "lines", "--variants", "4", "--exact"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "300 captions" in result.output and "lines without content (their caption has some): 0" in result.output
    bands = [line.split()[0] for line in result.output.splitlines() if line[:4].strip().isdigit()]
    assert bands == [str(b) for b in range(9, 0, -1)], result.output
