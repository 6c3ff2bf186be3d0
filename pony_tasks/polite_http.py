"""HTTP for scraping other people's servers politely: a per-site rate limit, a descriptive User-Agent, and retries
with exponential back-off and jitter that honour ``Retry-After``. Credentials never reach the logs."""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

from pony_tasks import __version__

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 520, 521, 522, 524})
MAX_BACKOFF_SECONDS = 120.0
_ALWAYS_SECRET = ("api_key", "key", "login", "password", "user_id", "token")


def user_agent(contact: str) -> str:
    """The form e621 asks for: ``project/version (by contact)``."""
    return f"pony-pipeline/{__version__} (by {contact}; +https://github.com/pony-pipeline)"


def redact_url(url: str, secret_params: Iterable[str] = ()) -> str:
    """The URL with credential-bearing query values and any userinfo replaced by ``***``."""
    parts = urlsplit(url)
    secret = {*_ALWAYS_SECRET, *secret_params}
    pairs = [(k, "***" if k in secret else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    query = urlencode(pairs, safe="*")
    netloc = parts.netloc.rsplit("@", 1)[-1]
    if "@" in parts.netloc:
        netloc = "***@" + netloc
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


_SECRET_IN_TEXT = re.compile(r"(?i)\b(" + "|".join(_ALWAYS_SECRET) + r")=[^&\s\"']+")


class _RedactSecrets(logging.Filter):
    """urllib3 logs every request URL at DEBUG, query string included: strip credentials from those lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _SECRET_IN_TEXT.sub(lambda m: f"{m.group(1)}=***", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_RedactSecrets())


class RateLimiter:
    """Request starts are spaced at least ``1/rate`` seconds apart (a small margin absorbs clock jitter)."""

    def __init__(self, requests_per_second: float, margin: float = 1.02) -> None:
        if requests_per_second <= 0:
            raise ValueError(f"rate must be positive, got {requests_per_second}")
        self.rate = requests_per_second
        self.interval = margin / requests_per_second
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


_SHARED_LIMITERS: dict[str, RateLimiter] = {}
_SHARED_LOCK = threading.Lock()


def shared_limiter(name: str, requests_per_second: float) -> RateLimiter:
    """One limiter per name (a site's API, an image host) for the whole process, so back-to-back scrapes and
    concurrent workers together stay under the rate. A changed rate replaces the limiter."""
    with _SHARED_LOCK:
        limiter = _SHARED_LIMITERS.get(name)
        if limiter is None or limiter.rate != requests_per_second:
            limiter = _SHARED_LIMITERS[name] = RateLimiter(requests_per_second)
        return limiter


class HTTPFailure(RuntimeError):
    """The request failed for good (after retries, or with a status that retrying cannot fix)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthenticationRequired(HTTPFailure):
    """The site answered 401/403: credentials are missing or wrong."""


class BodyTooLarge(HTTPFailure):
    """The body is larger than the caller allows; not retried."""


class MalformedBody(HTTPFailure):
    """Every attempt returned a body that is not valid JSON; ``raw`` holds the last one for quarantine."""

    def __init__(self, message: str, raw: str) -> None:
        super().__init__(message)
        self.raw = raw


def _read_body(response: requests.Response, max_bytes: int | None, shown_url: str) -> None:
    """Read the streamed body into ``response._content``, stopping early past ``max_bytes``."""
    try:
        declared = int(response.headers.get("Content-Length", "-1"))
        if max_bytes is not None and declared > max_bytes:
            raise BodyTooLarge(
                f"{shown_url}: {declared} bytes is over the {max_bytes}-byte limit", response.status_code
            )
        chunks, total = [], 0
        for chunk in response.iter_content(1 << 16):
            total += len(chunk)
            if max_bytes is not None and total > max_bytes:
                raise BodyTooLarge(f"{shown_url}: body exceeds the {max_bytes}-byte limit", response.status_code)
            chunks.append(chunk)
        response._content = b"".join(chunks)  # what requests itself does when it reads a body
        response._content_consumed = True
    finally:
        response.close()


@dataclass
class PoliteClient:
    limiter: RateLimiter
    contact: str
    timeout: float = 30.0
    max_attempts: int = 8
    backoff_seconds: float = 1.0
    secret_params: tuple[str, ...] = ()
    credential_hint: str = ""
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random | None = None

    def __post_init__(self) -> None:
        self.session = requests.Session()
        self.session.headers["User-Agent"] = user_agent(self.contact)
        self.rng = self.rng or random.Random()
        self.retries = 0

    @classmethod
    def from_settings(cls, settings: Any, limiter: RateLimiter, **extra: Any) -> PoliteClient:
        """A client with the contact, timeout and retry policy of ``settings`` (a ``pony_tasks.config.Settings``)."""
        return cls(
            limiter=limiter,
            contact=settings.scrape_contact,
            timeout=settings.http_timeout_seconds,
            max_attempts=settings.http_max_attempts,
            backoff_seconds=settings.http_backoff_seconds,
            **extra,
        )

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        backoff = min(MAX_BACKOFF_SECONDS, self.backoff_seconds * 2 ** (attempt - 1))
        jittered = backoff * self.rng.uniform(0.5, 1.5)
        if retry_after:
            try:
                wanted = float(retry_after)
            except ValueError:
                parsed = email.utils.parsedate_to_datetime(retry_after)
                wanted = parsed.timestamp() - time.time() if parsed else 0.0
            return max(0.0, min(wanted, 3600.0)) + self.rng.uniform(0, 0.1)
        return jittered

    def _retry(self, attempt: int, what: str, url: str, retry_after: str | None = None) -> None:
        if attempt >= self.max_attempts:
            raise HTTPFailure(f"{redact_url(url, self.secret_params)}: {what}; gave up after {attempt} attempts")
        delay = self._delay(attempt, retry_after)
        self.retries += 1
        logger.warning("%s: %s; retry %d in %.2f s", redact_url(url, self.secret_params), what, attempt, delay)
        self.sleep(delay)

    def get(
        self,
        url: str,
        params: dict[str, str] | None = None,
        *,
        auth: tuple[str, str] | None = None,
        max_bytes: int | None = None,
    ) -> requests.Response:
        """GET with the whole body read (``response.content``); retried on 429/5xx, timeouts, dropped connections
        and truncated bodies. A body over ``max_bytes`` raises :class:`BodyTooLarge` without being read further."""
        full_url = requests.Request("GET", url, params=params).prepare().url or url
        attempt = 0
        while True:
            attempt += 1
            self.limiter.wait()
            try:
                response = self.session.get(url, params=params, auth=auth, timeout=self.timeout, stream=True)
                _read_body(response, max_bytes, redact_url(full_url, self.secret_params))
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                self._retry(attempt, f"{type(exc).__name__}", full_url)
                continue
            if response.status_code in RETRY_STATUSES:
                self._retry(attempt, f"HTTP {response.status_code}", full_url, response.headers.get("Retry-After"))
                continue
            if response.status_code in (401, 403):
                hint = f" — set credentials: {self.credential_hint}" if self.credential_hint else ""
                raise AuthenticationRequired(
                    f"{redact_url(full_url, self.secret_params)} answered HTTP {response.status_code} "
                    f"{response.reason}{hint}",
                    response.status_code,
                )
            return response

    def get_json(
        self, url: str, params: dict[str, str] | None = None, *, auth: tuple[str, str] | None = None
    ) -> tuple[Any, str]:
        """The decoded JSON body and the (redacted) URL it came from. A body that does not parse is retried like a
        dropped connection; if it never parses, :class:`MalformedBody` carries the last one."""
        attempt = 0
        while True:
            attempt += 1
            response = self.get(url, params, auth=auth)
            shown = redact_url(response.url, self.secret_params)
            text = response.content.decode("utf-8", errors="replace")
            if 400 <= response.status_code < 500 and not text.lstrip().startswith(("{", "[")):
                raise HTTPFailure(f"{shown} answered HTTP {response.status_code}: {text[:200]}", response.status_code)
            try:
                return json.loads(text), shown
            except ValueError as exc:
                if attempt >= self.max_attempts:
                    raise MalformedBody(f"{shown}: body is not valid JSON ({exc})", text) from None
                self._retry(attempt, f"malformed JSON ({exc})", response.url)
