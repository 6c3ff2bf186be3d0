"""Danbooru: ``GET /posts.json`` → bare array; ``page=a<id>``/``b<id>`` cursors (pages come back descending)."""

from __future__ import annotations

from typing import Any

from pony_tasks.boorus.adapters.base import IdCursorAdapter, PageError, optional_str, require_dict
from pony_tasks.boorus.records import RecordError, UnifiedPost, as_bool, as_int, clean_tags, parse_iso

RATINGS = {"g": "general", "s": "sensitive", "q": "questionable", "e": "explicit"}
TAG_GROUPS = ("general", "character", "copyright", "artist", "meta")


class DanbooruAdapter(IdCursorAdapter):
    site = "danbooru"
    default_base_url = "https://danbooru.donmai.us"
    default_rate_per_second = 2.0
    page_limit = 200
    credential_hint = 'booru_credentials = { danbooru = "login:api_key" }'

    def records(self, body: Any) -> list[Any]:
        if isinstance(body, dict) and body.get("success") is False:
            raise PageError(f"Danbooru refused the page: {body.get('error')}: {body.get('message')}")
        if not isinstance(body, list):
            raise PageError(f"expected a JSON array of posts, got {type(body).__name__}")
        return body

    def lookup_record(self, body: Any) -> Any | None:
        return body if isinstance(body, dict) and "id" in body else None

    def to_unified(self, raw: Any) -> UnifiedPost:
        raw = require_dict(raw)
        site_rating = raw.get("rating")
        if site_rating not in RATINGS:
            raise RecordError(f"rating {site_rating!r} is not one of g/s/q/e")
        up = as_int(raw.get("up_score"), "up_score", optional=True)
        down = as_int(raw.get("down_score"), "down_score", optional=True)
        tag_string = raw.get("tag_string", "")
        if not isinstance(tag_string, str):
            raise RecordError("tag_string must be a string")
        groups = {
            group: clean_tags(str(raw.get(f"tag_string_{group}", "")).split())
            for group in TAG_GROUPS
            if raw.get(f"tag_string_{group}")
        }
        source = optional_str(raw, "source")
        return UnifiedPost(
            site=self.site,
            post_id=as_int(raw.get("id"), "id"),
            created_at=parse_iso(raw.get("created_at"), "created_at"),
            rating=RATINGS[site_rating],
            site_rating=site_rating,
            tags=clean_tags(tag_string.split()),
            score=as_int(raw.get("score"), "score"),
            up_votes=up,
            down_votes=None if down is None else -down,  # Danbooru sends down_score as a negative number
            favorites=as_int(raw.get("fav_count"), "fav_count", optional=True),
            file_url=optional_str(raw, "file_url"),
            md5=optional_str(raw, "md5"),
            sha512=None,
            width=as_int(raw.get("image_width"), "image_width", optional=True),
            height=as_int(raw.get("image_height"), "image_height", optional=True),
            file_ext=optional_str(raw, "file_ext"),
            sources=[source] if source else [],
            deleted=as_bool(raw.get("is_deleted", False)),
            tag_groups=groups,
        )
