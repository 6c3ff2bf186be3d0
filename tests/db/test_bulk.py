from datetime import UTC, datetime

import pytest

from pony_tasks.db.bulk import NULL_MARKER, copy_field, copy_rows, foreign_keys_checked_once, upsert_rows

TRICKY = [
    (1, "tab\there", ["a", 'quote"d', "back\\slash", "comma,brace{}", "new\nline"], {"k": "v\t\n"}, True, None),
    (2, "", [], {}, False, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    (3, "ünïcødé ✓ \\N literal", [None, "x", "\\N", 'q"uote'], {"nested": [1, 2]}, None, None),
    (4, '"', ["\x1f", "a\x1fb"], {"s": "\\N"}, True, None),
]


@pytest.fixture
def table(db):
    with db.cursor() as cur:
        cur.execute(
            """CREATE TABLE items (id int PRIMARY KEY, label text, tags text[], extra jsonb,
                                   flag boolean, seen timestamptz)"""
        )
    db.commit()
    return "items"


def test_copy_round_trips_awkward_values(db, table) -> None:
    with db.cursor() as cur:
        assert copy_rows(cur, table, ["id", "label", "tags", "extra", "flag", "seen"], TRICKY) == len(TRICKY)
        cur.execute("SELECT id, label, tags, extra, flag, seen FROM items ORDER BY id")
        assert [tuple(row) for row in cur.fetchall()] == [tuple(row) for row in TRICKY]


def test_copy_refuses_nul_and_the_null_marker_with_a_clear_error(db, table) -> None:
    with db.cursor() as cur, pytest.raises(ValueError, match="NUL"):
        copy_rows(cur, table, ["id", "label"], [(1, "a\x00b")])
    db.rollback()
    with pytest.raises(ValueError, match="reads back as NULL"):
        copy_field(NULL_MARKER)


def test_copy_refuses_rows_of_the_wrong_width(db, table) -> None:
    with db.cursor() as cur, pytest.raises(ValueError, match="row 0 has 2 values"):
        copy_rows(cur, table, ["id", "label", "flag"], [(1, "x")])


def _xmins(db) -> dict[int, str]:
    with db.cursor() as cur:
        cur.execute("SELECT id, xmin::text FROM items")
        return dict(cur.fetchall())


def test_upsert_inserts_updates_and_leaves_unchanged_rows_unwritten(db, table) -> None:
    columns = ["id", "label", "tags", "flag"]
    rows = [(i, f"label {i}", [f"t{i}"], i % 2 == 0) for i in range(100)]
    first = upsert_rows(db, table, columns, rows, ["id"])
    db.commit()
    assert (first.inserted, first.updated, first.unchanged) == (100, 0, 0)
    before = _xmins(db)

    again = upsert_rows(db, table, columns, rows, ["id"])
    db.commit()
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 100)
    assert _xmins(db) == before, "unchanged rows were rewritten"

    changed = rows[:90] + [(i, f"new {i}", [f"t{i}"], i % 2 == 0) for i in range(90, 100)] + [(100, "x", [], True)]
    third = upsert_rows(db, table, columns, changed, ["id"])
    db.commit()
    assert (third.inserted, third.updated, third.unchanged) == (1, 10, 90)
    after = _xmins(db)
    assert all(after[i] == before[i] for i in range(90))
    assert all(after[i] != before[i] for i in range(90, 100))


def test_upsert_with_duplicate_keys_in_one_batch_keeps_the_last(db, table) -> None:
    result = upsert_rows(db, table, ["id", "label"], [(1, "first"), (2, "b"), (1, "last")], ["id"])
    db.commit()
    assert (result.inserted, result.total) == (2, 2)
    with db.cursor() as cur:
        cur.execute("SELECT label FROM items WHERE id = 1")
        assert cur.fetchone()[0] == "last"


def test_upsert_can_run_twice_in_one_transaction(db, table) -> None:
    upsert_rows(db, table, ["id", "label"], [(1, "a")], ["id"])
    result = upsert_rows(db, table, ["id", "label"], [(1, "b")], ["id"])
    db.commit()
    assert result.updated == 1


def test_upsert_key_must_be_among_columns(db, table) -> None:
    with pytest.raises(ValueError, match="key columns"):
        upsert_rows(db, table, ["label"], [("x",)], ["id"])


def test_digest_upsert_sends_only_new_and_changed_rows(db) -> None:
    with db.cursor() as cur:
        cur.execute(
            "CREATE TABLE posts (site text, id int, label text, tags text[], digest text, PRIMARY KEY (site, id))"
        )
    db.commit()
    columns = ["site", "id", "label", "tags"]
    rows = [("a", i, f"label {i}", ["x", f"t{i}"]) for i in range(50)]
    first = upsert_rows(db, "posts", columns, rows, ["site", "id"], digest_column="digest")
    db.commit()
    assert (first.inserted, first.updated, first.unchanged) == (50, 0, 0)
    with db.cursor() as cur:
        cur.execute("SELECT id, xmin::text, digest FROM posts")
        before = {row[0]: row[1:] for row in cur.fetchall()}
    assert all(len(digest) == 32 for _, digest in before.values())
    changed = rows[:45] + [("a", i, "edited", ["x"]) for i in range(45, 50)] + [("b", 1, None, [])]
    second = upsert_rows(db, "posts", columns, changed, ["site", "id"], digest_column="digest")
    db.commit()
    assert (second.inserted, second.updated, second.unchanged) == (1, 5, 45)
    with db.cursor() as cur:
        cur.execute("SELECT id, xmin::text, digest, label FROM posts WHERE site = 'a'")
        after = {row[0]: row[1:] for row in cur.fetchall()}
    assert all(after[i][:2] == before[i] for i in range(45)), "unchanged rows are not rewritten"
    assert all(after[i][2] == "edited" and after[i][1] != before[i][1] for i in range(45, 50))


def _foreign_keys(db, table: str) -> list[tuple]:
    with db.cursor() as cur:
        cur.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conrelid = %s::regclass AND contype = 'f' ORDER BY conname", (table,))  # fmt: skip
        return cur.fetchall()


def test_foreign_keys_are_dropped_inside_and_come_back_checked(db) -> None:
    import psycopg2.errors

    with db.cursor() as cur:
        cur.execute("""CREATE TABLE parents (id int PRIMARY KEY);
                       CREATE TABLE children (id int PRIMARY KEY, parent int NOT NULL REFERENCES parents ON DELETE
                           CASCADE, other int CONSTRAINT named_other REFERENCES parents (id));
                       INSERT INTO parents VALUES (1), (2)""")  # fmt: skip
    db.commit()
    before = _foreign_keys(db, "children")
    assert len(before) == 2
    with db.cursor() as cur:
        with foreign_keys_checked_once(cur, "children"):
            assert _foreign_keys(db, "children") == []
            cur.execute("INSERT INTO children SELECT g, 1 + g % 2, NULL FROM generate_series(1, 1000) g")
    db.commit()
    assert _foreign_keys(db, "children") == before  # the same names and definitions (ON DELETE CASCADE kept)
    with db.cursor() as cur:
        cur.execute("DELETE FROM parents WHERE id = 2")
        cur.execute("SELECT count(*) FROM children")
        assert cur.fetchone()[0] == 500
    db.commit()

    with db.cursor() as cur, pytest.raises(psycopg2.errors.ForeignKeyViolation):
        with foreign_keys_checked_once(cur, "children"):
            cur.execute("INSERT INTO children VALUES (5000, 3, NULL)")  # no parent 3: refused when the key returns
    db.rollback()
    assert _foreign_keys(db, "children") == before
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM children WHERE id = 5000")
        assert cur.fetchone()[0] == 0
