"""All four fake boorus at once, for the demo and end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pony_tasks.fakes.corpus import SampleCorpus
from pony_tasks.fakes.server import FakeBooru, Faults

SITES = ("danbooru", "e621", "derpibooru", "gelbooru")


@contextmanager
def running_fake_boorus(
    corpus: SampleCorpus | None = None, faults: Faults | None = None, **options: object
) -> Iterator[dict[str, FakeBooru]]:
    """Start a fake server per site (sharing one corpus); yields {site: server}; stops them all on exit."""
    corpus = corpus or SampleCorpus()
    servers: dict[str, FakeBooru] = {}
    try:
        for site in SITES:
            servers[site] = FakeBooru(site, corpus, faults or Faults(), **options)  # type: ignore[arg-type]
            servers[site].start()
        yield servers
    finally:
        for server in servers.values():
            server.stop()
