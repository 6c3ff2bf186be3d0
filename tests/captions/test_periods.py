"""Year and period tags (issue 16): from the upload year of the work's earliest live post, ranges configurable."""

from __future__ import annotations

import pytest

from pony_tasks.captions.periods import DEFAULT_PERIODS, date_tags, parse_periods
from pony_tasks.captions.sets import regenerate
from pony_tasks.db import connect


def test_years_fall_into_the_configured_periods() -> None:
    assert [date_tags(y)[1] for y in (2026, 2022, 2021, 2015, 2014, 2011, 2010, 1999)] == [
        "newest", "newest", "recent", "mid", "early", "early", "oldest", "oldest"]  # fmt: skip
    assert date_tags(2023) == ("year 2023", "newest") and date_tags(None) == ()
    custom = parse_periods("new=2020,old")
    assert date_tags(2021, custom) == ("year 2021", "new") and date_tags(2019, custom)[1] == "old"
    assert parse_periods("none") == () and date_tags(2021, ()) == ()
    assert parse_periods("newest=2022,recent=2019,mid=2015,early=2011,oldest") == DEFAULT_PERIODS
    for bad in ("old=2010,new=2020", "a b=2020", "new=twenty", "new,old=2000"):
        with pytest.raises(ValueError, match="period"):
            parse_periods(bad)


def test_a_work_is_dated_by_its_earliest_post(scored) -> None:
    with connect(scored) as conn:
        with conn.cursor() as cur:
            cur.execute("UPDATE booru_post SET created_at = '2016-03-01T23:30:00-05:00' WHERE post_id = 2")  # 04:30 UTC
            cur.execute("""SELECT i.sha256 FROM booru_post_image i WHERE i.post_id IN (1, 2) ORDER BY i.post_id""")
            first, second = (row[0] for row in cur.fetchall())
            cur.execute("INSERT INTO work (canonical_sha256) VALUES (%s) RETURNING work_id", (first,))
            work = cur.fetchone()[0]
            cur.execute("INSERT INTO work_image (sha256, work_id) VALUES (%s, %s), (%s, %s)",
                        (first, work, second, work))  # fmt: skip
        set_id = regenerate(conn, scheme="v6").set_id
        with conn.cursor() as cur:
            cur.execute("SELECT sha256, text, date_tags FROM caption WHERE set_id = %s AND sha256 IN (%s, %s)",
                        (set_id, first, second))  # fmt: skip
            rows = cur.fetchall()
            cur.execute("SELECT count(*) FROM caption WHERE set_id = %s AND 'year 2024' = ANY(date_tags)", (set_id,))
            others = cur.fetchone()[0]
    assert [(sha, tags) for sha, _, tags in rows] == [(first, ["year 2016", "mid"])], "one caption for the work"
    assert ", rating_safe, year 2016, mid |||" in rows[0][1] or ", rating_explicit, year 2016, mid |||" in rows[0][1]
    assert others == 300 - 2


@pytest.mark.parametrize("encoder", ["columnar", "rows"])
def test_configured_periods_reach_the_stored_captions(scored, encoder) -> None:
    custom = parse_periods("fresh=2020,old")
    with connect(scored) as conn:
        set_id = regenerate(conn, scheme="v7", periods=custom, encoder=encoder).set_id
        with conn.cursor() as cur:
            cur.execute("SELECT DISTINCT date_tags, text LIKE '%%, year 2024, fresh |||%%' FROM caption "
                        "WHERE set_id = %s", (set_id,))  # fmt: skip
            rows = cur.fetchall()
    assert rows == [(["year 2024", "fresh"], True)]  # every post was uploaded in 2024
