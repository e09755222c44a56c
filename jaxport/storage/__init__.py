"""Object storage for uploads and artifacts: `file://` and `s3://` behind one interface.

`open_storage(url)` picks the backend from the URL (`JAXPORT_STORAGE_URL`,
`JAXPORT_S3_ENDPOINT_URL`, and `JAXPORT_S3_PUBLIC_ENDPOINT_URL` when clients reach the store
at another address than the servers do).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from jaxport.storage.base import ObjectNotFound, Storage, StorageError

DEFAULT_STORAGE_URL = "file://./.jaxport/storage"

__all__ = ["DEFAULT_STORAGE_URL", "ObjectNotFound", "Storage", "StorageError", "open_storage"]


def open_storage(url: str | None = None, endpoint_url: str | None = None) -> Storage:
    """Storage for `url` (default: `$JAXPORT_STORAGE_URL`, else `./.jaxport/storage`).

    `file://./rel` and `file:///abs` are local directories; `s3://bucket/prefix` uses boto3
    with `endpoint_url` (default `$JAXPORT_S3_ENDPOINT_URL`); presigned URLs are made for
    `$JAXPORT_S3_PUBLIC_ENDPOINT_URL` when set. Raises StorageError otherwise.
    """
    url = url or os.environ.get("JAXPORT_STORAGE_URL") or DEFAULT_STORAGE_URL
    if url.startswith("file://"):
        from jaxport.storage.file import FileStorage

        return FileStorage(Path(url[len("file://"):] or "."))
    if url.startswith("s3://"):
        from jaxport.storage.s3 import S3Storage

        parsed = urlparse(url)
        if not parsed.netloc:
            raise StorageError(f"storage URL {url!r} names no bucket", "use s3://bucket/prefix")
        endpoint = endpoint_url or os.environ.get("JAXPORT_S3_ENDPOINT_URL") or None
        public = os.environ.get("JAXPORT_S3_PUBLIC_ENDPOINT_URL") or None
        return S3Storage(parsed.netloc, parsed.path, endpoint, public)
    raise StorageError(f"unsupported storage URL {url!r}", "use file://DIR or s3://bucket/prefix")
