"""Progress bars for long work (tqdm): shown on a terminal, hidden in logs unless asked for."""

from __future__ import annotations

from typing import Any

from tqdm import tqdm


def progress_bar(show: bool | None = None, **kwargs: Any) -> tqdm:
    """``show``: True always, False never, None when stderr is a terminal."""
    return tqdm(disable=None if show is None else not show, dynamic_ncols=True, **kwargs)
