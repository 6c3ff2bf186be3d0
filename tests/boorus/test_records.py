from datetime import UTC, datetime, timedelta, timezone

import pytest

from pony_tasks.boorus.records import RecordError, UnifiedPost, iso_z, parse_iso, wilson_lower_bound


def test_wilson_lower_bound_matches_the_closed_form() -> None:
    assert wilson_lower_bound(None, 3) is None
    assert wilson_lower_bound(0, 0) == 0.0
    # 90 up / 10 down, z = 2.57583, by hand: (0.9 + z²/200 - z·sqrt((0.09 + z²/400)/100)) / (1 + z²/100) = 0.79625
    assert wilson_lower_bound(90, 10) == pytest.approx(0.79625, abs=1e-4)
    assert wilson_lower_bound(10, 90) < wilson_lower_bound(50, 50) < wilson_lower_bound(90, 10)
    assert wilson_lower_bound(1000, 0) > wilson_lower_bound(10, 0)


def test_times_are_converted_to_utc_with_z() -> None:
    eastern = timezone(timedelta(hours=-4))
    assert parse_iso("2025-08-07T03:06:03.772-04:00", "created_at") == datetime(2025, 8, 7, 7, 6, 3, 772000, UTC)
    assert iso_z(datetime(2025, 8, 7, 3, 6, 3, tzinfo=eastern)) == "2025-08-07T07:06:03Z"
    with pytest.raises(RecordError, match="created_at"):
        parse_iso("yesterday", "created_at")


def _post(**changes):
    fields = dict(
        site="danbooru", post_id=1, created_at=datetime(2020, 1, 1, tzinfo=UTC), rating="general", site_rating="g",
        tags=["b", "a", "a"], score=1, up_votes=1, down_votes=0, favorites=1, file_url=None, md5=None, sha512=None,
        width=1, height=1, file_ext="png", sources=[], deleted=False,
    )  # fmt: skip
    fields.update(changes)
    return UnifiedPost(**fields)


def test_unified_post_sorts_and_dedups_tags_and_checks_fields() -> None:
    assert _post().tags == ["a", "b"]
    with pytest.raises(RecordError, match="rating"):
        _post(rating="safe")
    with pytest.raises(RecordError, match="down_votes"):
        _post(down_votes=-3)
    with pytest.raises(RecordError, match="no rating"):
        _post(rating=None)
    assert _post(rating=None, deleted=True).rating is None
    with pytest.raises(RecordError, match="positive"):
        _post(post_id=0)
