"""``s3://bucket/prefix`` object store through boto3, for AWS or any S3-compatible server (endpoint URL setting).

S3 makes a PUT (and a completed multipart upload) visible all at once, so writes are atomic by the protocol.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

from pony_tasks.storage.base import ObjectNotFoundError, ObjectStore, ProgressCallback
from pony_tasks.storage.keys import validate_key, validate_prefix

_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}


class S3ObjectStore(ObjectStore):
    def __init__(self, bucket: str, prefix: str = "", *, client: Any) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        if self.prefix:
            validate_key(self.prefix.rstrip("/"))
        self.client = client
        self.url = f"s3://{bucket}/{self.prefix}"

    def _key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def _missing(self, error: Exception) -> bool:
        code = getattr(error, "response", {}).get("Error", {}).get("Code")
        return code in _MISSING_CODES

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (demo and tests; production buckets are made by infrastructure)."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)

    def put_stream(self, key: str, stream: BinaryIO, *, progress: ProgressCallback | None = None) -> None:
        self.client.upload_fileobj(stream, self.bucket, self._key(key), Callback=progress)

    def copy(self, key: str, new_key: str) -> int:
        """A server-side copy (boto3's managed copy: multipart above its threshold); returns the size."""
        size = self.size(key)
        self.client.copy({"Bucket": self.bucket, "Key": self._key(key)}, self.bucket, self._key(new_key))
        return size

    def open_read(self, key: str) -> BinaryIO:
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if self._missing(exc):
                raise ObjectNotFoundError(key, self.url) from None
            raise
        return response["Body"]

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except ObjectNotFoundError:
            return False
        return True

    def size(self, key: str) -> int:
        from botocore.exceptions import ClientError

        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"])
        except ClientError as exc:
            if self._missing(exc):
                raise ObjectNotFoundError(key, self.url) from None
            raise

    def list(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for item in page.get("Contents", []):
                yield item["Key"][len(self.prefix) :]

    def delete(self, key: str) -> bool:
        existed = self.exists(key)
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        return existed
