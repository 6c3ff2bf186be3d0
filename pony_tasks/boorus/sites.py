"""Sites as data: a booru is an engine family (the code that speaks its API) plus a row of settings — name, base URL,
hosts, rate limit, normalisation metric, caption source tag. The four sites we started with are four such rows; a
user adds another instance of an engine in ``pony.toml`` and gets scraping, fetching, normalisation (its own
cohorts), works, captions and a scrape DAG without a code change::

    [sites.furbooru]
    engine = "philomena"
    base_url = "https://furbooru.org"
    hosts = ["furbooru.org"]
    source = "source_furry"
    filter_id = "2"             # Philomena: the site's public "Everything" filter

The engines and the instances they serve (their code is public: Danbooru, e621ng, Philomena, Gelbooru 0.2's dapi):

- ``danbooru``: danbooru.donmai.us, safebooru.donmai.us (Danbooru's own safe mirror);
- ``e621``: e621.net, e926.net (its safe mirror), e6ai.net;
- ``philomena``: derpibooru.org, furbooru.org, tantabus.ai, manebooru.art;
- ``gelbooru``: gelbooru.com, safebooru.org, rule34.xxx (Gelbooru 0.2-style dapi).

This module holds no settings object (``pony_tasks.config`` reads the rows); adapters get a row through
``pony_tasks.boorus.adapters.adapter_for``.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Engine = Literal["danbooru", "e621", "philomena", "gelbooru"]
ENGINES: tuple[str, ...] = ("danbooru", "e621", "philomena", "gelbooru")
Metric = Literal["favorites", "score", "up_votes", "wilson_score"]
Source = Literal["source_pony", "source_furry", "source_cartoon", "source_anime"]
SITE_NAME = re.compile(r"[a-z][a-z0-9_]{1,39}")
HOST = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")

# What each engine's instances measure popularity by, unless the row says otherwise (favourites where the site
# counts them; Philomena's Wilson bound of up/down votes — its own sort; Gelbooru's score, all it exposes).
ENGINE_METRICS: dict[str, str] = {"danbooru": "favorites", "e621": "favorites", "philomena": "wilson_score",
                                  "gelbooru": "score"}  # fmt: skip
# Requests/second by engine when the row gives none (e621 asks for ~1/s; Philomena allows 20 searches per 10 s,
# we ask for half).
ENGINE_RATES: dict[str, float] = {"danbooru": 2.0, "e621": 1.0, "philomena": 1.0, "gelbooru": 2.0}


class SiteConfig(BaseModel):
    """One booru: an instance of an engine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: Engine = Field(description="The API family: danbooru, e621, philomena or gelbooru.")
    base_url: str = Field(description="The API's base URL, e.g. https://furbooru.org.")
    hosts: list[str] = Field(default_factory=list, description="Domain suffixes its pages and files may come from.")
    rate_per_second: float | None = Field(None, gt=0, description="Requests/second (default: the engine's).")
    metric: Metric | None = Field(None, description="Popularity metric for normalisation (default: the engine's).")
    source: Source | None = Field(
        None, description="The caption source tag of its posts; unset: decided by the post's tags (anime otherwise)."
    )
    file_base_url: str | None = Field(None, description="File server for URLs rebuilt from md5 + ext (e621 engine).")
    filter_id: str | None = Field(None, description="Philomena: the public filter that hides nothing.")
    enabled: bool = Field(True, description="False: known (its stored posts stay usable) but not scraped.")

    @field_validator("base_url", "file_base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"https?://[^/]+", value):
            raise ValueError(f"{value!r} is not an http(s):// URL")
        return value.rstrip("/") if value else value

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        for host in value:
            if not HOST.fullmatch(host):
                raise ValueError(f"{host!r} is not a lower-case host name or domain suffix (no scheme, port or "
                                 "path), e.g. furbooru.org")  # fmt: skip
        return value

    @property
    def effective_metric(self) -> str:
        return self.metric or ENGINE_METRICS[self.engine]

    @property
    def effective_rate(self) -> float:
        return self.rate_per_second or ENGINE_RATES[self.engine]


DEFAULT_SITES: dict[str, SiteConfig] = {
    "danbooru": SiteConfig(engine="danbooru", base_url="https://danbooru.donmai.us", hosts=["donmai.us"]),
    "e621": SiteConfig(engine="e621", base_url="https://e621.net", hosts=["e621.net", "e926.net"],
                       source="source_furry"),  # fmt: skip
    "derpibooru": SiteConfig(engine="philomena", base_url="https://derpibooru.org",
                             hosts=["derpibooru.org", "derpicdn.net"], source="source_pony", filter_id="56027"),
    "gelbooru": SiteConfig(engine="gelbooru", base_url="https://gelbooru.com", hosts=["gelbooru.com"]),
}  # fmt: skip


def check_site_name(name: str) -> str:
    if not SITE_NAME.fullmatch(name):
        raise ValueError(f"site name {name!r} must be lower-case letters, digits and _ (2–40, a letter first), "
                         "e.g. furbooru")  # fmt: skip
    return name
