"""Object keys: relative POSIX paths, checked before any backend sees them."""

from __future__ import annotations

import re
import unicodedata

MAX_KEY_LENGTH = 1024
RESERVED_PREFIX = ".pony-"  # backends keep their own bookkeeping (temporary files) under names starting with this
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InvalidKeyError(ValueError):
    """The key could escape the store or confuse a backend; the message says why."""


def validate_key(key: str) -> str:
    """Return ``key`` unchanged if it is safe, else raise :class:`InvalidKeyError`.

    Refused: empty keys, absolute paths, backslashes, ``.``/``..``/empty segments, control characters,
    keys over 1,024 bytes, and segments starting with the reserved ``.pony-`` prefix.
    """
    if not isinstance(key, str) or not key:
        raise InvalidKeyError("object key must be a non-empty string")
    if _CONTROL.search(key):
        raise InvalidKeyError(f"object key {key!r} contains a control character")
    if len(key.encode("utf-8")) > MAX_KEY_LENGTH:
        raise InvalidKeyError(f"object key is longer than {MAX_KEY_LENGTH} bytes")
    if key.startswith("/") or re.match(r"^[A-Za-z]:", key):
        raise InvalidKeyError(f"object key {key!r} is absolute; use a relative key like 'images/ab/cd.png'")
    if "\\" in key:
        raise InvalidKeyError(f"object key {key!r} contains a backslash; use '/' between segments")
    if unicodedata.normalize("NFC", key) != key:
        raise InvalidKeyError(f"object key {key!r} is not in Unicode NFC form")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidKeyError(f"object key {key!r} has an empty, '.' or '..' segment")
        if segment.startswith(RESERVED_PREFIX):
            raise InvalidKeyError(f"object key {key!r} uses the reserved prefix {RESERVED_PREFIX!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix: empty, or a key-like string (a trailing '/' is allowed)."""
    if prefix == "":
        return prefix
    validate_key(prefix.rstrip("/") or "x")
    return prefix
