"""Stage planning without Airflow: caption target from collapsed asset events, embed batches as sha256 ranges."""

from __future__ import annotations

from pony_tasks.db import connect
from pony_tasks.orchestration.stages import caption_target, plan_embed_ranges, scrape_refresh, train_aesthetic


def test_caption_target_takes_every_collapsed_event_into_account() -> None:
    assert caption_target([], 3) == (None, [])
    assert caption_target([4], 4) == (4, [])
    # two promotions before the run: the active one wins, the other is reported superseded
    assert caption_target([4, 5, 5], 5) == (5, [4])
    # the newest named was rolled back meanwhile: caption the active one among the events
    assert caption_target([4, 5], 4) == (4, [5])
    # none of them is active any more: the newest named
    assert caption_target([4, 5], 2) == (5, [4])
    # a new style clustering alone: the active version's captions again; with a promotion too, the usual rule
    assert caption_target([], 3, restyled=True) == (3, [])
    assert caption_target([], None, restyled=True) == (None, [])
    assert caption_target([4, 5], 4, restyled=True) == (4, [5])


def test_embed_plan_is_non_overlapping_ranges_of_at_least_the_task_size(migrated) -> None:
    settings = migrated.replace(embed_task_images=10_000, embed_model="m")
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO image (sha256, storage_key, byte_size, width, height, format)
                       SELECT encode(sha256(i::text::bytea), 'hex'), 'k', 1, 1, 1, 'PNG'
                       FROM generate_series(1, 25000) i""")  # fmt: skip
    ranges = plan_embed_ranges(settings=settings)
    assert len(ranges) == 3
    assert all(first <= last for first, last in ranges)
    assert all(ranges[i][1] < ranges[i + 1][0] for i in range(len(ranges) - 1))
    with connect(settings) as conn, conn.cursor() as cur:
        counts = []
        for first, last in ranges:
            cur.execute("SELECT count(*) FROM image WHERE sha256 BETWEEN %s AND %s", (first, last))
            counts.append(cur.fetchone()[0])
    assert counts == [10_000, 10_000, 5_000]


def test_templated_arguments_stay_single_arguments() -> None:
    template = "{{ data_interval_end | ts }}"
    assert scrape_refresh("e621", template).argv[-2:] == ("--due-as-of", template)
    assert train_aesthetic().argv == ("aesthetic", "train", "--params-json", "{{ params | tojson }}")
