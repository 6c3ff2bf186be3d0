"""Fake boorus: each site's API, quirks included, plus its image files, over real HTTP on 127.0.0.1.

Seeded fault injection (429 with Retry-After, 503, slow answers, truncated bodies, malformed JSON, corrupt image
bytes) makes retry paths testable; every request is logged with its arrival time so tests can check rate limits.
Run one from the shell with ``pony fake-booru SITE``.

The live sites' rules the fakes reproduce: Gelbooru answers 401 with body ``[]`` without ``api_key``/``user_id``
(``require_auth`` defaults to on there); e621 answers a generic User-Agent with an HTML 403; Philomena's anti-bot
middleware (``AntiBot``: 501 HTML challenges, then a 15-minute block answered 500 with an empty body, restarted by
every request during it); deleted posts hidden as each site hides them (e621 without a ``status:`` tag, Derpibooru's
search always — its ``/api/v1/json/images/<id>`` answers a stub —, Gelbooru's search, which lists them on
``deleted=show&last_id=``); single posts by id; Derpibooru's tags API with categories.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pony_tasks.fakes.corpus import CorpusPost, SampleCorpus
from pony_tasks.fakes.render import derpibooru_tag_id, derpibooru_tags, file_path, render

GENERIC_AGENTS = re.compile(r"^(python-requests|python-urllib|curl|wget|mozilla|go-http-client|java)", re.I)
LIMITS = {"danbooru": 200, "e621": 320, "derpibooru": 50, "gelbooru": 100}
MAX_PAGE = {"danbooru": 1000, "e621": 750}
DEFAULT_FILTER_HIDES = ("explicit",)  # Derpibooru's default filter hides these from callers without filter_id


@dataclass
class Faults:
    """Per-request probabilities of each fault, drawn from a seeded generator."""

    seed: int = 0
    too_many_requests: float = 0.0  # 429 with Retry-After
    unavailable: float = 0.0  # 503
    slow: float = 0.0  # answer after `slow_seconds`
    truncated: float = 0.0  # Content-Length promises more than is sent, then the connection closes
    malformed: float = 0.0  # 200 with a body that is not JSON
    corrupt_image: float = 0.0  # image bytes flipped in flight
    retry_after: str = "1"
    slow_seconds: float = 2.0

    @classmethod
    def heavy(cls, seed: int = 7) -> Faults:
        return cls(seed, 0.06, 0.08, 0.04, 0.08, 0.08, 0.1, retry_after="1", slow_seconds=1.5)


@dataclass
class AntiBot:
    """Philomena's anti-bot middleware (its openapi.yaml): the first ``challenges`` API requests get a 501 HTML
    challenge; after them (or after a request sooner than ``min_wait_seconds`` after a challenge) every request
    gets a block, 500 with an empty body, for ``block_seconds`` — restarted by each request during it."""

    challenges: int = 2
    pass_first: int = 0  # requests let through before the middleware starts challenging
    min_wait_seconds: float = 5.0
    block_seconds: float = 15 * 60
    block_after_challenges: bool = True
    _given: int = 0
    _last_challenge: float | None = None
    _blocked_until: float = 0.0

    def answer(self, now: float) -> str | None:
        """'challenge', 'block' or None (let the request through)."""
        if self.pass_first > 0:
            self.pass_first -= 1
            return None
        if now < self._blocked_until:
            self._blocked_until = now + self.block_seconds
            return "block"
        too_soon = self._last_challenge is not None and now - self._last_challenge < self.min_wait_seconds
        if too_soon or (self._given >= self.challenges and self.block_after_challenges and self._given):
            self._blocked_until = now + self.block_seconds
            return "block"
        if self._given < self.challenges:
            self._given += 1
            self._last_challenge = now
            return "challenge"
        return None


CHALLENGE_PAGE = b"<!DOCTYPE html><html><head><title>Checking your browser</title></head><body>...</body></html>"


@dataclass
class RequestLogEntry:
    at: float  # time.monotonic() when the request arrived
    path: str
    status: int
    fault: str | None
    user_agent: str


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most arrivals within any ``window`` seconds."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def min_gap(times: list[float]) -> float:
    """The shortest time between two consecutive arrivals (inf with fewer than two)."""
    times = sorted(times)
    return min((b - a for a, b in zip(times, times[1:], strict=False)), default=float("inf"))


def rate_respected(times: list[float], rate: float, tolerance: float = 0.1) -> bool:
    """Whether arrivals fit a limit of ``rate``/s with a burst of one: at most floor(rate)+1 in any second, and
    consecutive arrivals at least 1/rate apart (less ``tolerance`` for jitter between client and server)."""
    return max_in_window(times) <= int(rate) + 1 and min_gap(times) >= (1 - tolerance) / rate


@dataclass
class FakeBooru:
    site: str
    corpus: SampleCorpus = field(default_factory=SampleCorpus)
    faults: Faults = field(default_factory=Faults)
    require_auth: bool | None = None  # default: only where the real site requires it (Gelbooru)
    antibot: AntiBot | None = None  # Philomena's challenge/block middleware, for API requests
    cdn_block: bool = False  # every API request gets an HTML 403 (a Cloudflare / User-Agent block)
    redirects: dict[str, str] = field(default_factory=dict)  # path -> Location (302), for redirect tests
    now: datetime | None = None  # the server's clock for vote growth; default: the corpus reference time
    latency_seconds: float = 0.0
    hard_rate_limit: float | None = None  # e621 answers 503 above 2 requests/s
    log: list[RequestLogEntry] = field(default_factory=list)
    # e621's database export: {file name: gzipped bytes}; served at /db_export/<name> (with Range), listed at
    # /db_exports.json ("index", e621ng since 2026-06) or as the directory /db_export/ ("listing", dated names)
    exports: dict[str, bytes] = field(default_factory=dict)
    export_layout: str = "index"
    cut_exports: bool = False  # the first transfer of each export file stops half way (a dropped connection)

    def __post_init__(self) -> None:
        self.posts = sorted(self.corpus.by_site(self.site), key=lambda p: p.post_id)
        self.ids = [p.post_id for p in self.posts]
        self._files: dict[str, CorpusPost] = {}
        self._rng = random.Random(self.faults.seed)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        if self.hard_rate_limit is None and self.site == "e621":
            self.hard_rate_limit = 2.0
        if self.require_auth is None:
            self.require_auth = self.site == "gelbooru"
        self._tag_names: dict[int, tuple[str, str | None]] = {}
        self._cut_done: set[str] = set()

    def warm(self) -> None:
        """Generate every image now (metadata carries their hashes), so answers are not slowed by first use."""
        for post in self.posts:
            self.corpus.file(post)

    def set_faults(self, faults: Faults) -> None:
        """Change fault injection on a running server (restarting the seeded sequence)."""
        with self._lock:
            self.faults, self._rng = faults, random.Random(faults.seed)

    # Lifecycle -----------------------------------------------------------------------------------------------------
    def start(self, port: int = 0) -> str:
        handler = type("Handler", (_Handler,), {"booru": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name=f"fake-{self.site}", daemon=True).start()
        return self.base_url

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeBooru:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def clock(self) -> datetime:
        return self.now or self.corpus.reference_time

    # Observability -------------------------------------------------------------------------------------------------
    def api_requests(self) -> list[RequestLogEntry]:
        return [entry for entry in self.log if not self._is_file_path(entry.path)]

    def max_requests_in_window(self, window: float = 1.0, entries: list[RequestLogEntry] | None = None) -> int:
        """The most requests that arrived within any ``window`` seconds."""
        return max_in_window([e.at for e in (entries if entries is not None else self.log)], window)

    def min_gap(self, entries: list[RequestLogEntry] | None = None) -> float:
        """The shortest time between two consecutive request arrivals (inf with fewer than two)."""
        return min_gap([e.at for e in (entries if entries is not None else self.log)])

    def rate_respected(self, rate: float, tolerance: float = 0.1) -> bool:
        return rate_respected([e.at for e in self.log], rate, tolerance)

    # Faults --------------------------------------------------------------------------------------------------------
    def _draw_fault(self, for_file: bool) -> str | None:
        f = self.faults
        with self._lock:
            roll = self._rng.random()
        kinds = [("429", f.too_many_requests), ("503", f.unavailable), ("slow", f.slow), ("truncated", f.truncated)]
        kinds.append(("corrupt", f.corrupt_image) if for_file else ("malformed", f.malformed))
        for name, probability in kinds:
            if roll < probability:
                return name
            roll -= probability
        return None

    def _is_file_path(self, path: str) -> bool:
        return path.startswith(("/data/", "/img/", "/images/"))

    def file_for_path(self, path: str) -> CorpusPost | None:
        if not self._files:
            for post in self.posts:
                self._files[file_path(self.site, post, self.corpus.file(post))] = post
        return self._files.get(path)

    # API -----------------------------------------------------------------------------------------------------------
    def answer(self, path: str, query: dict[str, str], headers: dict[str, str]) -> tuple[int, Any]:
        """(status, JSON-able body, or bytes sent as they are) for an API request."""
        if self.site in ("danbooru", "e621") and (path == "/posts.json" or re.fullmatch(r"/posts/\d+\.json", path)):
            if self.site == "e621" and (not headers.get("user-agent") or GENERIC_AGENTS.match(headers["user-agent"])):
                return 403, b"<html><body><h1>403 Forbidden</h1>Please use a descriptive User-Agent.</body></html>"
            if self.require_auth and "authorization" not in headers:
                return 401, {"success": False, "message": "Authentication required"}
            if path != "/posts.json":
                return self._single(int(re.findall(r"\d+", path)[0]))
            return self._danbooru_like(query)
        if self.site == "derpibooru" and path.startswith("/api/v1/json/"):
            if self.require_auth and "key" not in query:
                return 401, {"error": "API key required"}
            if path == "/api/v1/json/search/images":
                return self._derpibooru(query)
            if path == "/api/v1/json/search/tags":
                return self._derpibooru_tags(query)
            if match := re.fullmatch(r"/api/v1/json/images/(\d+)", path):
                return self._single(int(match.group(1)))
        if self.site == "gelbooru" and path == "/index.php" and query.get("page") == "dapi":
            if self.require_auth and not (query.get("api_key") and query.get("user_id", "").isdigit()):
                return 401, []  # what the real site answers since 2025-06
            if query.get("deleted") == "show":
                return self._gelbooru_deleted(query)
            return self._gelbooru(query)
        return 404, {"success": False, "message": f"no route {path}"}

    def _visible(self) -> list[CorpusPost]:
        """Posts uploaded by the server's clock (a site cannot serve posts from its future)."""
        clock = self.clock
        return self.posts if clock >= self.posts[-1].created_at else [p for p in self.posts if p.created_at <= clock]

    def _searchable(self, show_deleted: bool = False) -> list[CorpusPost]:
        """What a search shows: e621, Derpibooru and Gelbooru leave deleted posts out (Danbooru flags them)."""
        visible = self._visible()
        if show_deleted or self.site == "danbooru":
            return visible
        clock = self.clock
        return [p for p in visible if not p.is_deleted_at(clock)]

    def _records(self, posts: list[CorpusPost]) -> list[dict[str, Any]]:
        return [render(self.site, p, self.corpus.file(p), self.base_url, self.clock) for p in posts]

    def _single(self, post_id: int) -> tuple[int, Any]:
        """One post by id, deleted ones included (Derpibooru: as a stub)."""
        post = next((p for p in self._visible() if p.post_id == post_id), None)
        if post is None:
            return 404, {"success": False, "message": "That record was not found."}
        record = self._records([post])[0]
        return 200, {"danbooru": record, "e621": {"post": record}, "derpibooru": {"image": record,
                                                                                  "interactions": []}}[self.site]

    def _danbooru_like(self, query: dict[str, str]) -> tuple[int, Any]:
        limit = min(int(query.get("limit", 20)), LIMITS[self.site])
        page = query.get("page", "1")
        status = next((t.split(":", 1)[1] for t in query.get("tags", "").split() if t.startswith("status:")), None)
        visible = self._searchable(show_deleted=status in ("any", "all", "deleted"))
        if status == "deleted":
            visible = [p for p in visible if p.is_deleted_at(self.clock)]
        if page.startswith("a"):
            chosen = [p for p in visible if p.post_id > int(page[1:])][:limit]
        elif page.startswith("b"):
            chosen = [p for p in visible if p.post_id < int(page[1:])][-limit:]
        else:
            number = int(page)
            if number > MAX_PAGE[self.site]:
                return 410, {
                    "success": False,
                    "error": "PaginationExtension::PaginationError",
                    "message": f"You cannot go beyond page {MAX_PAGE[self.site]}.",
                }
            newest_first = visible[::-1]
            chosen = newest_first[(number - 1) * limit : number * limit][::-1]
        records = self._records(sorted(chosen, key=lambda p: -p.post_id))  # cursor pages come back descending
        return 200, (records if self.site == "danbooru" else {"posts": records})

    def _derpibooru(self, query: dict[str, str]) -> tuple[int, Any]:
        per_page = min(int(query.get("per_page", 25)), LIMITS["derpibooru"])
        page = max(1, int(query.get("page", 1)))
        posts = self._searchable()
        q = query.get("q", "*")
        for clause in (c.strip() for c in q.split(",")):
            if match := re.fullmatch(r"id\.(gt|lt|gte|lte):(\d+)", clause):
                op, value = match.group(1), int(match.group(2))
                test = {"gt": int.__gt__, "lt": int.__lt__, "gte": int.__ge__, "lte": int.__le__}[op]
                posts = [p for p in posts if test(p.post_id, value)]
        if "filter_id" not in query and "key" not in query:
            posts = [p for p in posts if p.rating not in DEFAULT_FILTER_HIDES]
        if query.get("sd", "desc") == "desc":
            posts = posts[::-1]
        chosen = posts[(page - 1) * per_page : page * per_page]
        return 200, {"images": self._records(chosen), "interactions": [], "total": len(posts)}

    def _derpibooru_tags(self, query: dict[str, str]) -> tuple[int, Any]:
        """``q=id:1 || id:2`` → the tags with their categories (Philomena's tag JSON, the fields we read)."""
        if not self._tag_names:
            for post in self.posts:
                for name, category in derpibooru_tags(post):
                    self._tag_names[derpibooru_tag_id(name)] = (name, category)
        per_page = min(int(query.get("per_page", 25)), LIMITS["derpibooru"])
        ids = [int(i) for i in re.findall(r"\bid:(\d+)", query.get("q", ""))]
        found = [i for i in dict.fromkeys(ids) if i in self._tag_names][:per_page]
        tags = [{"id": i, "name": self._tag_names[i][0], "slug": self._tag_names[i][0].replace(":", "-colon-"),
                 "category": self._tag_names[i][1], "images": 1, "aliased_tag": None} for i in found]  # fmt: skip
        return 200, {"tags": tags, "total": len(found)}

    def _gelbooru(self, query: dict[str, str]) -> tuple[int, Any]:
        limit = min(int(query.get("limit", 100)), LIMITS["gelbooru"])
        pid = int(query.get("pid", 0))
        posts = self._searchable()
        if "id" in query:
            posts = [p for p in posts if p.post_id == int(query["id"])]
        ascending = False
        for token in query.get("tags", "").split():
            if match := re.fullmatch(r"id:([<>]=?)(\d+)", token):
                op, value = match.group(1), int(match.group(2))
                test = {">": int.__gt__, "<": int.__lt__, ">=": int.__ge__, "<=": int.__le__}[op]
                posts = [p for p in posts if test(p.post_id, value)]
            elif token == "sort:id:asc":
                ascending = True
        if not ascending:
            posts = posts[::-1]
        chosen = posts[pid * limit : (pid + 1) * limit]
        body: dict[str, Any] = {"@attributes": {"limit": limit, "offset": pid * limit, "count": len(posts)}}
        if len(chosen) == 1:
            body["post"] = self._records(chosen)[0]  # one result: an object, not a list
        elif chosen:
            body["post"] = self._records(chosen)
        return 200, body  # no results: no "post" key at all

    def _gelbooru_deleted(self, query: dict[str, str]) -> tuple[int, Any]:
        """``deleted=show&last_id=N``: deletion entries above N (numbered in deletion order), each with the md5."""
        clock = self.clock
        gone = sorted((p for p in self._visible() if p.is_deleted_at(clock)), key=lambda p: (p.deleted_at, p.post_id))
        after = int(query.get("last_id", 0))
        limit = min(int(query.get("limit", 100)), LIMITS["gelbooru"])
        entries = [{"deleted": n, "md5": self.corpus.file(p).md5} for n, p in enumerate(gone, start=1) if n > after]
        body: dict[str, Any] = {"@attributes": {"limit": limit, "offset": 0, "count": len(entries)}}
        if entries:
            body["post"] = entries[:limit]
        return 200, body


class _Handler(BaseHTTPRequestHandler):
    booru: FakeBooru
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the booru keeps its own log
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        booru = self.booru
        arrived = time.monotonic()
        split = urlsplit(self.path)
        if split.path == "/_fake/log":  # for tools in another process: the request log, not itself logged
            entries = [{"at": e.at, "path": e.path, "status": e.status, "fault": e.fault} for e in booru.log]
            return self._send(200, json.dumps(entries).encode(), "application/json")
        headers = {k.lower(): v for k, v in self.headers.items()}
        if booru.exports and (split.path == "/db_exports.json" or split.path.startswith("/db_export/")):
            return self._export(split.path, headers)
        is_file = booru._is_file_path(split.path)
        fault = booru._draw_fault(is_file)
        status = 200
        # Logged on arrival, before any answer, so a client never sees a response the log does not yet hold.
        entry = RequestLogEntry(arrived, split.path, 0, fault, headers.get("user-agent", ""))
        with booru._lock:
            recent = [e for e in booru.log if arrived - e.at < 1.0 and not booru._is_file_path(e.path)]
            booru.log.append(entry)
        try:
            if booru.hard_rate_limit and not is_file:
                if len(recent) >= booru.hard_rate_limit:
                    fault, status = "rate-limited", 503
                    entry.fault = fault
                    return self._send(503, b'{"success":false,"reason":"rate limited"}', "application/json")
            if booru.latency_seconds:
                time.sleep(booru.latency_seconds)
            if fault == "429":
                status = 429
                return self._send(429, b"Too Many Requests", "text/plain", {"Retry-After": booru.faults.retry_after})
            if fault == "503":
                status = 503
                return self._send(503, b"Service Unavailable", "text/plain")
            if fault == "slow":
                time.sleep(booru.faults.slow_seconds)
            if split.path in booru.redirects:
                status = 302
                return self._send(302, b"", "text/plain", {"Location": booru.redirects[split.path]})
            if is_file:
                post = booru.file_for_path(split.path)
                if post is None:
                    status = 404
                    return self._send(404, b"not found", "text/plain")
                data = booru.corpus.file(post).data
                if fault == "corrupt":  # damage in transit: different bytes each time
                    with booru._lock:
                        damage = random.Random(booru._rng.getrandbits(32))
                    damaged = bytearray(data)
                    for _ in range(16):
                        damaged[damage.randrange(len(damaged))] ^= 0xFF
                    data = bytes(damaged)
                kind = "image/png" if post.file_ext == "png" else "image/jpeg"
                return self._send(200, data, kind, truncate=fault == "truncated")
            if booru.cdn_block:
                status = 403
                return self._send(403, b"<html><title>Attention Required! | Cloudflare</title></html>", "text/html")
            if booru.antibot is not None:
                with booru._lock:
                    verdict = booru.antibot.answer(arrived)
                if verdict == "challenge":
                    status = 501
                    entry.fault = "challenge"
                    return self._send(501, CHALLENGE_PAGE, "text/html")
                if verdict == "block":
                    status = 500
                    entry.fault = "blocked"
                    return self._send(500, b"", "text/html")
            query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
            status, body = booru.answer(split.path, query, headers)
            if isinstance(body, bytes):
                return self._send(status, body, "text/html")
            payload = (body if isinstance(body, str) else json.dumps(body)).encode()
            if fault == "malformed" and status == 200:
                payload = payload[: max(1, len(payload) // 2)] + b"<html>upstream error"
            return self._send(status, payload, "application/json", truncate=fault == "truncated")
        finally:
            entry.status = status

    def _export(self, path: str, headers: dict[str, str]) -> None:
        """e621's export files: the index or listing, and each file with Range requests honoured."""
        booru = self.booru
        booru.log.append(RequestLogEntry(time.monotonic(), path, 200, None, headers.get("user-agent", "")))
        if path == "/db_exports.json":
            if booru.export_layout != "index":
                return self._send(404, b'{"success":false}', "application/json")
            entries = [{"name": name.split(".")[0], "file_name": name, "file_size": len(data),
                        "checksum": hashlib.sha256(data).hexdigest(), "updated_at": "2026-11-01T04:00:00.000Z",
                        "url": f"/db_export/{name}"} for name, data in sorted(booru.exports.items())]  # fmt: skip
            return self._send(200, json.dumps(entries).encode(), "application/json")
        name = path.removeprefix("/db_export/")
        if name == "":
            links = "".join(f'<a href="{n}">{n}</a>\n' for n in sorted(booru.exports))
            return self._send(200, f"<html><body><pre>{links}</pre></body></html>".encode(), "text/html")
        data = booru.exports.get(name)
        if data is None:
            return self._send(404, b"not found", "text/plain")
        start = 0
        ranged = re.fullmatch(r"bytes=(\d+)-", headers.get("range", ""))
        if ranged:
            start = int(ranged.group(1))
            if start >= len(data):
                return self._send(416, b"", "text/plain", {"Content-Range": f"bytes */{len(data)}"})
        body = data[start:]
        cut = booru.cut_exports and name not in booru._cut_done
        booru._cut_done.add(name)
        status = 206 if ranged else 200
        extra = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"} if ranged else {}
        return self._send(status, body, "application/gzip", extra, truncate=cut)

    def _send(
        self,
        status: int,
        payload: bytes,
        content_type: str,
        extra: dict[str, str] | None = None,
        truncate: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        if truncate:
            self.send_header("Connection", "close")
        self.end_headers()
        try:
            self.wfile.write(payload[: len(payload) // 2] if truncate else payload)
        except (BrokenPipeError, ConnectionResetError):
            truncate = True  # the client gave up (size cap, timeout): nothing more to say
        if truncate:
            self.close_connection = True
