"""Year and period tags from a work's upload date, as NoobAI-XL and Animagine XL caption them: ``year 2023`` and
one period word, so a user can prompt for a period's look (``newest``) or away from it (``oldest`` in the negative).

The year is the upload year of the work's earliest live post (a re-post years later is still the old picture). The
periods are ranges of upload years, newest first, each from its first year on (the last open-ended); the default is
Animagine XL 3.1's: newest 2022–, recent 2019–2021, mid 2015–2018, early 2011–2014, oldest –2010. Configurable
(``pony captions regenerate --periods``); the ranges are part of the caption rules key.
"""

from __future__ import annotations

import re

Periods = tuple[tuple[str, int | None], ...]
DEFAULT_PERIODS: Periods = (("newest", 2022), ("recent", 2019), ("mid", 2015), ("early", 2011), ("oldest", None))


def date_tags(year: int | None, periods: Periods = DEFAULT_PERIODS) -> tuple[str, ...]:
    """``("year 2023", "newest")``; nothing without a year or without periods."""
    if year is None or not periods:
        return ()
    word = next((word for word, first in periods if first is None or year >= first), periods[-1][0])
    return (f"year {year}", word)


def parse_periods(text: str) -> Periods:
    """``"newest=2022,recent=2019,mid=2015,early=2011,oldest"`` (first years falling, the last open) → periods;
    ``""`` or ``"none"``: no year tags."""
    if text.strip().lower() in ("", "none"):
        return ()
    periods: list[tuple[str, int | None]] = []
    for part in text.split(","):
        word, _, first = part.strip().partition("=")
        if not re.fullmatch(r"[\w-]+", word):
            raise ValueError(f"period {part!r}: write word=first_year (a word of letters, digits, _ or -), "
                             "e.g. newest=2022")  # fmt: skip
        try:
            periods.append((word, int(first) if first else None))
        except ValueError:
            raise ValueError(f"period {part!r}: {first!r} is not a year") from None
    firsts = [first for _, first in periods]
    years = firsts[:-1] if firsts[-1] is None else firsts
    if None in years or years != sorted(years, reverse=True) or len(set(years)) != len(years):
        raise ValueError(f"periods {text!r}: first years must fall from newest to oldest, only the last open-ended")
    return tuple(periods)


def periods_key(periods: Periods) -> str:
    return ",".join(f"{word}={first or ''}" for word, first in periods) or "none"
