"""`s3://bucket/prefix` storage via boto3 (AWS, MinIO or any S3-compatible endpoint).

Transient failures (the endpoint unreachable or dropping connections, a 5xx, throttling) are
retried with exponential backoff for up to `retry_s` seconds per call (default
`$JAXPORT_STORAGE_RETRY_S`, 30), then raised as StorageError naming the operation, the attempts
and the last cause. Answers that retrying cannot change (403, 404, a missing bucket) are raised
at once. A ranged read retries opening the object, not a stream cut halfway.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionClosedError
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

from jaxport.storage.base import CHUNK_BYTES, ObjectNotFound, Storage, StorageError, check_key

# Multipart transfers in 8 MB parts: a 500 MB object never sits in memory.
_TRANSFER = TransferConfig(multipart_threshold=8 * CHUNK_BYTES, multipart_chunksize=8 * CHUNK_BYTES,
                           max_concurrency=2)

RETRY_ENV = "JAXPORT_STORAGE_RETRY_S"
DEFAULT_RETRY_S = 30.0
FIRST_BACKOFF_S, MAX_BACKOFF_S = 0.25, 4.0
_TRANSIENT_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout",
                    "RequestTimeTooSkewed", "InternalError", "ServiceUnavailable"}


def _transient(exc: Exception) -> bool:
    """True for a failure that may pass by itself: no connection, a cut one, a 5xx, throttling."""
    if isinstance(exc, (BotoConnectionError, ConnectionClosedError, ConnectTimeoutError,
                        ReadTimeoutError)):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return status >= 500 or exc.response.get("Error", {}).get("Code") in _TRANSIENT_CODES
    return False


def retry_budget_s() -> float:
    """`$JAXPORT_STORAGE_RETRY_S` (seconds a call may spend retrying), default 30."""
    raw = os.environ.get(RETRY_ENV, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_RETRY_S
    except ValueError:
        value = -1.0
    if value < 0:
        raise StorageError(f"{RETRY_ENV} must be a number of seconds >= 0, got {raw!r}",
                           f"e.g. {RETRY_ENV}={DEFAULT_RETRY_S:g}")
    return value


class S3Storage(Storage):
    """Objects under `s3://bucket/prefix/`; downloads are handed out as presigned URLs."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None,
                 public_endpoint_url: str | None = None, retry_s: float | None = None) -> None:
        """`public_endpoint_url` is the address clients reach the store at, when it differs
        from the one the servers use (`http://minio:9000` inside compose): presigned URLs sign
        the host, so they must be made for the public one. `retry_s`: how long one call may
        retry transient failures (default `retry_budget_s()`)."""
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.retry_s = retry_budget_s() if retry_s is None else retry_s
        # One attempt per boto3 call: the retry policy is `_call`'s, bounded in time.
        config = Config(signature_version="s3v4", retries={"total_max_attempts": 1},
                        connect_timeout=5, read_timeout=60)
        self.client = boto3.client("s3", endpoint_url=endpoint_url, config=config)
        self.signer = (boto3.client("s3", endpoint_url=public_endpoint_url, config=config)
                       if public_endpoint_url else self.client)

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, fn: Callable, *args, **kwargs):
        """`fn(*args, **kwargs)`, retrying transient failures for up to `retry_s` seconds."""
        deadline = time.monotonic() + self.retry_s
        backoff, attempts = FIRST_BACKOFF_S, 0
        while True:
            attempts += 1
            try:
                return fn(*args, **kwargs)
            except (ClientError, BotoCoreError) as exc:
                left = deadline - time.monotonic()
                if _transient(exc) and left > 0:
                    time.sleep(min(left, backoff * random.uniform(0.5, 1.0)))
                    backoff = min(2 * backoff, MAX_BACKOFF_S)
                    continue
                raise self._error(what, exc, attempts) from exc

    def _error(self, what: str, exc: Exception, attempts: int) -> StorageError:
        code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
        if code in ("404", "NoSuchKey", "NotFound"):
            return ObjectNotFound(f"no object for {what}")
        tried = f" after {attempts} attempts in {self.retry_s:g} s" if attempts > 1 else ""
        cause = f"HTTP {code}" if code.isdigit() else code or str(exc)
        return StorageError(f"S3 {what} failed{tried}: {cause}",
                            f"check that the S3 endpoint and bucket {self.bucket!r} are reachable "
                            f"and the credentials allowed; transient failures are retried for "
                            f"{RETRY_ENV} seconds")

    def put_file(self, key: str, path: Path) -> int:
        self._call(f"upload {key}", self.client.upload_file, str(path), self.bucket,
                   self._key(key), Config=_TRANSFER)
        return path.stat().st_size

    def get_file(self, key: str, path: Path) -> None:
        self._call(f"download {key}", self.client.download_file, self.bucket, self._key(key),
                   str(path), Config=_TRANSFER)

    def size(self, key: str) -> int:
        head = self._call(f"head {key}", self.client.head_object, Bucket=self.bucket,
                          Key=self._key(key))
        return int(head["ContentLength"])

    def iter_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        rng = f"bytes={start}-{'' if end is None else end}"
        obj = self._call(f"get {key}", self.client.get_object, Bucket=self.bucket,
                         Key=self._key(key), Range=rng)
        yield from obj["Body"].iter_chunks(CHUNK_BYTES)

    def copy(self, src: str, dst: str) -> None:
        self._call(f"copy {src}", self.client.copy,
                   {"Bucket": self.bucket, "Key": self._key(src)}, self.bucket, self._key(dst),
                   Config=_TRANSFER)

    def delete_prefix(self, prefix: str) -> None:
        paginator = self.client.get_paginator("list_objects_v2")
        pages = self._call(f"list {prefix}", lambda: list(
            paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix.rstrip("/")) + "/")))
        for page in pages:
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                self._call(f"delete {prefix}", self.client.delete_objects, Bucket=self.bucket,
                           Delete={"Objects": keys, "Quiet": True})

    def presigned_url(self, key: str, filename: str, expires_s: int = 900) -> str | None:
        return self._call(f"presign {key}", self.signer.generate_presigned_url, "get_object",
                          Params={"Bucket": self.bucket, "Key": self._key(key),
                                  "ResponseContentDisposition": f'attachment; filename="{filename}"'},
                          ExpiresIn=expires_s)

    def ping(self) -> None:
        try:
            self._call("head bucket", self.client.head_bucket, Bucket=self.bucket)
        except ObjectNotFound:
            raise StorageError(f"S3 bucket {self.bucket!r} does not exist",
                               "create it, or point JAXPORT_STORAGE_URL at one that does") from None
