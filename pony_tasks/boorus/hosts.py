"""Which hosts may be asked for a site's pages and files, as data in settings, and the private-address check.

Sites move their file servers (Gelbooru moved img3/img4 → img2 and video-cdn3 → video-cdn4 and asked clients not to
hard-code hosts), so a site's hosts are domain suffixes (its row's ``hosts`` in ``settings.sites``, or
``booru_file_hosts``: ``gelbooru.com`` allows ``img2.gelbooru.com``), not fixed names: an operator fixes a move in
settings, without a release. The site's configured API base URL (and the one last scraped) is allowed too.

A name that resolves to a loopback, private, link-local, reserved, multicast or unspecified address is refused
(a redirect or a record must not make us request an internal service: SSRF) — unless it is exactly the configured
base URL of a site, which is how the fake boorus and tests on 127.0.0.1 are reached. Every redirect hop is checked
again (``PoliteClient`` follows redirects itself).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit


def _endpoint(url: str) -> tuple[str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return (parts.hostname or "").lower().rstrip("."), port


def address_refusal(host: str, port: int | None, resolve: Callable = socket.getaddrinfo) -> str | None:
    """Why ``host`` must not be contacted (it resolves to a non-public address), or None. A name that does not
    resolve is left to the request itself to fail (and be retried)."""
    try:
        infos = resolve(host, port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        for kind in ("loopback", "private", "link_local", "reserved", "multicast", "unspecified"):
            if getattr(address, f"is_{kind}"):
                return f"{host} resolves to {address}, a {kind.replace('_', '-')} address"
    return None


@dataclass(frozen=True)
class HostRules:
    """The hosts each site may be asked for: domain suffixes plus the site's own API base URLs."""

    suffixes: Mapping[str, tuple[str, ...]]
    site_endpoints: Mapping[str, frozenset[tuple[str, int | None]]] = field(default_factory=dict)
    resolve: Callable = socket.getaddrinfo

    @classmethod
    def from_settings(cls, settings, scraped_from: Mapping[str, str] | None = None) -> HostRules:
        """Rules from ``settings.booru_file_hosts``; each site's configured base URL (or its default) and the base
        URL it was last scraped from (``booru_cursor.base_url``) are the site's own endpoints."""
        endpoints: dict[str, frozenset[tuple[str, int | None]]] = {}
        for site, row in settings.sites.items():
            urls = {settings.booru_base_urls.get(site, row.base_url)}
            if scraped_from and scraped_from.get(site):
                urls.add(scraped_from[site])
            endpoints[site] = frozenset(_endpoint(url) for url in urls)
        suffixes = {site: tuple(s.lower() for s in values) for site, values in settings.booru_file_hosts.items()}
        return cls(suffixes, endpoints)

    def refusal(self, site: str, url: str) -> str | None:
        """Why ``url`` must not be requested for ``site``, or None when it may."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            return f"scheme {parts.scheme!r} is not http or https"
        host, port = _endpoint(url)
        if (host, port) in self.site_endpoints.get(site, ()):
            return None  # the site's configured base URL: trusted even on 127.0.0.1 (fakes, tests)
        if not any(host == s or host.endswith("." + s) for s in self.suffixes.get(site, ())):
            allowed = ", ".join(self.suffixes.get(site, ())) or "none"
            return f"{host!r} is not a {site} host (booru_file_hosts for {site}: {allowed})"
        return address_refusal(host, port, self.resolve)

    def guard(self, site: str) -> Callable[[str], str | None]:
        return lambda url: self.refusal(site, url)
