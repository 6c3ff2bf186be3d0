"""Helpers for tests: running the real CLI in a child process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def run_pony(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120):
    """Run the real `pony` CLI in a child process."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PONY_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pony_tasks", *args],
        env=full_env,
        cwd=cwd or PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def dsn_to_uri(dsn: str, password: str | None = None) -> str:
    """A postgresql:// URI for a libpq DSN (Unix-socket hosts go in the query string)."""
    from urllib.parse import quote

    from psycopg2.extensions import parse_dsn

    parts = parse_dsn(dsn)
    host, port = parts.get("host", "127.0.0.1"), parts.get("port")
    user = parts.get("user", "postgres") + (f":{password}" if password else "")
    if host.startswith("/"):
        query = f"?host={quote(host)}" + (f"&port={port}" if port else "")
        return f"postgresql://{user}@/{parts['dbname']}{query}"
    return f"postgresql://{user}@{host}{':' + port if port else ''}/{parts['dbname']}"


SITES = ("danbooru", "e621", "derpibooru", "gelbooru")


def fast_settings(settings, servers: dict, rate: float = 40.0, **extra):
    """Settings pointing at fake servers, with short back-off so retry-heavy tests stay quick (and the credentials
    and contact the fakes, like the real sites, require)."""
    from pony_tasks.fakes.local_sites import FAKE_CONTACT, FAKE_CREDENTIALS

    extra.setdefault("booru_credentials", {s: FAKE_CREDENTIALS[s] for s in servers if s in FAKE_CREDENTIALS})
    extra.setdefault("scrape_contact", FAKE_CONTACT)
    if "e621" in servers:
        extra.setdefault("booru_file_base_urls", {"e621": servers["e621"].base_url})
    return settings.replace(
        booru_base_urls={site: server.base_url for site, server in servers.items()},
        booru_rate_limits={site: (1.9 if site == "e621" else rate) for site in servers},
        http_backoff_seconds=0.01,
        http_timeout_seconds=1.0,
        image_host_rate_limit=500.0,
        **extra,
    )
