"""The object-store interface every backend implements."""

from __future__ import annotations

import abc
import contextlib
import io
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

ProgressCallback = Callable[[int], None]  # called with the number of bytes just transferred


class ObjectNotFoundError(KeyError):
    """No object under that key."""

    def __str__(self) -> str:
        return f"no object with key {self.args[0]!r} in {self.args[1]}"


class ObjectStore(abc.ABC):
    """put/get/exists/list/delete over validated keys. Writes are atomic: a reader sees the old object or the new
    one, never part of one."""

    url: str

    @abc.abstractmethod
    def put_stream(self, key: str, stream: BinaryIO, *, progress: ProgressCallback | None = None) -> None:
        """Store everything read from ``stream`` under ``key``, replacing any previous object."""

    @abc.abstractmethod
    def open_read(self, key: str) -> BinaryIO:
        """A binary file object over the object; raises :class:`ObjectNotFoundError`."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def size(self, key: str) -> int:
        """Size in bytes; raises :class:`ObjectNotFoundError`."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys starting with ``prefix``, in lexicographic order."""

    @abc.abstractmethod
    def delete(self, key: str) -> bool:
        """Remove the object; returns whether there was one."""

    @contextlib.contextmanager
    def deferred_sync(self) -> Iterator[None]:
        """Puts inside the block may make themselves durable together at its end instead of one by one (the local
        store: one sync instead of two fsyncs per file). Each object is still whole to a reader (atomic renames);
        after a crash inside the block some may be missing — write a completion marker (a manifest) after it."""
        yield

    def parallel_writes(self) -> int:
        """How many puts and copies a bulk writer (an export) should keep in flight at once: a network store waits on
        a round trip per object, so several."""
        return 8

    # Conveniences built on the primitives -------------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes) -> None:
        self.put_stream(key, io.BytesIO(data))

    def get_bytes(self, key: str) -> bytes:
        with self.open_read(key) as handle:
            return handle.read()

    def put_file(self, key: str, path: Path, *, progress: ProgressCallback | None = None) -> None:
        with open(path, "rb") as handle:
            self.put_stream(key, handle, progress=progress)

    def move_file(self, key: str, path: Path) -> None:
        """Store a finished file and remove it (an export's shard or ``meta.json``, written on disk first): a network
        store uploads it then deletes it; the local store renames it into place when it lies on the same file system
        (no second copy on disk, however large)."""
        self.put_file(key, path)
        Path(path).unlink()

    def get_file(self, key: str, path: Path, *, progress: ProgressCallback | None = None) -> None:
        """Download to ``path`` atomically (written beside it, then renamed)."""
        path = Path(path)
        temporary = path.with_name(f".{path.name}.partial")
        with self.open_read(key) as source, open(temporary, "wb") as target:
            copy_stream(source, target, progress)
        temporary.replace(path)

    def put_tree(self, prefix: str, directory: Path) -> int:
        """Store every file under ``directory`` as ``prefix/<relative path>``; returns how many."""
        count = 0
        for path in sorted(Path(directory).rglob("*")):
            if path.is_file():
                self.put_file(f"{prefix}/{path.relative_to(directory).as_posix()}", path)
                count += 1
        return count

    def get_tree(self, prefix: str, directory: Path) -> Path:
        """Download every object under ``prefix/`` into ``directory`` (relative paths kept); returns it."""
        for key in self.list(prefix + "/"):
            target = Path(directory) / key[len(prefix) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            self.get_file(key, target)
        return Path(directory)

    def copy(self, key: str, new_key: str) -> int:
        """Copy an object to another key of this store (as atomic as a put); returns its size. Backends copy inside
        the store (the local store in the kernel, S3 on the server): the bytes do not pass through Python."""
        with self.open_read(key) as source:
            counter = _CountingReader(source)
            self.put_stream(new_key, counter)
        return counter.count

    def copy_to(self, key: str, other: ObjectStore, other_key: str | None = None) -> None:
        with self.open_read(key) as source:
            other.put_stream(other_key or key, source)


class _CountingReader:
    def __init__(self, stream: BinaryIO) -> None:
        self.stream, self.count = stream, 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.count += len(data)
        return data


def copy_stream(source: BinaryIO, target: BinaryIO, progress: ProgressCallback | None) -> None:
    if progress is None:
        shutil.copyfileobj(source, target, 1 << 20)
        return
    while chunk := source.read(1 << 20):
        target.write(chunk)
        progress(len(chunk))
