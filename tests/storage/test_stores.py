"""Both backends against the same contract: a local directory and a real S3 server (moto) on 127.0.0.1."""

import io
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from pony_tasks.config import ConfigError, load_settings
from pony_tasks.storage import (
    InvalidKeyError,
    LocalObjectStore,
    ObjectNotFoundError,
    ObjectStore,
    S3ObjectStore,
    open_store,
)


@pytest.fixture(params=["file", "s3"])
def store_settings(request, tmp_path: Path):
    if request.param == "file":
        return load_settings(home=tmp_path / "home", storage_url=(tmp_path / "objects").as_uri())
    return request.getfixturevalue("s3_settings")


@pytest.fixture
def store(store_settings) -> ObjectStore:
    return open_store(settings=store_settings)


def test_open_store_picks_backend_from_url(tmp_path: Path, s3_settings) -> None:
    assert isinstance(open_store((tmp_path / "o").as_uri(), load_settings(home=tmp_path)), LocalObjectStore)
    assert isinstance(open_store(settings=s3_settings), S3ObjectStore)
    with pytest.raises(ConfigError, match="file://"):
        open_store("file://somehost/x", load_settings(home=tmp_path))


def test_round_trip_overwrite_list_delete(store: ObjectStore, tmp_path: Path) -> None:
    assert not store.exists("a/one.bin")
    store.put_bytes("a/one.bin", b"first")
    store.put_bytes("a/one.bin", b"second")
    store.put_bytes("a/two.bin", b"2")
    store.put_bytes("b/three.bin", b"3")
    assert store.get_bytes("a/one.bin") == b"second"
    assert store.size("a/one.bin") == 6
    assert list(store.list("a/")) == ["a/one.bin", "a/two.bin"]
    assert list(store.list()) == ["a/one.bin", "a/two.bin", "b/three.bin"]
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(3 << 20))
    seen = []
    store.put_file("big/file.bin", source, progress=seen.append)
    assert sum(seen) == source.stat().st_size
    store.get_file("big/file.bin", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == source.read_bytes()
    assert store.delete("a/one.bin") is True
    assert store.delete("a/one.bin") is False
    assert not store.exists("a/one.bin")


def test_copy_inside_the_store_keeps_the_bytes_and_says_their_size(store: ObjectStore) -> None:
    data = os.urandom(3 << 20) + b"tail"  # several MiB: more than one kernel copy call on some file systems
    store.put_bytes("images/a.bin", data)
    assert store.copy("images/a.bin", "exports/x/a.bin") == len(data)
    assert store.get_bytes("exports/x/a.bin") == data and store.get_bytes("images/a.bin") == data
    store.put_bytes("images/a.bin", b"changed")  # a copy, not a link: the export keeps its bytes
    assert store.get_bytes("exports/x/a.bin") == data
    with pytest.raises(ObjectNotFoundError):
        store.copy("images/missing.bin", "exports/x/missing.bin")
    assert not store.exists("exports/x/missing.bin")


def test_a_moved_file_is_stored_whole_and_gone_from_disk(store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(2 << 20)
    made = tmp_path / "work" / "shard.tar"
    made.parent.mkdir()
    made.write_bytes(data)
    store.move_file("exports/x/shard.tar", made)
    assert store.get_bytes("exports/x/shard.tar") == data and not made.exists()
    made.write_bytes(b"second")  # over an existing object, as a put is
    store.move_file("exports/x/shard.tar", made)
    assert store.get_bytes("exports/x/shard.tar") == b"second"
    assert list(store.list("exports/")) == ["exports/x/shard.tar"]


def test_missing_object_raises_a_named_error(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFoundError, match="nope/missing"):
        store.get_bytes("nope/missing")
    with pytest.raises(ObjectNotFoundError):
        store.size("nope/missing")


@pytest.mark.parametrize("key", ["../outside.txt", "a/../../outside.txt", "/tmp/outside.txt", "a\\..\\x"])
def test_traversal_is_refused_and_writes_nothing(store: ObjectStore, key: str, tmp_path: Path) -> None:
    before = set(tmp_path.rglob("*"))
    with pytest.raises(InvalidKeyError):
        store.put_bytes(key, b"evil")
    for method in (store.get_bytes, store.exists, store.delete):
        with pytest.raises(InvalidKeyError):
            method(key)
    assert not Path("/tmp/outside.txt").exists() or Path("/tmp/outside.txt").read_bytes() != b"evil"
    assert set(tmp_path.rglob("*")) == before


def test_symlink_out_of_local_store_is_not_followed(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    (tmp_path / "objects" / "link").symlink_to(tmp_path)
    with pytest.raises(ObjectNotFoundError):
        store.get_bytes("link/secret.txt")
    (tmp_path / "objects" / "secret.txt").symlink_to(secret)  # the object itself a link out
    with pytest.raises(ObjectNotFoundError):
        store.get_bytes("secret.txt")
    store.put_bytes("folder/a.txt", b"a")
    with pytest.raises(ObjectNotFoundError):  # a directory is not an object
        store.get_bytes("folder")


def test_local_objects_get_the_mode_the_umask_gives_new_files(tmp_path: Path) -> None:
    """Not mkstemp's 0600: a trainer running as another user must be able to read an export."""
    import os
    import stat

    previous = os.umask(0o022)
    try:
        store = LocalObjectStore(tmp_path / "objects")
        store.put_bytes("exports/x/a.txt", b"caption")
        assert stat.S_IMODE((tmp_path / "objects/exports/x/a.txt").stat().st_mode) == 0o644
        os.umask(0o027)
        LocalObjectStore(tmp_path / "objects").put_bytes("exports/x/b.txt", b"caption")
        assert stat.S_IMODE((tmp_path / "objects/exports/x/b.txt").stat().st_mode) == 0o640
        private = Path(tempfile.mkstemp(dir=tmp_path)[1])  # 0600, as mkstemp makes it
        LocalObjectStore(tmp_path / "objects").move_file("exports/x/meta.json", private)
        assert stat.S_IMODE((tmp_path / "objects/exports/x/meta.json").stat().st_mode) == 0o640
    finally:
        os.umask(previous)


class _SlowStream(io.RawIOBase):
    """Yields ``chunks`` blocks of 64 KiB, sleeping between them, so a write takes a while."""

    def __init__(self, fill: bytes, chunks: int, pause: float) -> None:
        self.fill, self.left, self.pause = fill, chunks, pause

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.left == 0:
            return 0
        time.sleep(self.pause)
        self.left -= 1
        size = min(len(buffer), 64 * 1024)
        buffer[:size] = self.fill * size
        return size


def test_readers_never_see_a_partial_object(store: ObjectStore) -> None:
    old = b"o" * (64 * 1024 * 20)
    store.put_bytes("atomic/x.bin", old)
    new_size = 64 * 1024 * 20
    observed: set[tuple[int, bytes]] = set()
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            data = store.get_bytes("atomic/x.bin")
            observed.add((len(data), bytes(set(data))))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        store.put_stream("atomic/x.bin", io.BufferedReader(_SlowStream(b"n", 20, 0.02)))
    finally:
        done.set()
        thread.join()
    assert observed <= {(len(old), b"o"), (new_size, b"n")}, observed
    assert store.get_bytes("atomic/x.bin") == b"n" * new_size


_WRITER = """
import io, sys, time
from pony_tasks.config import load_settings
from pony_tasks.storage import open_store
class Slow(io.RawIOBase):
    def readable(self): return True
    def readinto(self, b):
        time.sleep(0.05); n = min(len(b), 1 << 20); b[:n] = b"k" * n; print("chunk", flush=True); return n
settings = load_settings(home=sys.argv[1], storage_url=sys.argv[2], s3_endpoint_url=sys.argv[3] or None,
                         s3_access_key_id="testing", s3_secret_access_key="testing")
open_store(settings=settings).put_stream("killed/object.bin", io.BufferedReader(Slow(), 1 << 20))
"""


def test_killed_writer_leaves_no_object(store: ObjectStore, store_settings, tmp_path: Path) -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _WRITER,
            str(tmp_path / "home"),
            store_settings.effective_storage_url,
            store_settings.s3_endpoint_url or "",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines = 0
    for _ in child.stdout:  # wait until several MiB have gone out (past S3's first multipart part)
        lines += 1
        if lines == 12:
            break
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not store.exists("killed/object.bin")
    assert list(store.list()) == []
    if isinstance(store, LocalObjectStore):
        assert store.remove_stale_incoming(older_than_seconds=0) == 1
