"""One small adapter per engine family; :func:`adapter_for` builds one for a configured site (a row of
``settings.sites``: the engine's code with that site's name, base URL, rate and options)."""

from __future__ import annotations

from pony_tasks.boorus.adapters.base import PageError, PageRequest, SiteAdapter
from pony_tasks.boorus.adapters.danbooru import DanbooruAdapter
from pony_tasks.boorus.adapters.derpibooru import DerpibooruAdapter
from pony_tasks.boorus.adapters.e621 import E621Adapter
from pony_tasks.boorus.adapters.gelbooru import GelbooruAdapter
from pony_tasks.config import ConfigError, Settings, get_settings

ENGINE_ADAPTERS: dict[str, type[SiteAdapter]] = {
    "danbooru": DanbooruAdapter, "e621": E621Adapter, "philomena": DerpibooruAdapter, "gelbooru": GelbooruAdapter,
}  # fmt: skip
# The built-in sites' adapters by site name (each engine's first instance).
ADAPTERS: dict[str, type[SiteAdapter]] = {
    cls.site: cls for cls in (DanbooruAdapter, E621Adapter, DerpibooruAdapter, GelbooruAdapter)
}

__all__ = ["ADAPTERS", "ENGINE_ADAPTERS", "PageError", "PageRequest", "SiteAdapter", "adapter_for", "check_site"]


def check_site(site: str, settings: Settings | None = None) -> str:
    """``site`` if it is a configured site, else a ConfigError that lists them."""
    settings = settings or get_settings()
    if site not in settings.sites:
        raise ConfigError(f"unknown site {site!r}; configured sites: {', '.join(sorted(settings.sites))} (add one "
                          "as [sites.NAME] with its engine and base_url in pony.toml)")  # fmt: skip
    return site


def adapter_for(site: str, settings: Settings | None = None, base_url: str | None = None) -> SiteAdapter:
    settings = settings or get_settings()
    row = settings.sites[check_site(site, settings)]
    credentials = settings.booru_credentials.get(site)
    return ENGINE_ADAPTERS[row.engine](
        base_url=base_url or settings.booru_base_urls.get(site) or row.base_url,
        credentials=credentials.get_secret_value() if credentials else None,
        file_base_url=settings.booru_file_base_urls.get(site) or row.file_base_url,
        site=site,
        config=row,
    )
