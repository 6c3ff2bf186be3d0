"""``pony import e621-export --latest``: find and download the newest export files through the polite client.

Where e621 lists them: since 2026-06 e621ng builds undated ``<name>.csv.gz`` daily at 04:00 UTC and lists them at
``/db_exports.json`` (``{name, file_name, file_size, checksum (SHA-256 hex of the .csv.gz), updated_at, url}``); the
long-standing layout is the directory ``/db_export/`` of dated ``<name>-YYYY-MM-DD.csv.gz`` files (about four days
kept). The index is asked first, the directory listing when the site has no index (HTTP 404).

Downloads go through the site's shared rate limit and host rules (the export's host is the site's own), resume a
cut transfer from the bytes already on disk, are checked against the index's SHA-256 where it gives one, and are
renamed into place only when whole: a file in ``directory`` under its final name is complete.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from pony_tasks.boorus.adapters import adapter_for
from pony_tasks.boorus.imports.progress import file_sha256
from pony_tasks.config import ConfigError, Settings, get_settings
from pony_tasks.polite_http import HTTPFailure

logger = logging.getLogger(__name__)

NAMES = {"posts": "posts", "tags": "tags", "aliases": "tag_aliases", "implications": "tag_implications"}
_DATED = re.compile(r'href="(?:[^"]*/)?(posts|tags|tag_aliases|tag_implications)-(\d{4}-\d{2}-\d{2})\.csv\.gz"')


class ExportNotFound(ConfigError):
    """The site lists no export file of a kind we need."""


def export_listing(client: Any, base_url: str) -> dict[str, dict[str, Any]]:
    """{kind: {"url", "file_name", "checksum" (or None), "updated_at" (or None)}} of the newest files."""
    try:
        body, _ = client.get_json(f"{base_url}/db_exports.json")
    except HTTPFailure as exc:
        if exc.status != 404:
            raise
        body = None
    found: dict[str, dict[str, Any]] = {}
    if isinstance(body, list):
        for entry in body:
            if not isinstance(entry, dict):
                continue
            kind = next((k for k, name in NAMES.items() if entry.get("name") == name), None)
            if kind is None:
                continue
            found[kind] = {
                "url": urljoin(f"{base_url}/", entry.get("url") or f"db_export/{entry.get('file_name')}"),
                "file_name": entry.get("file_name") or f"{NAMES[kind]}.csv.gz",
                "checksum": (entry.get("checksum") or "").lower() or None,
                "updated_at": entry.get("updated_at"),
            }
        return found
    listing = client.get(f"{base_url}/db_export/").content.decode("utf-8", "replace")
    newest: dict[str, str] = {}
    for name, day in _DATED.findall(listing):
        newest[name] = max(day, newest.get(name, day))
    for kind, name in NAMES.items():
        if name in newest:
            file_name = f"{name}-{newest[name]}.csv.gz"
            found[kind] = {"url": f"{base_url}/db_export/{file_name}", "file_name": file_name, "checksum": None,
                           "updated_at": f"{newest[name]}T00:00:00Z"}  # fmt: skip
    return found


def download_latest(
    directory: Path, *, settings: Settings | None = None, kinds: tuple[str, ...] = tuple(NAMES)
) -> dict[str, Path]:
    """Download the newest export file of each kind into ``directory`` (kept: a cut download resumes, a whole one
    is not fetched again); returns {kind: path}."""
    from pony_tasks.boorus.engine import make_client

    settings = settings or get_settings()
    adapter = adapter_for("e621", settings)
    refusal = adapter.refusal(settings)
    if refusal:
        raise ConfigError(f"not downloading e621's export: {refusal}")
    client = make_client(adapter, settings)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        listing = export_listing(client, adapter.base_url)
        missing = [k for k in kinds if k not in listing]
        if missing:
            raise ExportNotFound(f"{adapter.base_url} lists no export of {', '.join(missing)} (looked at "
                                 "/db_exports.json and /db_export/)")  # fmt: skip
        paths = {}
        for kind in kinds:
            entry = listing[kind]
            final = directory / entry["file_name"]
            if final.exists() and _dated_name(entry["file_name"]):
                paths[kind] = final  # a dated file never changes
                continue
            partial = directory / (entry["file_name"] + ".partial")
            logger.info("downloading %s", entry["url"])
            client.download_to(entry["url"], partial)
            if entry["checksum"]:
                actual = file_sha256(partial)
                if actual != entry["checksum"]:
                    partial.unlink()
                    raise HTTPFailure(f"{entry['url']}: SHA-256 {actual} is not the {entry['checksum']} the index "
                                      "lists; the download was removed — run again to fetch it anew")  # fmt: skip
            partial.replace(final)
            if entry.get("updated_at"):
                _stamp(final, entry["updated_at"])
            paths[kind] = final
        return paths
    finally:
        client.limiter.disconnect()


def _dated_name(name: str) -> bool:
    return re.search(r"-\d{4}-\d{2}-\d{2}\.csv\.gz$", name) is not None


def _stamp(path: Path, updated_at: str) -> None:
    """The file's mtime becomes the export's time (an undated file's import takes its snapshot time from it)."""
    import os

    try:
        when = datetime.fromisoformat(updated_at.replace("Z", "+00:00"))
    except ValueError:
        return
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    os.utime(path, (when.timestamp(), when.timestamp()))
