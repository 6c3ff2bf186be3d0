from __future__ import annotations

from collections.abc import Iterator

import pytest

from pony_tasks.config import Settings
from pony_tasks.db import connect, upgrade
from pony_tasks.fakes.corpus import SampleCorpus
from pony_tasks.fakes.server import FakeBooru, Faults

SITES = ("danbooru", "e621", "derpibooru", "gelbooru")


@pytest.fixture(scope="session")
def corpus() -> SampleCorpus:
    return SampleCorpus()


def fast_settings(settings: Settings, servers: dict[str, FakeBooru], rate: float = 40.0, **extra) -> Settings:
    """Settings pointing at fake servers, with short back-off so retry-heavy tests stay quick."""
    return settings.replace(
        **{
            "booru_base_urls": {site: server.base_url for site, server in servers.items()},
            "booru_rate_limits": {site: (1.9 if site == "e621" else rate) for site in servers},
            "http_backoff_seconds": 0.01,
            "http_timeout_seconds": 1.0,
            "image_host_rate_limit": 500.0,
            **extra,
        }
    )


@pytest.fixture
def migrated(settings: Settings) -> Settings:
    with connect(settings) as conn:
        upgrade(conn)
    return settings


@pytest.fixture
def fake(corpus: SampleCorpus, request) -> Iterator[FakeBooru]:
    """A clean fake server for the site given by indirect parametrisation (default danbooru)."""
    site = getattr(request, "param", "danbooru")
    with FakeBooru(site, corpus, Faults()) as server:
        yield server
