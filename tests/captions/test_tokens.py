"""The token budget (issue 16): every stored caption and every training sample within CLIP's limit, counted with
open_clip's own tokenizer; quality and special tags never dropped; content dropped by the stated priority."""

from __future__ import annotations

import random

import psycopg2.extras
import pytest

from pony_tasks.captions.lines import Line, draw_lines, split_text
from pony_tasks.captions.quality import band_for, quality_tags
from pony_tasks.captions.render import build_caption
from pony_tasks.captions.sets import regenerate, tag_frequencies
from pony_tasks.captions.tokens import BudgetTooSmall, count_tokens, prioritised
from pony_tasks.db import connect
from pony_tasks.quality.checks import run_check

LONG_POSTS = 20  # post ids 1..20 get 300 tags each


def _long_tags(post_id: int) -> tuple[list[str], dict[str, list[str]]]:
    """300 tags: two characters, a copyright, an artist, 96 tags every long post carries (common) and 200 of this
    post's own (rare), with parentheses and long words to make the token count uneven."""
    characters = [f"hero_{post_id}_(series)", f"sidekick_{post_id}"]
    common = [f"common_tag_{k}" for k in range(96)]
    rare = [f"rare_{post_id}_detail_number_{k}" for k in range(200)]
    groups = {"character": characters, "copyright": ["big_franchise"], "artist": [f"painter_{post_id}"],
              "general": common + rare}  # fmt: skip
    return [*characters, "big_franchise", f"painter_{post_id}", *common, *rare], groups


@pytest.fixture
def long_posts(scored):
    with connect(scored) as conn, conn.cursor() as cur:
        for post_id in range(1, LONG_POSTS + 1):
            tags, groups = _long_tags(post_id)
            cur.execute("UPDATE booru_post SET tags = %s, tag_groups = %s WHERE post_id = %s",
                        (tags, psycopg2.extras.Json(groups), post_id))  # fmt: skip
    return scored


def _lines(text: str, ups: list[str], content: list[str], up_room: int | None, seed: str) -> list[Line]:
    """The training lines an export writes for a stored caption (export.selection.ExportSample.lines)."""
    return draw_lines(split_text(text)[0], ups, content, 16, seed, limit=75, room=up_room)


@pytest.mark.parametrize("scheme", ["v6", "v7"])
def test_300_tag_posts_fit_and_keep_quality_special_and_named_tags(long_posts, scheme) -> None:
    with connect(long_posts) as conn:
        result = regenerate(conn, scheme=scheme)
        with conn.cursor() as cur:
            cur.execute("""SELECT c.text, c.tokens, c.tags_dropped, c.band, c.up_tags, p.post_id, c.content, c.up_room,
                                  c.sha256
                           FROM caption c JOIN booru_post_image i USING (sha256)
                           JOIN booru_post p USING (site, post_id) WHERE c.set_id = %s""", (result.set_id,))
            rows = cur.fetchall()
            cur.execute("SELECT token_limit, captions_trimmed, tags_dropped FROM caption_set WHERE set_id = %s",
                        (result.set_id,))  # fmt: skip
            limit, trimmed, dropped = cur.fetchone()
    assert limit == 75 and len(rows) == 300
    rng = random.Random(1)
    for text, tokens, tags_dropped, band, ups, post_id, content, up_room, sha in rows:
        assert tokens <= 75
        lines = _lines(text, ups if scheme == "v7" else [], content, up_room, sha)
        for line in lines:  # every line, shuffled any way, within the limit as CLIP counts it
            assert count_tokens(line.plain(rng)) <= 75, line
            tags = {*line.fixed, *line.flexible}
            assert f"score_{band}" in tags and {"rating_safe", "rating_explicit"} & tags
            assert any(t.startswith("source_") for t in tags)
            if scheme == "v6":
                assert set(ups) <= tags, "v6: the chain is fixed"
            if post_id <= LONG_POSTS:
                assert f"hero {post_id} \\(series\\)" in tags and f"painter {post_id}" in tags, "named tags kept"
                common_kept = {t for t in tags if t.startswith("common tag")}
                rare_kept = {t for t in tags if t.startswith("rare")}
                assert not common_kept or len(rare_kept) == 200, "the most common tags go first"
            else:  # three content tags, the artist protected: in every line; all three beside up to 4 score_K_up
                assert any(t.startswith("artist ") for t in tags)
                assert len(set(content) & tags) == 3 or len(set(ups) & tags) > 4
        if post_id <= LONG_POSTS:
            assert tags_dropped > 200
        else:
            assert tags_dropped == 0
        if scheme == "v7" and band >= 3:  # the lines draw the score_K_up tags independently
            assert len({tuple(t for t in line.flexible if t in ups) for line in lines}) > 1
    assert trimmed == sum(r[2] > 0 for r in rows) >= LONG_POSTS and dropped == sum(r[2] for r in rows)


def test_stored_cut_equals_the_reference_caption(long_posts) -> None:
    """The set-based cut (width_bucket over cached running costs) keeps exactly what build_caption keeps."""
    with connect(long_posts) as conn:
        result = regenerate(conn, scheme="v7", chunk_rows=7)
        frequencies = tag_frequencies(conn)[1]
        with conn.cursor() as cur:
            cur.execute("""SELECT c.content, c.text, c.tokens, c.tags_dropped, s.percentile, p.site, p.rating, p.tags,
                                  p.tag_groups
                           FROM caption c JOIN aesthetic_score s USING (sha256)
                           JOIN booru_post_image i USING (sha256) JOIN booru_post p USING (site, post_id)
                           WHERE c.set_id = %s AND p.post_id <= %s""", (result.set_id, LONG_POSTS))  # fmt: skip
            rows = cur.fetchall()
    assert len(rows) == LONG_POSTS
    for content, text, tokens, dropped, pct, site, rating, tags, groups in rows:
        expected = build_caption(quality_tags("v7", band_for(pct)), site, rating, groups, tags,
                                 frequencies=frequencies, year=2024)  # fmt: skip
        assert (tuple(content), text, tokens, dropped) == (expected.content, expected.render(), expected.tokens,
                                                           expected.dropped)  # fmt: skip


def test_a_longer_limit_keeps_more_and_a_too_short_one_is_refused(long_posts) -> None:
    with connect(long_posts) as conn:
        short = regenerate(conn, scheme="v7", activate=False)
        long = regenerate(conn, scheme="v7", token_limit=225, activate=False)
        with conn.cursor() as cur:
            cur.execute("SELECT set_id, tags_dropped, (SELECT max(tokens) FROM caption c WHERE c.set_id = s.set_id) "
                        "FROM caption_set s WHERE set_id IN (%s, %s) ORDER BY set_id", (short.set_id, long.set_id))
            (_, dropped_75, max_75), (_, dropped_225, max_225) = cur.fetchall()
        assert dropped_225 < dropped_75 and max_75 <= 75 < max_225 <= 225
        with pytest.raises(BudgetTooSmall, match="band 9's quality tags"):
            regenerate(conn, scheme="v6", token_limit=30)  # V6's chain is fixed: 6 tags of ~6 tokens
        with pytest.raises(BudgetTooSmall, match="band 9's quality tags"):
            regenerate(conn, scheme="v7", token_limit=10)  # V7 fixes the band tag only


def test_the_drop_order_is_protected_first_then_rarest_first() -> None:
    content = ["hero", "franchise", "solo", "rare_thing", "smile", "unseen"]
    frequencies = {"solo": 900, "smile": 500, "rare_thing": 3, "hero": 10_000}
    assert prioritised(content, 2, frequencies) == ["hero", "franchise", "unseen", "rare_thing", "smile", "solo"]


def test_the_captions_suite_fails_a_set_with_a_caption_over_the_limit(long_posts) -> None:
    with connect(long_posts) as conn:
        set_id = regenerate(conn, scheme="v7").set_id
    assert not run_check("captions", settings=long_posts, set_id=set_id).blocking
    with connect(long_posts) as conn, conn.cursor() as cur:
        cur.execute("UPDATE caption SET tokens = 76 WHERE set_id = %s AND sha256 = "
                    "(SELECT min(sha256) FROM caption WHERE set_id = %s)", (set_id, set_id))  # fmt: skip
    report = run_check("captions", settings=long_posts, set_id=set_id)
    assert [(f.column, f.severity) for f in report.blocking] == [("tokens", "critical")]


def test_content_encoded_column_wise_equals_the_row_encoder(long_posts) -> None:
    with connect(long_posts) as conn:
        columnar = regenerate(conn, scheme="v7", chunk_rows=23)
        with conn.cursor() as cur:
            cur.execute("SELECT sha256, text, tokens, up_room FROM caption WHERE set_id = %s", (columnar.set_id,))
            by_columns = set(cur.fetchall())
            cur.execute("DELETE FROM caption_content")
        conn.commit()
        rows = regenerate(conn, scheme="v7", encoder="rows", force=True)
        with conn.cursor() as cur:
            cur.execute("SELECT sha256, text, tokens, up_room FROM caption WHERE set_id = %s", (rows.set_id,))
            by_rows = set(cur.fetchall())
    assert columnar.contents_computed == rows.contents_computed > LONG_POSTS and by_columns == by_rows


def test_the_active_caption_view_shows_the_token_columns(long_posts) -> None:
    with connect(long_posts) as conn:
        regenerate(conn, scheme="v7")
        with conn.cursor() as cur:
            cur.execute("SELECT max(tokens), sum(tags_dropped), count(*) FILTER (WHERE date_tags <> '{}') "
                        "FROM active_caption")  # fmt: skip
            tokens, dropped, dated = cur.fetchone()
    assert tokens <= 75 and dropped > 200 * LONG_POSTS and dated == 300
