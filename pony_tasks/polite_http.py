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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests

from pony_tasks import __version__
from pony_tasks.errors import PermanentError

if TYPE_CHECKING:
    from pony_tasks.shared_rate import DatabaseSlots

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
    """Request starts are spaced at least ``1/rate`` seconds apart (a small margin absorbs clock jitter).

    It also carries what a site's defences ask of every thread using it: after a challenge, a quiet period and then
    one probing request at a time (:meth:`hold`), until a normal answer comes back (:meth:`settled`); after a block,
    no request at all (:meth:`refuse`).

    With ``slots`` (:class:`pony_tasks.shared_rate.DatabaseSlots`) every start is also a slot reserved on the
    database, so every process, task and pod using the same limit stays within it together; the quiet period and
    a recorded site block reach them too (the one-probe-at-a-time rule stays per process)."""

    def __init__(self, requests_per_second: float, margin: float = 1.02, slots: DatabaseSlots | None = None) -> None:
        if requests_per_second <= 0:
            raise ValueError(f"rate must be positive, got {requests_per_second}")
        self.rate = requests_per_second
        self.interval = margin / requests_per_second
        self.slots = slots
        self._next = 0.0
        self._cond = threading.Condition()
        self._refusal: tuple[float, Exception] | None = None
        self._quiet = False  # challenged: requests go one at a time
        self._prober: int | None = None  # the thread whose request is in flight while quiet

    def _refused(self) -> None:
        if self._refusal is not None and time.monotonic() < self._refusal[0]:
            raise self._refusal[1]

    def wait(self) -> None:
        me = threading.get_ident()
        with self._cond:
            while True:
                self._refused()
                if not self._quiet or self._prober in (None, me):
                    break
                self._cond.wait(0.05)
            if self._quiet:
                self._prober = me
            now = time.monotonic()
            start = max(now, self._next)
            if self.slots is not None:  # the slot every process shares; the local spacing never comes later
                slot = self.slots.reserve(self.interval)
                if slot.blocked_until is not None:
                    raise SiteBlocked(f"the site is blocking us — recorded by another process: {slot.block_reason}; "
                                      f"no request before {slot.blocked_until:%Y-%m-%d %H:%M:%S %Z}", None,
                                      slot.blocked_until)  # fmt: skip
                start = max(start, time.monotonic() + slot.delay)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)
        with self._cond:
            self._refused()  # a block that arrived while this request waited its turn

    def hold(self, seconds: float) -> None:
        """An anti-bot challenge asks the whole client, not one request, to go quiet: no request through this
        limiter starts in the next ``seconds``, and then one at a time until :meth:`settled`."""
        with self._cond:
            self._next = max(self._next, time.monotonic() + seconds)
            self._quiet = True
            if self.slots is not None:
                self.slots.hold(seconds)

    def settled(self) -> None:
        """A normal answer came back: requests may overlap again."""
        with self._cond:
            if self._prober == threading.get_ident():
                self._quiet, self._prober = False, None
                self._cond.notify_all()

    def release(self) -> None:
        """The calling thread is done (whatever happened): another thread may probe."""
        with self._cond:
            if self._prober == threading.get_ident():
                self._prober = None
                self._cond.notify_all()

    def disconnect(self) -> None:
        """Close the shared slots' database connection (opened again by the next request): a run that has finished
        holds no connection open (a database with open sessions cannot be copied, dropped or renamed)."""
        if self.slots is not None:
            self.slots.close()

    def refuse(self, seconds: float, error: Exception) -> None:
        """Every request through this limiter raises ``error`` for ``seconds`` (the site blocked us)."""
        with self._cond:
            self._refusal = (time.monotonic() + seconds, error)
            self._cond.notify_all()


_SHARED_LIMITERS: dict[str, RateLimiter] = {}
_SHARED_LOCK = threading.Lock()


def shared_limiter(name: str, requests_per_second: float, database: str | None = None,
                   site: tuple[str, str] | None = None) -> RateLimiter:  # fmt: skip
    """One limiter per name (a site's API, an image host) for the whole process, so back-to-back scrapes and
    concurrent workers together stay under the rate; with ``database`` (a PostgreSQL URL) its slots are shared with
    every other process using the same name there, and ``site`` (site, base URL) is refused while that site's
    recorded block lasts. A changed rate or database replaces the limiter."""
    from pony_tasks.shared_rate import DatabaseSlots

    with _SHARED_LOCK:
        limiter = _SHARED_LIMITERS.get(name)
        current = limiter.slots.url if limiter is not None and limiter.slots is not None else None
        if limiter is None or limiter.rate != requests_per_second or current != database:
            if limiter is not None:
                limiter.disconnect()
            slots = DatabaseSlots(database, name, site) if database else None
            limiter = _SHARED_LIMITERS[name] = RateLimiter(requests_per_second, slots=slots)
        return limiter


class HTTPFailure(RuntimeError):
    """The request failed for good (after retries, or with a status that retrying cannot fix)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthenticationRequired(HTTPFailure):
    """The site answered 401/403 as an API (not an HTML block page): credentials are missing or wrong."""


class BodyTooLarge(HTTPFailure):
    """The body is larger than the caller allows; not retried."""


class UnsafeURL(HTTPFailure):
    """A URL (or a redirect's target) we refuse to request: a foreign host, or one resolving to a private address.
    Nothing was sent to it."""


class SiteBlocked(PermanentError, HTTPFailure):
    """The site is blocking us (an anti-bot block, an HTML 403). Stop at once: every further request can extend the
    block. ``until`` is when the block ends, when the site says how long it lasts (else None)."""

    def __init__(self, message: str, status: int | None, until: datetime | None) -> None:
        super().__init__(message, status)
        self.until = until


class MalformedBody(HTTPFailure):
    """Every attempt returned a body that is not valid JSON; ``raw`` holds the last one for quarantine."""

    def __init__(self, message: str, raw: str) -> None:
        super().__init__(message)
        self.raw = raw


@dataclass(frozen=True)
class Defence:
    """How a site defends itself against a response's sender: ``challenge`` (stay silent ``seconds``, then one more
    try) or ``block`` (stop; it lasts ``seconds``, 0 when the site does not say)."""

    kind: str
    seconds: float
    message: str


DefencePolicy = Callable[[int, str, bytes], "Defence | None"]  # (status, content type, body) -> defence


def html_block_page(status: int, content_type: str, body: bytes) -> Defence | None:
    """Every site: a 403 answered with an HTML page is a block by the site or its CDN (Cloudflare, a User-Agent
    rule), not an API's "credentials missing" answer, which is JSON."""
    if status == 403 and _looks_like_html(content_type, body):
        return Defence("block", 0.0, "the site answered HTTP 403 with an HTML page (a block by the site or its CDN, "
                                     "e.g. a User-Agent rule or Cloudflare), not an API answer")  # fmt: skip
    return None


def _looks_like_html(content_type: str, body: bytes) -> bool:
    return "html" in content_type.lower() or body.lstrip()[:1] == b"<"


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
    """One retry loop per request: every request a call sends — retries, challenge waits and redirect hops included
    — counts against ``max_attempts``, so a page never costs more than that many requests."""

    limiter: RateLimiter
    contact: str
    timeout: float = 30.0
    max_attempts: int = 8
    backoff_seconds: float = 1.0
    secret_params: tuple[str, ...] = ()
    credential_hint: str = ""
    defences: DefencePolicy | None = None  # the site's own anti-bot rules, before the generic ones
    url_guard: Callable[[str], str | None] | None = None  # reason to refuse a URL (every hop), or None
    challenge_wait_seconds: float = 5.0
    max_redirects: int = 5
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random | None = None

    def __post_init__(self) -> None:
        self.session = requests.Session()
        self.session.headers["User-Agent"] = user_agent(self.contact)
        self.rng = self.rng or random.Random()
        self.retries = 0
        self.requests_sent = 0

    @classmethod
    def from_settings(cls, settings: Any, limiter: RateLimiter, **extra: Any) -> PoliteClient:
        """A client with the contact, timeout and retry policy of ``settings`` (a ``pony_tasks.config.Settings``)."""
        return cls(
            limiter=limiter,
            contact=settings.scrape_contact,
            timeout=settings.http_timeout_seconds,
            max_attempts=settings.http_max_attempts,
            backoff_seconds=settings.http_backoff_seconds,
            challenge_wait_seconds=settings.http_challenge_wait_seconds,
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

    def _retry(self, attempt: int, what: str, url: str, retry_after: str | None = None, hold: float = 0.0) -> None:
        """Count a retry (or give up: the attempts are spent) and wait: the back-off here, or — ``hold`` — a quiet
        period for every request through the shared limiter."""
        if attempt >= self.max_attempts:
            raise HTTPFailure(f"{redact_url(url, self.secret_params)}: {what}; gave up after {attempt} requests")
        delay = max(hold, self._delay(attempt, retry_after))
        self.retries += 1
        logger.warning("%s: %s; retry %d in %.2f s", redact_url(url, self.secret_params), what, attempt, delay)
        if hold:
            self.limiter.hold(delay)
        else:
            self.sleep(delay)

    def _guard(self, url: str) -> None:
        reason = self.url_guard(url) if self.url_guard else None
        if reason:
            raise UnsafeURL(f"refused {redact_url(url, self.secret_params)}: {reason}")

    def _defence(self, response: requests.Response) -> Defence | None:
        content_type = response.headers.get("Content-Type", "")
        for policy in (self.defences, html_block_page):
            defence = policy(response.status_code, content_type, response.content) if policy else None
            if defence:
                return defence
        return None

    def get(
        self,
        url: str,
        params: dict[str, str] | None = None,
        *,
        auth: tuple[str, str] | None = None,
        max_bytes: int | None = None,
        parse_json: bool = False,
    ) -> requests.Response:
        """GET with the whole body read (``response.content``; with ``parse_json`` also ``response.json_body``).

        Retried on 429/5xx, timeouts, dropped connections, truncated bodies and (``parse_json``) bodies that do not
        parse — all in this one loop. Redirects are followed here, each hop checked by ``url_guard`` before it is
        requested; credentials are only sent to the first URL's host. A site defence stops the loop
        (:class:`SiteBlocked`) or waits the challenge out. A body over ``max_bytes`` raises :class:`BodyTooLarge`."""
        try:
            return self._get(url, params, auth, max_bytes, parse_json)
        finally:
            self.limiter.release()

    def _get(
        self, url: str, params: dict[str, str] | None, auth: tuple[str, str] | None, max_bytes: int | None,
        parse_json: bool,
    ) -> requests.Response:
        current = requests.Request("GET", url, params=params).prepare().url or url
        origin = urlsplit(current).netloc
        attempt = hops = 0
        while True:
            self._guard(current)
            attempt += 1
            self.limiter.wait()
            self.requests_sent += 1
            shown = redact_url(current, self.secret_params)
            try:
                response = self.session.get(
                    current, auth=auth if urlsplit(current).netloc == origin else None, timeout=self.timeout,
                    stream=True, allow_redirects=False,
                )  # fmt: skip
                if response.is_redirect:
                    response.close()
                    hops += 1
                    target = urljoin(current, response.headers.get("Location", ""))
                    if hops > self.max_redirects or attempt >= self.max_attempts:
                        raise HTTPFailure(f"{shown}: too many redirects (last to {redact_url(target)})",
                                          response.status_code)  # fmt: skip
                    current = target
                    continue
                _read_body(response, max_bytes, shown)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                self._retry(attempt, f"{type(exc).__name__}", current)
                continue
            defence = self._defence(response)
            if defence is not None and defence.kind == "challenge":
                wait = max(defence.seconds, self.challenge_wait_seconds)
                self._retry(attempt, f"HTTP {response.status_code}: {defence.message}", current, hold=wait)
                continue
            if defence is not None:
                until = datetime.now(UTC) + timedelta(seconds=defence.seconds) if defence.seconds else None
                when = f"; the block lasts until {until:%Y-%m-%d %H:%M:%S} UTC" if until else ""
                blocked = SiteBlocked(f"{shown}: the site is blocking us — {defence.message}{when}",
                                      response.status_code, until)  # fmt: skip
                if defence.seconds:  # other threads of this process must not send one more request into it
                    self.limiter.refuse(defence.seconds, blocked)
                raise blocked
            self.limiter.settled()
            if response.status_code in RETRY_STATUSES:
                self._retry(attempt, f"HTTP {response.status_code}", current, response.headers.get("Retry-After"))
                continue
            if response.status_code in (401, 403):
                hint = f" — set credentials: {self.credential_hint}" if self.credential_hint else ""
                raise AuthenticationRequired(
                    f"{shown} answered HTTP {response.status_code} {response.reason}{hint}", response.status_code
                )
            if parse_json:
                text = response.content.decode("utf-8", errors="replace")
                if 400 <= response.status_code < 500 and not text.lstrip().startswith(("{", "[")):
                    raise HTTPFailure(f"{shown} answered HTTP {response.status_code}: {text[:200]}",
                                      response.status_code)  # fmt: skip
                try:
                    response.json_body = json.loads(text)
                except ValueError as exc:
                    if attempt >= self.max_attempts:
                        raise MalformedBody(f"{shown}: body is not valid JSON ({exc})", text) from None
                    self._retry(attempt, f"malformed JSON ({exc})", current)
                    continue
            return response

    def download_to(self, url: str, partial: Path, *, auth: tuple[str, str] | None = None) -> None:
        """Stream ``url`` into the file ``partial``, resuming what it already holds (``Range``); a dropped or cut
        transfer is retried from where it stopped, through the same limiter, back-off and host checks as :meth:`get`
        (each redirect hop checked). Large files (a site's database export) never sit in memory."""
        current, attempt, hops = url, 0, 0
        try:
            while True:
                self._guard(current)
                attempt += 1
                self.limiter.wait()
                self.requests_sent += 1
                have = partial.stat().st_size if partial.exists() else 0
                headers = {"Range": f"bytes={have}-"} if have else {}
                shown = redact_url(current, self.secret_params)
                try:
                    sent_auth = auth if current == url else None
                    with self.session.get(current, headers=headers, timeout=self.timeout, stream=True,
                                          allow_redirects=False, auth=sent_auth) as response:  # fmt: skip
                        if response.is_redirect:
                            hops += 1
                            if hops > self.max_redirects:
                                raise HTTPFailure(f"{shown}: too many redirects", response.status_code)
                            current = urljoin(current, response.headers.get("Location", ""))
                            continue
                        self.limiter.settled()
                        if response.status_code == 416 and have:  # the partial file is already whole
                            return
                        if response.status_code in RETRY_STATUSES:
                            self._retry(attempt, f"HTTP {response.status_code}", current,
                                        response.headers.get("Retry-After"))  # fmt: skip
                            continue
                        if response.status_code not in (200, 206):
                            raise HTTPFailure(f"{shown} answered HTTP {response.status_code}", response.status_code)
                        declared = int(response.headers.get("Content-Length", "-1"))
                        written = 0
                        with open(partial, "ab" if response.status_code == 206 else "wb") as out:
                            for block in response.iter_content(1 << 20):
                                out.write(block)
                                written += len(block)
                        if 0 <= written < declared:
                            raise requests.exceptions.ChunkedEncodingError(f"{written} of {declared} bytes")
                    return
                except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                    self._retry(attempt, f"{type(exc).__name__} (resuming at byte "
                                         f"{partial.stat().st_size if partial.exists() else 0})", current)  # fmt: skip
        finally:
            self.limiter.release()

    def get_json(
        self, url: str, params: dict[str, str] | None = None, *, auth: tuple[str, str] | None = None
    ) -> tuple[Any, str]:
        """The decoded JSON body and the (redacted) URL it came from; see :meth:`get`. If the body never parses,
        :class:`MalformedBody` carries the last one."""
        response = self.get(url, params, auth=auth, parse_json=True)
        return response.json_body, redact_url(response.url, self.secret_params)
