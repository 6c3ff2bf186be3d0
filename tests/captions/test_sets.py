"""Caption sets in PostgreSQL: regeneration, the atomic switch under a concurrent reader, rollback."""

from __future__ import annotations

import threading

import psycopg2
import pytest

from pony_tasks.captions.sets import active_set, regenerate, rollback, switch_to
from pony_tasks.db import connect
from tests.captions.conftest import COUNT


def test_regeneration_writes_structured_and_rendered_captions(scored) -> None:
    with connect(scored) as conn:
        v6 = regenerate(conn, scheme="v6")
        assert v6.captions == COUNT and active_set(conn) == v6.set_id
        with conn.cursor() as cur:
            cur.execute("SELECT band, text FROM active_caption WHERE sha256 = %s", (f"{COUNT - 1:064x}",))
            band, text = cur.fetchone()
            cur.execute("SELECT band, count(*) FROM caption WHERE set_id = %s GROUP BY 1 ORDER BY 1", (v6.set_id,))
            bands = dict(cur.fetchall())
    assert band == 9
    assert text.startswith("score_9, score_8_up, score_7_up, score_6_up, score_5_up, score_4_up, source_")
    assert "|||" in text and "looking at viewer" in text
    assert bands[9] == COUNT // 10 and sum(bands.values()) == COUNT


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
