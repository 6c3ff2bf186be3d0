"""e621 / e926: ``GET /posts.json`` → ``{"posts": […]}``; cursors as on Danbooru; needs a descriptive User-Agent."""

from __future__ import annotations

from typing import Any

from pony_tasks.boorus.adapters.base import IdCursorAdapter, PageError, require_dict
from pony_tasks.boorus.records import RecordError, UnifiedPost, as_bool, as_int, clean_tags, parse_iso

RATINGS = {"s": "general", "q": "questionable", "e": "explicit"}
TAG_GROUPS = ("general", "artist", "contributor", "copyright", "character", "species", "invalid", "meta", "lore")


class E621Adapter(IdCursorAdapter):
    site = "e621"
    default_base_url = "https://e621.net"
    default_rate_per_second = 1.0  # the site asks for about 1 request/s sustained (2/s hard limit)
    page_limit = 320
    cdn_hosts = ("static1.e621.net",)
    credential_hint = 'booru_credentials = { e621 = "username:api_key" }'

    def records(self, body: Any) -> list[Any]:
        if not isinstance(body, dict) or not isinstance(body.get("posts"), list):
            raise PageError('expected {"posts": [...]}')
        return body["posts"]

    def to_unified(self, raw: Any) -> UnifiedPost:
        raw = require_dict(raw)
        site_rating = raw.get("rating")
        if site_rating not in RATINGS:
            raise RecordError(f"rating {site_rating!r} is not one of s/q/e")
        file = raw.get("file")
        score = raw.get("score")
        tags = raw.get("tags")
        if not isinstance(file, dict) or not isinstance(score, dict) or not isinstance(tags, dict):
            raise RecordError("file, score and tags must be objects")
        groups: dict[str, list[str]] = {}
        for group, names in tags.items():
            if not isinstance(names, list):
                raise RecordError(f"tags.{group} must be a list")
            if names:
                groups[group] = clean_tags(names)
        down = as_int(score.get("down"), "score.down")
        flags = raw.get("flags") if isinstance(raw.get("flags"), dict) else {}
        sources = raw.get("sources") or []
        if not isinstance(sources, list):
            raise RecordError("sources must be a list")
        return UnifiedPost(
            site=self.site,
            post_id=as_int(raw.get("id"), "id"),
            created_at=parse_iso(raw.get("created_at"), "created_at"),
            rating=RATINGS[site_rating],
            site_rating=site_rating,
            tags=[tag for names in groups.values() for tag in names],
            score=as_int(score.get("total"), "score.total"),
            up_votes=as_int(score.get("up"), "score.up"),
            down_votes=-down,  # e621 sends down votes as a negative number
            favorites=as_int(raw.get("fav_count"), "fav_count", optional=True),
            file_url=file.get("url") or None,  # null for posts hidden from us
            md5=file.get("md5") or None,
            sha512=None,
            width=as_int(file.get("width"), "file.width", optional=True),
            height=as_int(file.get("height"), "file.height", optional=True),
            file_ext=file.get("ext") or None,
            sources=[s for s in sources if isinstance(s, str) and s],
            deleted=as_bool(flags.get("deleted", False)),
            tag_groups=groups,
        )
