"""`s3://bucket/prefix` storage via boto3 (AWS, MinIO or any S3-compatible endpoint)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from jaxport.storage.base import CHUNK_BYTES, ObjectNotFound, Storage, StorageError, check_key

# Multipart transfers in 8 MB parts: a 500 MB object never sits in memory.
_TRANSFER = TransferConfig(multipart_threshold=8 * CHUNK_BYTES, multipart_chunksize=8 * CHUNK_BYTES,
                           max_concurrency=2)


class S3Storage(Storage):
    """Objects under `s3://bucket/prefix/`; downloads are handed out as presigned URLs."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None,
                 public_endpoint_url: str | None = None) -> None:
        """`public_endpoint_url` is the address clients reach the store at, when it differs
        from the one the servers use (`http://minio:9000` inside compose): presigned URLs sign
        the host, so they must be made for the public one."""
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        config = Config(signature_version="s3v4", retries={"max_attempts": 3})
        self.client = boto3.client("s3", endpoint_url=endpoint_url, config=config)
        self.signer = (boto3.client("s3", endpoint_url=public_endpoint_url, config=config)
                       if public_endpoint_url else self.client)

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchKey", "NotFound"):
                raise ObjectNotFound(f"no object for {what}") from None
            raise StorageError(f"S3 {what} failed: {code or exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 {what} failed: {exc}") from exc

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
        self._call("head bucket", self.client.head_bucket, Bucket=self.bucket)
