"""The unified post record every site adapter produces, and the helpers adapters share."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pony_tasks.boorus.sites import SITE_NAME

RATINGS = ("general", "sensitive", "questionable", "explicit")
WILSON_Z = 2.57583  # 99 % two-sided, Derpibooru's own sort

# Exactly the keys of `pony posts export --format jsonl`, in order.
EXPORT_KEYS = (
    "site", "post_id", "created_at", "rating", "site_rating", "tags", "score", "up_votes", "down_votes",
    "favorites", "wilson_score", "file_url", "file_url_derived", "md5", "sha512", "width", "height", "file_ext",
    "sources", "deleted", "observed_at",
)  # fmt: skip


class RecordError(ValueError):
    """A record breaks the schema we expect from its site; it goes to quarantine with this message."""


@dataclass
class UnifiedPost:
    site: str
    post_id: int
    created_at: datetime | None
    rating: str | None
    site_rating: str | None
    tags: list[str]
    score: int | None
    up_votes: int | None
    down_votes: int | None
    favorites: int | None
    file_url: str | None
    md5: str | None
    sha512: str | None
    width: int | None
    height: int | None
    file_ext: str | None
    sources: list[str]
    deleted: bool
    tag_groups: dict[str, list[str]] = field(default_factory=dict)
    file_url_derived: bool = False  # the API hid file_url; it was rebuilt from md5 + ext (e621)
    tag_ids: tuple[int, ...] = field(default=(), repr=False)  # the site's tag ids (Derpibooru), not stored
    wilson_score: float | None = field(init=False, default=None)  # from up/down votes, computed once

    def __post_init__(self) -> None:
        if not isinstance(self.site, str) or not SITE_NAME.fullmatch(self.site):
            raise RecordError(f"site name {self.site!r} is not a configured site's name")
        if not isinstance(self.post_id, int) or isinstance(self.post_id, bool) or self.post_id <= 0:
            raise RecordError(f"post id must be a positive integer, got {self.post_id!r}")
        if self.rating is not None and self.rating not in RATINGS:
            raise RecordError(f"rating {self.rating!r} is not one of {RATINGS}")
        if self.rating is None and not self.deleted:
            raise RecordError("post has no rating")
        for name in ("up_votes", "down_votes"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise RecordError(f"{name} must be non-negative, got {value}")
        if self.created_at is not None and self.created_at.tzinfo is None:
            raise RecordError("created_at has no time zone")
        self.tags = sorted(set(self.tags))
        self.wilson_score = wilson_lower_bound(self.up_votes, self.down_votes)

    @property
    def is_deletion_stub(self) -> bool:
        """A deleted post the site shows only as an id (Derpibooru): it marks the stored post deleted and must not
        overwrite its tags, rating or score."""
        return self.deleted and self.rating is None


def wilson_lower_bound(up: int | None, down: int | None, z: float = WILSON_Z) -> float | None:
    """Lower bound of the Wilson score interval for the share of up votes; None when votes are unknown."""
    if up is None or down is None:
        return None
    n = up + down
    if n == 0:
        return 0.0
    p = up / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt((p * (1 - p) + z * z / (4 * n)) / n)
    return max(0.0, (centre - spread) / (1 + z * z / n))


def to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise RecordError(f"timestamp {value.isoformat()} has no time zone")
    return value.astimezone(UTC)


def iso_z(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z`` suffix (microseconds kept only when present)."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def parse_iso(value: object, field_name: str, *, naive_is_utc: bool = False) -> datetime:
    """An ISO 8601 timestamp in UTC. ``naive_is_utc``: a value without a zone is UTC (Philomena sent zone-less
    timestamps until 2021-01); otherwise it is an error that says so."""
    if not isinstance(value, str):
        raise RecordError(f"{field_name} must be an ISO 8601 string, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise RecordError(f"{field_name} {value!r} is not an ISO 8601 timestamp ({exc})") from None
    if parsed.tzinfo is None:
        if not naive_is_utc:
            raise RecordError(f"{field_name} {value!r} has no time zone (expected an offset such as +00:00 or Z)")
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def clean_tags(tags: list[str]) -> list[str]:
    """HTML entities decoded, empty strings dropped; the site's spelling otherwise kept."""
    return [html.unescape(tag) for tag in tags if tag and tag.strip()]


def as_int(value: object, field_name: str, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise RecordError(f"{field_name} must be an integer, got {value!r}")
    try:
        return int(value)
    except ValueError as exc:
        raise RecordError(f"{field_name} must be an integer, got {value!r}") from exc


def as_bool(value: object) -> bool:
    """Sites send real booleans, or strings like "false" (Gelbooru)."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)
