"""Stage planning without Airflow: caption target from collapsed asset events, embed batches as sha256 ranges."""

from __future__ import annotations

from pony_tasks.db import connect
from pony_tasks.orchestration.stages import (
    caption_target,
    embed_task_size,
    plan_embed_ranges,
    scrape_refresh,
    train_aesthetic,
)


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
    # Airflow's max_map_length caps the tasks: the same images in at most two ranges, every image in one
    capped = plan_embed_ranges(settings=settings, max_tasks=2)
    assert len(capped) == 2 and capped[0][0] == ranges[0][0] and capped[-1][1] == ranges[-1][1]
    assert capped[0][1] < capped[1][0]


def test_embed_plan_of_the_real_size_fits_airflows_mapping_limit() -> None:
    # 28M pending images (the four sites) at 10,000 a task would be 2,800 mapped tasks: over the 1,024 Airflow allows
    for pending in (28_000_000, 30_000_000, 1_024 * 10_000 + 1):
        size = embed_task_size(pending, 10_000, 1_024)
        assert -(-pending // size) <= 1_024 and size < pending
    assert embed_task_size(25_000, 10_000, 1_024) == 10_000  # small runs keep the configured size
    assert embed_task_size(30_000_000, 10_000, 1_024) == 29_297


def test_templated_arguments_stay_single_arguments() -> None:
    template = "{{ data_interval_end | ts }}"
    assert scrape_refresh("e621", template).argv[-2:] == ("--due-as-of", template)
    assert train_aesthetic().argv == ("aesthetic", "train", "--params-json", "{{ params | tojson }}")
