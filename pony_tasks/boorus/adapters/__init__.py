"""One small adapter per site; :func:`adapter_for` builds one from settings."""

from __future__ import annotations

from pony_tasks.boorus.adapters.base import PageError, PageRequest, SiteAdapter
from pony_tasks.boorus.adapters.danbooru import DanbooruAdapter
from pony_tasks.boorus.adapters.derpibooru import DerpibooruAdapter
from pony_tasks.boorus.adapters.e621 import E621Adapter
from pony_tasks.boorus.adapters.gelbooru import GelbooruAdapter
from pony_tasks.config import ConfigError, Settings, get_settings

ADAPTERS: dict[str, type[SiteAdapter]] = {
    cls.site: cls for cls in (DanbooruAdapter, E621Adapter, DerpibooruAdapter, GelbooruAdapter)
}

__all__ = ["ADAPTERS", "PageError", "PageRequest", "SiteAdapter", "adapter_for"]


def adapter_for(site: str, settings: Settings | None = None, base_url: str | None = None) -> SiteAdapter:
    settings = settings or get_settings()
    if site not in ADAPTERS:
        raise ConfigError(f"unknown site {site!r}; choose one of {', '.join(ADAPTERS)}")
    credentials = settings.booru_credentials.get(site)
    return ADAPTERS[site](
        base_url=base_url or settings.booru_base_urls.get(site),
        credentials=credentials.get_secret_value() if credentials else None,
        file_base_url=settings.booru_file_base_urls.get(site),
    )
