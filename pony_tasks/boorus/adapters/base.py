"""What a site adapter does: translate cursors into requests and site records into :class:`UnifiedPost`.

Adapters hold no state about progress and do no I/O; the engine (``pony_tasks.boorus.engine``) pages, retries,
rate-limits and persists.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from pony_tasks.boorus.records import RecordError, UnifiedPost


class PageError(ValueError):
    """The page as a whole is not what the site should answer (wrong shape, an error object)."""


@dataclass(frozen=True)
class PageRequest:
    path: str
    params: dict[str, str]
    auth: tuple[str, str] | None = field(default=None, repr=False)


class SiteAdapter(abc.ABC):
    site: str
    default_base_url: str
    default_rate_per_second: float = 2.0
    page_limit: int
    cdn_hosts: tuple[str, ...] = ()  # hosts that serve the site's files besides the API host
    credential_hint: str = ""  # how to configure credentials, for 401 messages
    secret_params: tuple[str, ...] = ()  # query parameters that carry credentials (redacted in logs)

    def __init__(self, base_url: str | None = None, credentials: str | None = None) -> None:
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.credentials = credentials

    # Requests ------------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def newer_than(self, after_id: int) -> PageRequest:
        """The page of posts with ids just above ``after_id`` (any order within the page)."""

    @abc.abstractmethod
    def older_than(self, before_id: int | None) -> PageRequest:
        """The page of posts with ids just below ``before_id`` (None: the newest posts)."""

    def _basic_auth(self) -> tuple[str, str] | None:
        if not self.credentials:
            return None
        login, _, key = self.credentials.partition(":")
        return (login, key)

    # Responses -----------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def records(self, body: Any) -> list[Any]:
        """The raw post records in a decoded JSON page; raises :class:`PageError` for a page of the wrong shape."""

    def record_id(self, raw: Any) -> int | None:
        """The post id of a raw record if it has a usable one (used to advance cursors past broken records)."""
        value = raw.get("id") if isinstance(raw, dict) else None
        try:
            number = int(value)
        except (TypeError, ValueError):
            return None
        return number if number > 0 else None

    @abc.abstractmethod
    def to_unified(self, raw: Any) -> UnifiedPost:
        """Translate one record; raises :class:`RecordError` if it breaks the site's schema."""

    # Hosts ---------------------------------------------------------------------------------------------------------
    @property
    def allowed_file_hosts(self) -> frozenset[str]:
        """Hosts image files may be downloaded from: the API host and the site's own CDNs."""
        return frozenset({urlparse(self.base_url).netloc, *self.cdn_hosts})


class IdCursorAdapter(SiteAdapter):
    """Sites that page with ``page=a<id>`` / ``page=b<id>`` cursors on ``/posts.json`` and HTTP Basic auth
    (Danbooru, e621)."""

    posts_path = "/posts.json"

    def newer_than(self, after_id: int) -> PageRequest:
        return PageRequest(self.posts_path, {"limit": str(self.page_limit), "page": f"a{after_id}"}, self._basic_auth())

    def older_than(self, before_id: int | None) -> PageRequest:
        params = {"limit": str(self.page_limit)}
        if before_id is not None:
            params["page"] = f"b{before_id}"
        return PageRequest(self.posts_path, params, self._basic_auth())


def require_dict(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise RecordError(f"record must be a JSON object, got {type(raw).__name__}")
    return raw


def optional_str(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RecordError(f"{key} must be a string, got {value!r}")
    return value
