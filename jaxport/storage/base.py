"""The storage interface shared by the API and the workers.

Keys are `/`-separated relative paths (`uploads/<job>`, `jobs/<job>/model.tflite`). Every
method streams: nothing reads a whole object into memory.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator
from pathlib import Path

from jaxport.errors import JaxportError

CHUNK_BYTES = 1024 * 1024


class StorageError(JaxportError):
    """The storage backend is misconfigured or unreachable (an operator problem)."""

    code = "storage_unavailable"
    http_status = 503


class ObjectNotFound(StorageError):
    code = "not_found"
    http_status = 404


def check_key(key: str) -> str:
    """Return `key` if it is a safe relative key; raise StorageError otherwise."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StorageError(f"invalid storage key {key!r}")
    return key


class Storage(abc.ABC):
    """Object storage: put/get files, ranged reads, presigned URLs, prefix deletes."""

    url: str

    @abc.abstractmethod
    def put_file(self, key: str, path: Path) -> int:
        """Store the local file `path` under `key`; return its size in bytes."""

    @abc.abstractmethod
    def get_file(self, key: str, path: Path) -> None:
        """Write object `key` to the local file `path`. Raises ObjectNotFound."""

    @abc.abstractmethod
    def size(self, key: str) -> int:
        """Size of object `key` in bytes. Raises ObjectNotFound."""

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except ObjectNotFound:
            return False
        return True

    @abc.abstractmethod
    def iter_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Yield bytes `start..end` (inclusive end, None = to the last byte) in chunks."""

    @abc.abstractmethod
    def copy(self, src: str, dst: str) -> None:
        """Copy object `src` to `dst` (server-side where the backend can)."""

    @abc.abstractmethod
    def delete_prefix(self, prefix: str) -> None:
        """Delete every object whose key starts with `prefix` (a `dir/` style prefix)."""

    @abc.abstractmethod
    def presigned_url(self, key: str, filename: str, expires_s: int = 900) -> str | None:
        """A time-limited direct download URL, or None when the backend serves bytes itself."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise StorageError unless the backend is reachable and writable."""


def iter_file(path: Path, start: int = 0, end: int | None = None) -> Iterable[bytes]:
    """Yield a local file's bytes `start..end` (inclusive) in CHUNK_BYTES pieces."""
    with open(path, "rb") as fh:
        fh.seek(start)
        remaining = None if end is None else end - start + 1
        while remaining is None or remaining > 0:
            chunk = fh.read(CHUNK_BYTES if remaining is None else min(CHUNK_BYTES, remaining))
            if not chunk:
                return
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk
