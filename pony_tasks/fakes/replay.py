"""A booru that replays real API pages other projects recorded from the live sites, over HTTP on 127.0.0.1.

It answers the requests our adapters send (id cursors, Philomena's ``id.gt:``, Gelbooru's ``id:>N`` tags) by
filtering the recorded records, in the order the real site returns them, so ``pony scrape`` runs on real pages
end to end. Everything else (routes, defences, logging) is :class:`~pony_tasks.fakes.server.FakeBooru`'s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pony_tasks.fakes.corpus import SampleCorpus
from pony_tasks.fakes.server import FakeBooru

FAR_FUTURE = datetime(9000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class RecordedPost:
    """A recorded record with what the fake's filters read (id; never deleted, always uploaded)."""

    post_id: int
    raw: dict[str, Any] = field(repr=False)
    created_at: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    rating: str = "general"
    deleted: bool = False

    def is_deleted_at(self, now: datetime) -> bool:
        return False


def recorded_records(site: str, body: Any) -> list[dict[str, Any]]:
    """The post records in a recorded page body (each site's envelope)."""
    if site == "danbooru":
        return list(body)
    if site == "e621":
        return list(body["posts"])
    if site == "derpibooru":
        return list(body["images"])
    posts = body.get("post", [])
    return [posts] if isinstance(posts, dict) else list(posts)


def load_recorded(path: Path) -> list[dict[str, Any]]:
    site = path.parent.name
    return recorded_records(site, json.loads(path.read_text(encoding="utf-8")))


class ReplayBooru(FakeBooru):
    """Serves ``records`` (raw dicts as the site sent them) for ``site``."""

    def __init__(self, site: str, records: list[dict[str, Any]], **options: Any) -> None:
        options.setdefault("require_auth", False)
        super().__init__(site, SampleCorpus(posts_per_site=20), now=FAR_FUTURE, **options)
        self.posts = sorted((RecordedPost(int(r["id"]), r) for r in records), key=lambda p: p.post_id)
        self.ids = [p.post_id for p in self.posts]

    def _records(self, posts: list[Any]) -> list[dict[str, Any]]:
        return [p.raw for p in posts]

    def _derpibooru_tags(self, query: dict[str, str]) -> tuple[int, Any]:
        return 200, {"tags": [], "total": 0}  # no tags page was recorded: every tag stays uncategorised
