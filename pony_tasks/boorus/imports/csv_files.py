"""Reading a site's CSV export: ``.csv`` or ``.csv.gz``, header row, columns read by name (extra columns accepted),
each data row with the line it started on (a quoted field may hold newlines)."""

from __future__ import annotations

import csv
import gzip
import io
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from pony_tasks.config import ConfigError

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # descriptions run to megabytes


class ExportFormatError(ConfigError):
    """The file is not the export it should be (missing columns, not CSV): nothing is imported from it."""


@contextmanager
def open_text(path: Path) -> Iterator[IO[str]]:
    """The file as text, decompressed when it is gzip (by its magic bytes, whatever its name)."""
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    raw = gzip.open(path, "rb") if gzipped else open(path, "rb")  # noqa: SIM115 (closed below)
    try:
        yield io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="")
    finally:
        raw.close()



class CsvRows:
    """Data rows of an open CSV export as lists, with :attr:`line` (the line the current row started on) and
    :meth:`column` positions from the header. Raises :class:`ExportFormatError` when a required column is missing."""

    def __init__(self, handle: IO[str], required: Sequence[str], what: str) -> None:
        self._reader = csv.reader(handle, strict=True)
        try:
            header = next(self._reader)
        except StopIteration:
            raise ExportFormatError(f"{what} is empty: expected a header row") from None
        except csv.Error as exc:
            raise ExportFormatError(f"{what} is not CSV: {exc}") from None
        self.header = [name.strip().lstrip("\ufeff") for name in header]
        self.positions = {name: index for index, name in enumerate(self.header)}
        missing = [name for name in required if name not in self.positions]
        if missing:
            raise ExportFormatError(f"{what} lacks the column(s) {', '.join(missing)} (its header: "
                                    f"{','.join(self.header)[:300]}); is it the right file?")  # fmt: skip
        self.width = len(self.header)
        self.line = 1  # the line the current row starts on
        self._next_line = 2

    def column(self, name: str) -> int | None:
        return self.positions.get(name)

    def __iter__(self) -> Iterator[list[str] | csv.Error]:
        """Rows; a row the csv module cannot read is yielded as its error (the reader goes on at the next line)."""
        reader = self._reader
        while True:
            self.line = self._next_line
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                self._next_line = reader.line_num + 1
                yield exc
                continue
            self._next_line = reader.line_num + 1
            yield row


_DATED = re.compile(r"(\d{4}-\d{2}-\d{2})\.csv(\.gz)?$")


def date_in_name(path: Path) -> datetime | None:
    """The export date of a dated file (``posts-2026-12-06.csv.gz`` → 2026-12-06 00:00 UTC), else None."""
    found = _DATED.search(path.name)
    return datetime.strptime(found.group(1), "%Y-%m-%d").replace(tzinfo=UTC) if found else None


def parse_naive_utc(text: str) -> datetime:
    """A PostgreSQL timestamp without zone as COPY writes it (``2020-03-01 12:34:56.789012``), taken as UTC."""
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
