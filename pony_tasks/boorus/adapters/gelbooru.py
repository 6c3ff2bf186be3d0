"""Gelbooru 0.2 dapi: ``/index.php?page=dapi&s=post&q=index&json=1`` → ``{"@attributes": …, "post": …}``.

Quirks: ``post`` is missing when there are no results and a single object when there is one; tags are one
space-separated string with HTML entities still escaped; booleans come as strings. Paging is by id inside ``tags``
because offsets stop around 20,000 deep.

Since 2025-06 every API request needs ``api_key`` and a numeric ``user_id`` (without them: HTTP 401 with body
``[]``), so the scrape refuses to start without them. File hosts move (img3/img4 → img2, video-cdn3 → video-cdn4):
they are allowed by the suffix ``gelbooru.com`` in ``booru_file_hosts``, never by name. Deleted posts leave the
search index and are listed by a separate endpoint, ``deleted=show&last_id=N`` (entries above N, each with the
deleted post's md5; the dapi help page), which refresh walks with its own cursor.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from pony_tasks.boorus.adapters.base import PageError, PageRequest, SiteAdapter, optional_str, require_dict
from pony_tasks.boorus.records import RATINGS, RecordError, UnifiedPost, as_int, clean_tags, to_utc

DATE_FORMAT = "%a %b %d %H:%M:%S %z %Y"  # "Sat Sep 26 03:51:09 -0500 2026"
_XML_ENTRY = re.compile(r'<post\b(?=[^>]*\bdeleted="(\d+)")(?=[^>]*\bmd5="([0-9a-fA-F]{32})")[^>]*>')


class GelbooruAdapter(SiteAdapter):
    site = "gelbooru"
    default_base_url = "https://gelbooru.com"
    default_rate_per_second = 2.0
    page_limit = 100
    credential_hint = 'booru_credentials = { gelbooru = "user_id:api_key" }'
    secret_params = ("api_key", "user_id")
    requires_credentials = True

    def _params(self, tags: str | None, **extra: str) -> dict[str, str]:
        params = {"page": "dapi", "s": "post", "q": "index", "json": "1", "limit": str(self.page_limit), "pid": "0"}
        if tags is not None:
            params["tags"] = tags
        params.update(extra)
        if self.credentials:
            user_id, _, api_key = self.credentials.partition(":")
            params.update(user_id=user_id.strip(), api_key=api_key.strip())
        return params

    def newer_than(self, after_id: int, *, include_deleted: bool = False) -> PageRequest:
        return PageRequest("/index.php", self._params(f"id:>{after_id} sort:id:asc"))

    def post_lookup(self, post_id: int) -> PageRequest:
        return PageRequest("/index.php", self._params(None, id=str(post_id)))

    def lookup_record(self, body: Any) -> Any | None:
        records = self.records(body) if isinstance(body, dict) else []
        return records[0] if records else None

    def deleted_feed(self, after_entry: int) -> PageRequest | None:
        return PageRequest("/index.php", self._params(None, deleted="show", last_id=str(after_entry)))

    def deleted_entries(self, body: Any) -> list[tuple[int, str]]:
        """Entries of the deletion list: JSON (``{"post": [{"deleted": N, "md5": …}]}``, attributes also as
        ``@deleted``/``@md5``) or the XML the endpoint is documented with (``<post deleted="N" md5="…"/>``, read
        by attribute, no entity expansion)."""
        if isinstance(body, (bytes, str)):
            text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
            if text.lstrip().startswith("<"):
                return [(int(m.group(1)), m.group(2).lower()) for m in _XML_ENTRY.finditer(text)]
            try:
                body = json.loads(text)
            except ValueError as exc:
                raise PageError(f"deleted-posts list is neither JSON nor XML: {text[:80]!r}") from exc
        if isinstance(body, list) and not body:
            return []
        if not isinstance(body, dict):
            raise PageError("expected an object listing deleted posts")
        entries = body.get("post")
        entries = [] if entries is None else [entries] if isinstance(entries, dict) else entries
        if not isinstance(entries, list):
            raise PageError(f'"post" must be a list or an object, got {type(entries).__name__}')
        found = []
        for entry in entries:
            if not isinstance(entry, dict):
                raise PageError("a deleted-post entry must be an object")
            number = entry.get("deleted", entry.get("@deleted"))
            md5 = entry.get("md5", entry.get("@md5"))
            try:
                found.append((int(number), str(md5).lower()))
            except (TypeError, ValueError):
                raise PageError(f"deleted-post entry without a numeric 'deleted': {entry!r}") from None
        return found

    def older_than(self, before_id: int | None) -> PageRequest:
        return PageRequest("/index.php", self._params("" if before_id is None else f"id:<{before_id}"))

    def records(self, body: Any) -> list[Any]:
        if not isinstance(body, dict) or "@attributes" not in body:
            raise PageError('expected {"@attributes": {...}, "post": [...]}')
        posts = body.get("post")
        if posts is None:
            return []  # no results: the key is missing
        if isinstance(posts, dict):
            return [posts]  # one result: an object instead of a list
        if not isinstance(posts, list):
            raise PageError(f'"post" must be a list or an object, got {type(posts).__name__}')
        return posts

    def to_unified(self, raw: Any) -> UnifiedPost:
        raw = require_dict(raw)
        rating = raw.get("rating")
        if rating not in RATINGS:
            raise RecordError(f"rating {rating!r} is not one of {RATINGS}")
        created = raw.get("created_at")
        try:
            created_at = to_utc(datetime.strptime(str(created), DATE_FORMAT))
        except ValueError as exc:
            raise RecordError(f"created_at {created!r} is not like 'Sat Sep 26 03:51:09 -0500 2026'") from exc
        tags = raw.get("tags", "")
        if not isinstance(tags, str):
            raise RecordError("tags must be one space-separated string")
        image = optional_str(raw, "image") or optional_str(raw, "file_url") or ""
        extension = image.rsplit(".", 1)[-1].lower() if "." in image else None
        source = optional_str(raw, "source")
        return UnifiedPost(
            site=self.site,
            post_id=as_int(raw.get("id"), "id"),
            created_at=created_at,
            rating=rating,
            site_rating=rating,
            tags=clean_tags(tags.split(" ")),
            score=as_int(raw.get("score"), "score"),
            up_votes=None,
            down_votes=None,
            favorites=None,
            file_url=optional_str(raw, "file_url"),
            md5=optional_str(raw, "md5"),
            sha512=None,
            width=as_int(raw.get("width"), "width", optional=True),
            height=as_int(raw.get("height"), "height", optional=True),
            file_ext=extension,
            sources=source.split() if source else [],
            deleted=str(raw.get("status", "active")).lower() == "deleted",
        )
