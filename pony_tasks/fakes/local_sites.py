"""All four fake boorus at once, for the demo and end-to-end tests."""

from __future__ import annotations

import json
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


# The fakes run on this machine, so pipelines pointed at them may ask faster than real sites allow; e621's fake,
# like the real site, answers 503 above 2 requests/s. The sample's images are tiny; its 'oversized' files ~6 MB.
FAKE_RATE_PER_SECOND = 25.0
FAKE_E621_RATE_PER_SECOND = 1.9
FAKE_IMAGE_RATE_PER_SECOND = 400.0
FAKE_IMAGE_MAX_BYTES = 2 * 1024 * 1024
# Like the real sites, the fakes want these: Gelbooru an api_key and a numeric user_id, e621 a contact that names
# its operator (not the placeholder).
FAKE_CREDENTIALS = {"gelbooru": "1234:fake-gelbooru-api-key"}
FAKE_CONTACT = "pony-pipeline demo against fake boorus on 127.0.0.1"


def fake_site_overrides(servers: dict[str, FakeBooru]) -> dict[str, object]:
    """Settings values that point the pipeline at running fakes (for ``Settings.replace``)."""
    return fake_site_overrides_for({site: server.base_url for site, server in servers.items()})


def fake_site_overrides_for(base_urls: dict[str, str]) -> dict[str, object]:
    """The same for fakes at these base URLs (``make airflow`` starts them on fixed ports)."""
    return {
        "booru_base_urls": dict(base_urls),
        "booru_rate_limits": {site: FAKE_E621_RATE_PER_SECOND if site == "e621" else FAKE_RATE_PER_SECOND
                              for site in base_urls},
        "image_host_rate_limit": FAKE_IMAGE_RATE_PER_SECOND,
        "image_max_bytes": FAKE_IMAGE_MAX_BYTES,
        "booru_credentials": {site: FAKE_CREDENTIALS[site] for site in base_urls if site in FAKE_CREDENTIALS},
        "booru_file_base_urls": {"e621": base_urls["e621"]} if "e621" in base_urls else {},
        "scrape_contact": FAKE_CONTACT,
    }  # fmt: skip


def as_environment(overrides: dict[str, object]) -> dict[str, str]:
    """The same values as ``PONY_*`` variables, for child processes (Airflow stage commands)."""
    return {f"PONY_{name.upper()}": json.dumps(value) if isinstance(value, dict | list) else str(value)
            for name, value in overrides.items()}  # fmt: skip
