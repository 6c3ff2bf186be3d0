"""What every command shares: settings loaded once, logging set from them."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

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
