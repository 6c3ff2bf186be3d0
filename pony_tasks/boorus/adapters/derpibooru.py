"""Derpibooru (Philomena): ``/api/v1/json/search/images`` → ``{"images": […], "total": N}``; the rating is a tag."""

from __future__ import annotations

from typing import Any

from pony_tasks.boorus.adapters.base import PageError, PageRequest, SiteAdapter, optional_str, require_dict
from pony_tasks.boorus.records import RecordError, UnifiedPost, as_bool, as_int, clean_tags, parse_iso

# Rating tags from mildest to most severe; a post carrying several gets the most severe.
RATING_TAGS = {"safe": "general", "suggestive": "sensitive", "questionable": "questionable", "explicit": "explicit"}
EVERYTHING_FILTER_ID = "56027"  # the site's public "Everything" filter: nothing hidden from a scraper


class DerpibooruAdapter(SiteAdapter):
    site = "derpibooru"
    default_base_url = "https://derpibooru.org"
    default_rate_per_second = 1.0
    page_limit = 50
    cdn_hosts = ("derpicdn.net",)
    credential_hint = 'booru_credentials = { derpibooru = "api_key" }'
    secret_params = ("key",)

    def _params(self, query: str, direction: str) -> dict[str, str]:
        params = {
            "q": query,
            "sf": "id",
            "sd": direction,
            "per_page": str(self.page_limit),
            "page": "1",
            "filter_id": EVERYTHING_FILTER_ID,
        }
        if self.credentials:
            params["key"] = self.credentials
        return params

    def newer_than(self, after_id: int) -> PageRequest:
        return PageRequest("/api/v1/json/search/images", self._params(f"id.gt:{after_id}", "asc"))

    def older_than(self, before_id: int | None) -> PageRequest:
        query = "*" if before_id is None else f"id.lt:{before_id}"
        return PageRequest("/api/v1/json/search/images", self._params(query, "desc"))

    def records(self, body: Any) -> list[Any]:
        if not isinstance(body, dict) or not isinstance(body.get("images"), list):
            raise PageError('expected {"images": [...], "total": N}')
        return body["images"]

    def to_unified(self, raw: Any) -> UnifiedPost:
        raw = require_dict(raw)
        post_id = as_int(raw.get("id"), "id")
        deleted = bool(
            as_bool(raw.get("hidden_from_users", False)) or raw.get("deletion_reason") or raw.get("duplicate_of")
        )
        tags = raw.get("tags") or []
        if not isinstance(tags, list):
            raise RecordError("tags must be a list of strings")
        tags = clean_tags([t for t in tags if isinstance(t, str)])
        rating_tags = [t for t in RATING_TAGS if t in tags]
        if not rating_tags and not deleted:
            raise RecordError("no rating tag (safe, suggestive, questionable or explicit)")
        representations = raw.get("representations") if isinstance(raw.get("representations"), dict) else {}
        sources = raw.get("source_urls")
        if not isinstance(sources, list):
            single = optional_str(raw, "source_url")
            sources = [single] if single else []
        created = raw.get("created_at")
        return UnifiedPost(
            site=self.site,
            post_id=post_id,
            created_at=parse_iso(created, "created_at") if created is not None else None,
            rating=RATING_TAGS[rating_tags[-1]] if rating_tags else None,
            site_rating=",".join(rating_tags) or None,
            tags=tags,
            score=as_int(raw.get("score"), "score", optional=deleted),
            up_votes=as_int(raw.get("upvotes"), "upvotes", optional=deleted),
            down_votes=as_int(raw.get("downvotes"), "downvotes", optional=deleted),
            favorites=as_int(raw.get("faves"), "faves", optional=deleted),
            file_url=representations.get("full") or None,
            md5=None,
            sha512=optional_str(raw, "sha512_hash"),
            width=as_int(raw.get("width"), "width", optional=True),
            height=as_int(raw.get("height"), "height", optional=True),
            file_ext=optional_str(raw, "format"),
            sources=[s for s in sources if isinstance(s, str) and s],
            deleted=deleted,
            tag_groups=_groups_from_prefixes(tags),
        )


def _groups_from_prefixes(tags: list[str]) -> dict[str, list[str]]:
    """Philomena puts categories in the tag itself ("artist:name", "oc:name"); the prefix is kept in the tag."""
    groups: dict[str, list[str]] = {}
    for tag in tags:
        prefix, colon, _ = tag.partition(":")
        group = prefix if colon and prefix in ("artist", "oc", "species", "character", "source") else "general"
        if tag in RATING_TAGS:
            group = "rating"
        groups.setdefault(group, []).append(tag)
    return groups
