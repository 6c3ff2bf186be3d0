"""Object storage behind one interface: ``file://`` (default, under PONY_HOME/objects) or ``s3://`` via boto3."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from pony_tasks.config import ConfigError, Settings, get_settings
from pony_tasks.storage.base import ObjectNotFoundError, ObjectStore
from pony_tasks.storage.keys import InvalidKeyError, validate_key
from pony_tasks.storage.local import LocalObjectStore
from pony_tasks.storage.s3 import S3ObjectStore

__all__ = [
    "InvalidKeyError",
    "LocalObjectStore",
    "ObjectNotFoundError",
    "ObjectStore",
    "S3ObjectStore",
    "open_store",
    "s3_client",
    "validate_key",
]


def s3_client(settings: Settings):
    """A boto3 S3 client configured from settings (endpoint, region, optional explicit keys)."""
    import boto3
    from botocore.config import Config

    kwargs = {
        "endpoint_url": settings.s3_endpoint_url,
        "region_name": settings.s3_region,
        "config": Config(retries={"max_attempts": 8, "mode": "adaptive"}, s3={"addressing_style": "path"}),
    }
    if settings.s3_access_key_id and settings.s3_secret_access_key:
        kwargs["aws_access_key_id"] = settings.s3_access_key_id.get_secret_value()
        kwargs["aws_secret_access_key"] = settings.s3_secret_access_key.get_secret_value()
    return boto3.client("s3", **kwargs)


def open_store(url: str | None = None, settings: Settings | None = None) -> ObjectStore:
    """The store at ``url`` (default: the configured ``storage_url``)."""
    settings = settings or get_settings()
    url = url or settings.effective_storage_url
    parsed = urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ConfigError(f"storage URL {url!r}: file:// URLs take an absolute path, e.g. file:///data/pony")
        return LocalObjectStore(Path(unquote(parsed.path)))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ConfigError(f"storage URL {url!r} needs a bucket: s3://bucket/prefix")
        return S3ObjectStore(parsed.netloc, parsed.path, client=s3_client(settings))
    raise ConfigError(f"storage URL {url!r}: scheme must be file:// or s3://")
