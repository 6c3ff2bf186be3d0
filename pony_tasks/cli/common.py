"""What every command shares: settings loaded once, logging set from them."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import click

from pony_tasks.config import Settings, load_settings


@dataclass
class PonyContext:
    _settings: Settings | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
            logging.basicConfig(
                level=self._settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
            )
            # (the embedded server's pg_ctl chatter is quietened in pony_tasks.db.embedded unless DEBUG)
        return self._settings


class SiteName(click.ParamType):
    """A configured site (the built-in four and any in ``sites`` of pony.toml), checked when the command runs."""

    name = "site"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from pony_tasks.config import ConfigError

        context = ctx.find_object(PonyContext) if ctx is not None else None
        settings = context.settings if context is not None else load_settings()
        text = str(value)
        if text not in settings.sites:
            self.fail(f"{text!r} is not a configured site; sites: {', '.join(sorted(settings.sites))} (add one as "
                      "[sites.NAME] with its engine and base_url in pony.toml)", param, ctx)  # fmt: skip
        if not isinstance(text, str):  # pragma: no cover - click passes strings
            raise ConfigError(f"site must be text, got {value!r}")
        return text

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "SITE"


SITE = SiteName()
