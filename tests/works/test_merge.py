"""Merged metadata on a constructed work: on three live sites plus a deleted post, one post provisional."""

from __future__ import annotations

import math

import pytest

from pony_tasks.db import connect
from pony_tasks.works.merge import merged_works

POSTS = [  # site, post, sha, rating, tags, deleted, (normalised score, provisional, metric) or None
    ("danbooru", 1, "a", "general", ["blue_eyes", "smile"], False, (0.9, False, 100)),
    ("e621", 2, "b", "questionable", ["blue_eyes", "female"], False, (0.5, False, 10)),
    ("derpibooru", 3, "c", "explicit", ["Blue Eyes", "deleted_only_tag"], True, (0.99, False, 500)),
    ("gelbooru", 4, "d", "sensitive", ["Smile", "1girl"], False, (0.2, True, 3)),
    ("danbooru", 5, "e", "general", ["alone"], False, (0.4, True, 2)),  # a work of its own, only provisional
]


@pytest.fixture
def work_db(migrated):
    with connect(migrated) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO normalize_run (as_of, parameters, status) VALUES (now(), '{}', 'complete') "
                    "RETURNING run_id")  # fmt: skip
        run = cur.fetchone()[0]
        cur.execute(f"CREATE TABLE normalized_score_run_{run} PARTITION OF normalized_score FOR VALUES IN ({run})")
        for site, post, sha, rating, tags, deleted, score in POSTS:
            digest = sha * 64
            cur.execute("INSERT INTO booru_post (site, post_id, rating, tags, deleted, tag_groups) "
                        "VALUES (%s, %s, %s, %s, %s, %s)",
                        (site, post, rating, tags, deleted, '{"artist": ["Some Artist"]}'))  # fmt: skip
            cur.execute("INSERT INTO image (sha256, storage_key, byte_size, width, height, format) "
                        "VALUES (%s, 'k', 1, 10, 10, 'PNG')", (digest,))  # fmt: skip
            cur.execute("INSERT INTO booru_post_image (site, post_id, sha256) VALUES (%s, %s, %s)",
                        (site, post, digest))  # fmt: skip
            value, provisional, metric = score
            cur.execute("""INSERT INTO normalized_score (run_id, site, post_id, rating, cohort, metric, log_metric,
                               age_days, normalized_score, provisional)
                           VALUES (%s, %s, %s, %s, 0, %s, 0, 100, %s, %s)""",
                        (run, site, post, rating, metric, value, provisional))  # fmt: skip
        cur.execute("INSERT INTO work (canonical_sha256) VALUES (%s) RETURNING work_id", ("a" * 64,))
        shared = cur.fetchone()[0]
        cur.execute("INSERT INTO work (canonical_sha256) VALUES (%s) RETURNING work_id", ("e" * 64,))
        alone = cur.fetchone()[0]
        for sha in "abcd":
            cur.execute("INSERT INTO work_image (sha256, work_id) VALUES (%s, %s)", (sha * 64, shared))
        cur.execute("INSERT INTO work_image (sha256, work_id) VALUES (%s, %s)", ("e" * 64, alone))
    return migrated, shared, alone


def test_tags_rating_and_popularity_are_merged_from_the_live_posts(work_db) -> None:
    settings, shared, alone = work_db
    with connect(settings) as conn:
        works = merged_works(conn)
    work = works[shared]
    assert work.sites == ["danbooru", "e621", "gelbooru"]  # the deleted derpibooru post contributes nothing
    assert work.tags == ["blue_eyes", "smile", "female", "1girl"]  # one spelling; female and 1girl stay apart
    assert "deleted_only_tag" not in work.tags and work.tag_groups == {"artist": ["some_artist"]}
    assert work.rating == "questionable"  # the strictest live post (the deleted one was explicit)
    weights = (1 + math.log1p(100), 1 + math.log1p(10))  # matured percentiles only; the provisional one is left out
    assert work.popularity == pytest.approx((0.9 * weights[0] + 0.5 * weights[1]) / sum(weights))
    assert work.provisional is False
    assert works[alone].popularity == pytest.approx(0.4) and works[alone].provisional is True


def _score_every_image(settings, skip: str = "") -> None:
    """An active aesthetic version scoring the images (``skip``: images, by letter, it did not score)."""
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO embedding_model (name, pretrained, dimension, image_size) "
                    "VALUES ('m', 'x', 4, 1) RETURNING model_id")  # fmt: skip
        model = cur.fetchone()[0]
        cur.execute("""INSERT INTO aesthetic_model (embedding_model_id, architecture, hyperparameters, metrics,
                           training_set_sha256, training_images, weights_key, score_cdf, status)
                       VALUES (%s, 'mlp', '{}', '{}', 'h', 0, 'k', '{0,1}', 'active') RETURNING version_id""",
                    (model,))  # fmt: skip
        version = cur.fetchone()[0]
        for index, (_, _, sha, *_rest) in enumerate(POSTS):
            if sha not in skip:
                cur.execute("INSERT INTO aesthetic_score (version_id, sha256, score, percentile) "
                            "VALUES (%s, %s, %s, %s)", (version, sha * 64, 0.9 - index / 10, 0.9 - index / 10))


def _captions(settings) -> dict[str, str]:
    from pony_tasks.captions.sets import regenerate

    with connect(settings) as conn:
        regenerate(conn)
        with conn.cursor() as cur:
            cur.execute("SELECT sha256, text FROM active_caption")
            return {sha[:1]: text for sha, text in cur.fetchall()}  # the images are named by one repeated letter


def test_a_work_gets_one_caption_from_what_all_its_live_posts_say(work_db) -> None:
    settings, _, _ = work_db
    _score_every_image(settings)
    captions = _captions(settings)
    assert sorted(captions) == ["a", "e"], "one caption per work, on its canonical image"
    shared = captions["a"]
    fixed, _, content = shared.partition(" ||| ")
    assert "rating_questionable" in fixed, "the strictest live post's rating (the explicit post was deleted)"
    tags = content.split(", ")
    for tag in ("blue eyes", "smile", "female", "1girl", "Some Artist"):
        assert tag in tags, tag  # the union of the live posts' tags
    assert "deleted only tag" not in content, "the deleted post's tags are left out"
    assert tags.count("blue eyes") == 1 and "Smile" not in tags, "one spelling per tag (underscores, case)"
    assert "rating_safe" in captions["e"].partition(" ||| ")[0] and "alone" in captions["e"]


def test_a_work_whose_canonical_image_is_not_scored_is_captioned_on_another_member(work_db) -> None:
    settings, _, _ = work_db
    _score_every_image(settings, skip="a")
    captions = _captions(settings)
    assert sorted(captions) == ["b", "e"], "the work's first scored image with a live post"
    assert "smile" in captions["b"] and "1girl" in captions["b"]


def test_true_synonyms_share_one_tag_and_look_alikes_stay_apart() -> None:
    from pony_tasks.captions.render import content_tags
    from pony_tasks.works.synonyms import common_tag, synonyms

    assert common_tag("Twilight_Sparkle_(mlp)") == "twilight_sparkle" == common_tag("twilight sparkle")
    assert common_tag("female") == "female" and common_tag("1girl") == "1girl"  # not synonyms: both kept
    assert all(tag != common for tag, common in synonyms().items())
    # in captions: the e621 and the Derpibooru post of one work name the character once
    assert content_tags({}, ["twilight_sparkle_(mlp)", "twilight sparkle", "female"]) == ["female", "twilight sparkle"]
