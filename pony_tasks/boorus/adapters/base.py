"""What a site adapter does: translate cursors into requests and site records into :class:`UnifiedPost`.

Adapters hold no state about progress and do no I/O; the engine (``pony_tasks.boorus.engine``) pages, retries,
rate-limits and persists.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

from pony_tasks.boorus.records import RecordError, UnifiedPost
from pony_tasks.boorus.sites import SiteConfig
from pony_tasks.polite_http import Defence


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
    credential_hint: str = ""  # how to configure credentials, for 401 messages
    secret_params: tuple[str, ...] = ()  # query parameters that carry credentials (redacted in logs)
    requires_credentials: bool = False  # the site answers nothing without them: refuse before any request
    has_tag_categories_api: bool = False  # categories are not in the post JSON; see tag_category_request
    tag_batch: int = 50  # tag ids per tags-API request

    def __init__(
        self, base_url: str | None = None, credentials: str | None = None, file_base_url: str | None = None,
        *, site: str | None = None, config: SiteConfig | None = None,
    ) -> None:  # fmt: skip
        """``site`` and ``config``: another instance of this engine (a row of ``settings.sites``); without them, the
        engine's built-in site."""
        builtin = type(self).site
        if site is not None and site != builtin:
            self.site = site
            self.credential_hint = type(self).credential_hint.replace(builtin, site)
        if config is not None:
            self.default_base_url = config.base_url
            self.default_rate_per_second = config.effective_rate
        self.config = config
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.credentials = credentials
        self.file_base_url = file_base_url

    # Before any request ---------------------------------------------------------------------------------------------
    def refusal(self, settings: Any) -> str | None:
        """Why scraping this site with ``settings`` must not start (missing credentials, a placeholder contact the
        site would block), or None. Checked before the first request."""
        if self.requires_credentials and not self.credentials:
            return (f"{self.site} answers every API request without credentials with HTTP 401: set "
                    f"{self.credential_hint} (environment: PONY_BOORU_CREDENTIALS='{{\"{self.site}\": \"…\"}}')")
        return None

    def defences(self, status: int, content_type: str, body: bytes) -> Defence | None:
        """The site's own anti-bot answers (see ``polite_http.Defence``); None: nothing beyond the generic rules."""
        return None

    # Requests ------------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def newer_than(self, after_id: int, *, include_deleted: bool = False) -> PageRequest:
        """The page of posts with ids just above ``after_id`` (any order within the page); ``include_deleted``
        (refresh) asks for deleted posts too where the site can show them."""

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

    # Deletions -----------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def post_lookup(self, post_id: int) -> PageRequest:
        """The request for one post by id: refresh asks for stored posts a refreshed range no longer shows."""

    @abc.abstractmethod
    def lookup_record(self, body: Any) -> Any | None:
        """The raw record in a :meth:`post_lookup` answer, or None if the site does not show the post."""

    def deleted_feed(self, after_entry: int) -> PageRequest | None:
        """A separate list of deletions (Gelbooru), entries above ``after_entry``; None where the site has none."""
        return None

    def deleted_entries(self, body: Any) -> list[tuple[int, str]]:
        """(entry number, md5) pairs in a :meth:`deleted_feed` page."""
        return []

    # Tag categories ------------------------------------------------------------------------------------------------
    def tag_category_request(self, tag_ids: list[int]) -> PageRequest:
        raise NotImplementedError

    def tag_categories(self, body: Any) -> dict[int, tuple[str, str | None]]:
        """{tag id: (name, category)} from a :meth:`tag_category_request` answer."""
        raise NotImplementedError

    def apply_tag_categories(self, post: UnifiedPost, categories: dict[int, tuple[str, str | None]]) -> None:
        """Fill ``post.tag_groups`` from cached categories of its ``tag_ids``."""
        raise NotImplementedError


class IdCursorAdapter(SiteAdapter):
    """Sites that page with ``page=a<id>`` / ``page=b<id>`` cursors on ``/posts.json`` and HTTP Basic auth
    (Danbooru, e621)."""

    posts_path = "/posts.json"

    def newer_than(self, after_id: int, *, include_deleted: bool = False) -> PageRequest:
        params = {"limit": str(self.page_limit), "page": f"a{after_id}"}
        if include_deleted:
            params["tags"] = "status:any"  # both sites leave deleted posts out of searches without a status: tag
        return PageRequest(self.posts_path, params, self._basic_auth())

    def post_lookup(self, post_id: int) -> PageRequest:
        return PageRequest(f"/posts/{post_id}.json", {}, self._basic_auth())

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
