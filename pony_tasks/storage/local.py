"""``file://`` object store: one file per key under a root directory, written atomically by rename."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from pony_tasks.storage.base import ObjectNotFoundError, ObjectStore, ProgressCallback, copy_stream
from pony_tasks.storage.keys import RESERVED_PREFIX, validate_key, validate_prefix

INCOMING_DIR = f"{RESERVED_PREFIX}incoming"


def _umask() -> int:
    current = os.umask(0o022)  # the only way to read it is to set it: set it straight back
    os.umask(current)
    return current


def _kernel_copy(source: BinaryIO, target: BinaryIO) -> int:
    """Copy ``source`` into ``target`` in the kernel where it can (Linux ``copy_file_range``), else by reads."""
    total = 0
    try:
        while chunk := os.copy_file_range(source.fileno(), target.fileno(), 1 << 30):
            total += chunk
        return total
    except (AttributeError, OSError):  # no copy_file_range here (or not between these files): plain reads
        source.seek(total)
        target.seek(total)
        shutil.copyfileobj(source, target, 1 << 20)
        return target.tell()


class LocalObjectStore(ObjectStore):
    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = self.root.as_uri()
        # mkstemp creates files 0600; a stored object gets the mode any new file would (0644 under umask 022), so a
        # trainer running as another user can read an export
        self.file_mode = 0o666 & ~_umask()
        self._deferred = 0  # > 0 inside deferred_sync(): no fsync per put, one sync at the end

    @contextlib.contextmanager
    def deferred_sync(self) -> Iterator[None]:
        self._deferred += 1
        try:
            yield
        finally:
            self._deferred -= 1
            if not self._deferred:
                os.sync()

    def _path(self, key: str) -> Path:
        path = (self.root / validate_key(key)).resolve()
        # validate_key already refuses '..'; this also stops a symlink inside the store pointing outside it.
        if not path.is_relative_to(self.root):
            raise ObjectNotFoundError(key, self.url)
        return path

    def put_stream(self, key: str, stream: BinaryIO, *, progress: ProgressCallback | None = None) -> None:
        self._write(key, lambda handle: copy_stream(stream, handle, progress))

    def copy(self, key: str, new_key: str) -> int:
        """A kernel-side copy (``os.copy_file_range``: no bytes through Python; a reflink on file systems that
        share extents), then the same atomic rename as a put."""
        source = self._path(key)
        if not source.is_file():
            raise ObjectNotFoundError(key, self.url)
        copied = 0

        def fill(handle: BinaryIO) -> None:
            nonlocal copied
            with open(source, "rb") as original:
                copied = _kernel_copy(original, handle)

        self._write(new_key, fill)
        return copied

    def _write(self, key: str, fill: Callable[[BinaryIO], None]) -> None:
        target = self._path(key)
        incoming = self.root / INCOMING_DIR
        incoming.mkdir(exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=incoming, prefix="put-")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                os.fchmod(handle.fileno(), self.file_mode)
                fill(handle)
                handle.flush()
                if not self._deferred:
                    os.fsync(handle.fileno())
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        if self._deferred:
            return
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def open_read(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            return open(path, "rb")
        except (FileNotFoundError, IsADirectoryError):
            raise ObjectNotFoundError(key, self.url) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise ObjectNotFoundError(key, self.url) from None

    def list(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        keys = []
        for directory, subdirectories, files in os.walk(self.root):
            subdirectories[:] = [d for d in subdirectories if not d.startswith(RESERVED_PREFIX)]
            relative = Path(directory).relative_to(self.root).as_posix()
            for name in files:
                key = name if relative == "." else f"{relative}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        return iter(sorted(keys))

    def delete(self, key: str) -> bool:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def remove_stale_incoming(self, older_than_seconds: float = 3600) -> int:
        """Delete temporary files left by killed writers; returns how many were removed."""
        import time

        incoming = self.root / INCOMING_DIR
        removed = 0
        if incoming.is_dir():
            cutoff = time.time() - older_than_seconds
            for path in incoming.iterdir():
                if path.stat().st_mtime < cutoff:
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed
