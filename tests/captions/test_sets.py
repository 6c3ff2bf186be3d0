"""Caption sets in PostgreSQL: regeneration, the atomic switch under a concurrent reader, rollback."""

from __future__ import annotations

import threading

import psycopg2
import psycopg2.extras
import pytest

from pony_tasks.captions.quality import band_for, quality_tags
from pony_tasks.captions.render import build_caption
from pony_tasks.captions.sets import active_set, regenerate, rollback, switch_to, tag_frequencies
from pony_tasks.db import connect
from tests.captions.conftest import COUNT, SHAS


def test_regeneration_writes_structured_and_rendered_captions(scored) -> None:
    with connect(scored) as conn:
        v6 = regenerate(conn, scheme="v6")
        assert v6.captions == COUNT and active_set(conn) == v6.set_id
        with conn.cursor() as cur:
            cur.execute("SELECT band, text FROM active_caption WHERE sha256 = %s", (SHAS[COUNT - 1],))
            band, text = cur.fetchone()
            cur.execute("SELECT band, count(*) FROM caption WHERE set_id = %s GROUP BY 1 ORDER BY 1", (v6.set_id,))
            bands = dict(cur.fetchall())
    assert band == 9
    assert text.startswith("score_9, score_8_up, score_7_up, score_6_up, score_5_up, score_4_up, source_")
    assert "|||" in text and "looking at viewer" in text
    assert bands[9] == COUNT // 10 and sum(bands.values()) == COUNT


TRICKY_TAGS = [
    ['say_"cheese"', "back\\slash", "ribbon_(object)", "caf&eacute;", "a,b", "\\N", "tagme"],  # quote, \, (), entity
    ["highres", "tagme"],  # everything blacklisted: empty content
    ["artist:someone", "oc:nova", "pony", "日本語_tag", "{braces}", "trailing_space_ "],
]


@pytest.mark.parametrize("scheme", ["v6", "v7"])
def test_stored_rows_equal_the_reference_caption_for_awkward_tags(scored, scheme) -> None:
    """The hand-written COPY encoder must store exactly what build_caption makes, escaping included."""
    with connect(scored) as conn:
        with conn.cursor() as cur:
            for post_id, tags in enumerate(TRICKY_TAGS, start=1):
                groups = {"artist": [tags[0]]} if post_id == 1 else {}
                cur.execute("UPDATE booru_post SET tags = %s, tag_groups = %s::jsonb WHERE post_id = %s",
                            (tags, psycopg2.extras.Json(groups), post_id))  # fmt: skip
        conn.commit()
        result = regenerate(conn, scheme=scheme, chunk_rows=37)  # several chunks
        frequencies = tag_frequencies(conn)[1]
        with conn.cursor() as cur:
            cur.execute(
                """SELECT c.band, c.band_tag, c.up_tags, c.independent, c.source_tag, c.rating_tag, c.content, c.text,
                          s.percentile, p.site, p.rating, p.tags, p.tag_groups, c.tokens, c.tags_dropped, c.up_room,
                          c.rating
                   FROM caption c JOIN aesthetic_score s USING (sha256)
                   JOIN booru_post_image i USING (sha256) JOIN booru_post p USING (site, post_id)
                   WHERE c.set_id = %s""",
                (result.set_id,),
            )
            rows = cur.fetchall()
    assert len(rows) == COUNT
    for (band, band_tag, ups, independent, source, rating, content, text, pct, site, post_rating, tags, groups, tokens,
         dropped, up_room, merged_rating) in rows:  # fmt: skip
        expected = build_caption(quality_tags(scheme, band_for(pct)), site, post_rating, groups, tags,
                                 frequencies=frequencies, year=2024)  # fmt: skip
        assert (tokens, dropped, up_room, merged_rating) == (expected.tokens, expected.dropped, expected.up_room,
                                                             post_rating)  # fmt: skip
        assert (band, band_tag, tuple(ups), independent) == (
            expected.quality.band,
            expected.quality.band_tag,
            expected.quality.up_tags,
            expected.quality.independent,
        )
        assert (source, rating, tuple(content), text) == (expected.source, expected.rating, expected.content,
                                                          expected.render())  # fmt: skip
    texts = {r[7] for r in rows}
    assert any('say "cheese"' in t and "back\\slash" in t and "ribbon \\(object\\)" in t for t in texts)
    assert any(t.endswith(" |||") for t in texts)  # the all-blacklisted post: nothing after the separator


def test_readers_never_see_a_mix_while_sets_switch(scored) -> None:
    with connect(scored) as conn:
        first = regenerate(conn, scheme="v6").set_id
        second = regenerate(conn, scheme="v7", activate=False).set_id
    seen: list[tuple] = []
    stop = threading.Event()

    def reader() -> None:
        conn = psycopg2.connect(scored.database_url.get_secret_value())
        conn.autocommit = True
        with conn.cursor() as cur:
            while not stop.is_set():
                cur.execute("SELECT array_agg(DISTINCT set_id), count(*) FROM active_caption")
                seen.append(cur.fetchone())
        conn.close()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        with connect(scored) as conn:
            for flip in range(30):
                switch_to(conn, second if flip % 2 == 0 else first, "test flip")
    finally:
        stop.set()
        thread.join()
    assert len(seen) > 30
    assert all(len(sets) == 1 and count == COUNT for sets, count in seen), [s for s in seen if len(s[0]) != 1][:3]
    assert {sets[0] for sets, _ in seen} == {first, second}


def test_rollback_restores_the_previous_set_and_old_sets_are_kept(scored) -> None:
    with connect(scored) as conn:
        first = regenerate(conn, scheme="v6").set_id
        second = regenerate(conn, scheme="v7").set_id
        assert active_set(conn) == second
        assert rollback(conn) == first and active_set(conn) == first
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM caption_set")
            assert cur.fetchone()[0] == 2
        with pytest.raises(LookupError, match="does not exist"):
            switch_to(conn, 999, "nope")


def test_content_is_cached_across_versions_and_recomputed_only_for_changed_posts(scored) -> None:
    with connect(scored) as conn:
        first = regenerate(conn, scheme="v6")
        second = regenerate(conn, scheme="v7")
        with conn.cursor() as cur:
            cur.execute("UPDATE booru_post SET tags = tags || '{new_tag}'::text[] WHERE post_id = 5")
        conn.commit()
        third = regenerate(conn, scheme="v7")
        with conn.cursor() as cur:
            cur.execute("SELECT text FROM caption c JOIN booru_post_image i USING (sha256) "
                        "WHERE c.set_id = %s AND i.post_id = 5", (third.set_id,))  # fmt: skip
            text = cur.fetchone()[0]
        without_artist = regenerate(conn, scheme="v7", include_artist=False)
    distinct_posts = len({(i % 2, i % 3, i % 7) for i in range(COUNT)})  # site, rating, artist: equal content shared
    assert first.contents_computed == distinct_posts == 42 and second.contents_computed == 0
    assert third.contents_computed == 1 and "new tag" in text
    assert without_artist.contents_computed == distinct_posts + 1  # another option is another cache key


def _plant_style_clustering(conn, clusters: int = 4) -> int:
    """An active style clustering of every scored image (rows as `pony styles run` writes them)."""
    with conn.cursor() as cur:
        cur.execute("""INSERT INTO style_clustering (embedding_model_id, clusters, seed, parameters, input_sha256,
                           images, centroids_key, status)
                       SELECT model_id, %s, 0, '{}', 'x', 0, 'k', 'active' FROM embedding_model
                       RETURNING version_id""", (clusters,))  # fmt: skip
        version = cur.fetchone()[0]
        cur.execute("""INSERT INTO style_cluster_member (version_id, sha256, cluster_id, similarity)
                       SELECT %s, sha256, 20 + (('x' || right(sha256, 4))::bit(16)::int %% %s), 0.5
                       FROM aesthetic_score""", (version, clusters))  # fmt: skip
    conn.commit()
    return version


@pytest.mark.parametrize("mode", ["add", "replace_artist"])
def test_style_cluster_tags_lead_the_content_and_can_replace_artists(scored, mode) -> None:
    with connect(scored) as conn:
        plain = regenerate(conn, scheme="v7")
        style_version = _plant_style_clustering(conn)
        styled = regenerate(conn, scheme="v7", style_tags=mode, token_limit=150)  # room for every tag
        off_again = regenerate(conn, scheme="v7", style_tags="off")
        frequencies = tag_frequencies(conn)[1]
        with conn.cursor() as cur:
            cur.execute("SELECT style_version, style_mode FROM caption_set WHERE set_id = %s", (styled.set_id,))
            assert cur.fetchone() == (style_version, mode)
            cur.execute(
                """SELECT c.style_cluster, m.cluster_id, c.content, c.text, s.percentile, p.site, p.rating, p.tags,
                          p.tag_groups
                   FROM caption c JOIN aesthetic_score s USING (sha256)
                   JOIN style_cluster_member m ON m.sha256 = c.sha256 AND m.version_id = %s
                   JOIN booru_post_image i ON i.sha256 = c.sha256 JOIN booru_post p USING (site, post_id)
                   WHERE c.set_id = %s""",
                (style_version, styled.set_id),
            )
            rows = cur.fetchall()
            cur.execute("SELECT count(*) FROM caption WHERE set_id = %s AND style_cluster IS NOT NULL",
                        (off_again.set_id,))  # fmt: skip
            assert cur.fetchone()[0] == 0
    assert len(rows) == COUNT
    for stored, member, content, text, pct, site, rating, tags, groups in rows:
        assert stored == member and content[0] == f"style_cluster_{member}"
        assert any(tag.startswith("artist") for tag in content) == (mode == "add")
        expected = build_caption(quality_tags("v7", band_for(pct)), site, rating, groups, tags,
                                 frequencies=frequencies, year=2024, style=f"style_cluster_{member}",
                                 include_artist=mode == "add", token_limit=150)  # fmt: skip
        assert (tuple(content), text) == (expected.content, expected.render())
    assert off_again.contents_computed == 0 and plain.contents_computed == 42  # without style: the old cache rows


def _counts(settings) -> tuple[int, int]:
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT (SELECT count(*) FROM caption_set), (SELECT count(*) FROM caption_content)")
        return cur.fetchone()


def test_a_regeneration_failing_in_the_content_fill_leaves_no_set_and_no_content(scored, monkeypatch) -> None:
    import pony_tasks.captions.sets as sets

    encode, chunks = sets._encode_chunk, []

    def crash_on_the_third_chunk(*args):  # fault injection: the encoder dies mid-fill, chunks already copied
        chunks.append(len(args[0]))
        if len(chunks) == 3:
            raise RuntimeError("encoder crashed")
        return encode(*args)

    monkeypatch.setattr(sets, "_encode_chunk", crash_on_the_third_chunk)
    with pytest.raises(RuntimeError, match="encoder crashed"), connect(scored) as conn:
        regenerate(conn, scheme="v7", chunk_rows=8)
    assert _counts(scored) == (0, 0), "the copied chunks were rolled back with the set"
    monkeypatch.undo()
    with connect(scored) as conn:
        result = regenerate(conn, scheme="v7", chunk_rows=8)
    assert result.captions == COUNT and result.contents_computed == _counts(scored)[1] > 0


def test_a_regeneration_failing_after_the_fill_leaves_no_set_and_the_content_cached(scored) -> None:
    blocker = psycopg2.connect(scored.database_url.get_secret_value())
    try:
        with blocker.cursor() as cur:  # a concurrent DDL-grade lock: the set's partition cannot be attached
            cur.execute("LOCK TABLE caption IN SHARE ROW EXCLUSIVE MODE")
        with pytest.raises(psycopg2.errors.LockNotAvailable), connect(scored) as conn:
            with conn.cursor() as cur:
                cur.execute("SET lock_timeout = '300ms'")
            conn.commit()
            regenerate(conn, scheme="v7", chunk_rows=8)
    finally:
        blocker.close()
    sets, contents = _counts(scored)
    assert sets == 0 and contents > 0, "content is a cache valid for its digest: it stays"
    with connect(scored) as conn:
        result = regenerate(conn, scheme="v7", chunk_rows=8)
    assert result.captions == COUNT and result.contents_computed == 0


def test_a_first_build_on_a_content_cache_analyzed_empty_computes_every_content_once(scored) -> None:
    # caption_content analysed while empty (after a TRUNCATE, autovacuum does that): the planner then believes it
    # stays empty. The fill must not scan it per post while it grows (no nested loop: MISSING_CONTENT_QUERY).
    with connect(scored) as conn:
        regenerate(conn, scheme="v7")
    with connect(scored, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM caption_content")
        contents = cur.fetchone()[0]
        cur.execute("TRUNCATE caption_content")
        cur.execute("ANALYZE caption_content")
    with connect(scored) as conn:
        result = regenerate(conn, scheme="v7", chunk_rows=8, force=True)
    assert result.captions == COUNT and result.contents_computed == contents == _counts(scored)[1]


def test_two_regenerations_at_once_both_finish_and_compute_each_content_once(scored) -> None:
    results, errors = [], []

    def build(scheme: str) -> None:
        try:
            with connect(scored) as conn:
                results.append(regenerate(conn, scheme=scheme, chunk_rows=8, activate=False))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=build, args=(scheme,)) for scheme in ("v6", "v7")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(r.captions for r in results) == [COUNT, COUNT]
    assert sum(r.contents_computed for r in results) == _counts(scored)[1] > 0, "the second found the first's"


def test_a_regeneration_with_unchanged_inputs_makes_no_new_set(scored) -> None:
    """Issue 27: a replayed event or a re-run builds nothing; a changed tag, score or setting builds a new set."""
    with connect(scored) as conn:
        first = regenerate(conn, scheme="v7")
        again = regenerate(conn, scheme="v7")
        assert (again.set_id, again.unchanged, again.captions) == (first.set_id, True, COUNT)
        other = regenerate(conn, scheme="v7", token_limit=150)
        assert not other.unchanged and other.set_id != first.set_id and active_set(conn) == other.set_id
        back = regenerate(conn, scheme="v7")  # the first set's inputs again: it is made active, nothing is built
        assert back.unchanged and back.set_id == first.set_id and active_set(conn) == first.set_id
        with conn.cursor() as cur:
            cur.execute("UPDATE booru_post SET tags = array_append(tags, 'new_tag') WHERE post_id = 7")
            cur.execute("SELECT count(*) FROM caption_set")
            sets = cur.fetchone()[0]
        conn.commit()
        retagged = regenerate(conn, scheme="v7")
        assert not retagged.unchanged and retagged.contents_computed == 1
        with conn.cursor() as cur:
            cur.execute("UPDATE aesthetic_score SET percentile = 1 - percentile WHERE sha256 = %s", (SHAS[0],))
        conn.commit()
        rescored = regenerate(conn, scheme="v7")
        forced = regenerate(conn, scheme="v7", force=True)
        assert not rescored.unchanged and not forced.unchanged and forced.set_id != rescored.set_id
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM caption_set")
            assert cur.fetchone()[0] == sets + 3
