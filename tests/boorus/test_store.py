from datetime import UTC, datetime

from pony_tasks.boorus.records import UnifiedPost
from pony_tasks.boorus.store import POST_COLUMNS, post_row, upsert_posts
from pony_tasks.db import connect
from pony_tasks.db.bulk import copy_rows


def _post(post_id: int, **changes) -> UnifiedPost:
    fields = dict(
        site="derpibooru", post_id=post_id, created_at=datetime(2021, 5, 6, 7, 8, 9, 123000, tzinfo=UTC),
        rating="sensitive", site_rating="safe,suggestive", tags=["artist:o'neil", 'say "hi"', "back\\slash", "a,b",
        "{brace}", "\\N", "NULL", "new\nline", "ünï ✓"], score=-3, up_votes=2, down_votes=5, favorites=None,
        file_url='https://x/"q".png', md5=None, sha512="ab" * 64, width=None, height=10, file_ext="png",
        sources=["https://a", ""], deleted=True, tag_groups={"artist": ["artist:o'neil"], "x": ['"']},
    )  # fmt: skip
    fields.update(changes)
    return UnifiedPost(**fields)


def test_hand_written_post_encoder_matches_the_generic_one(migrated) -> None:
    posts = [_post(1), _post(2, rating=None, site_rating=None, tags=[], sources=[], tag_groups={}, created_at=None,
                            up_votes=None, down_votes=None, file_url=None)]  # fmt: skip
    with connect(migrated) as conn:
        upsert_posts(conn, posts)
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE generic (LIKE booru_post)")
            copy_rows(cur, "generic", POST_COLUMNS, [post_row(p) for p in posts])
            columns = ", ".join(POST_COLUMNS)
            cur.execute(f"SELECT {columns} FROM booru_post ORDER BY post_id")
            fast = cur.fetchall()
            cur.execute(f"SELECT {columns} FROM generic ORDER BY post_id")
            generic = cur.fetchall()
    assert fast == generic
    assert fast[0][POST_COLUMNS.index("tags")] == sorted(posts[0].tags)
    assert fast[1][POST_COLUMNS.index("rating")] is None


def test_hand_written_encoder_keeps_a_literal_backslash_n_as_text(migrated) -> None:
    """The generic encoder refuses a bare '\\N' text value; the post encoder quotes all text, so it survives."""
    with connect(migrated) as conn:
        upsert_posts(conn, [_post(3, file_url="\\N", md5=None)])
        with conn.cursor() as cur:
            cur.execute("SELECT file_url, md5 FROM booru_post WHERE post_id = 3")
            assert cur.fetchone() == ("\\N", None)


def test_upsert_posts_detects_changes_by_digest(migrated) -> None:
    with connect(migrated) as conn:
        first = upsert_posts(conn, [_post(i) for i in range(1, 11)])
        again = upsert_posts(conn, [_post(i) for i in range(1, 11)])
        changed = upsert_posts(conn, [_post(i, score=99) if i < 4 else _post(i) for i in range(1, 12)])
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM booru_post WHERE score = 99")
            assert cur.fetchone()[0] == 3
    assert (first.inserted, again.unchanged, changed.updated, changed.inserted, changed.unchanged) == (10, 10, 3, 1, 7)
