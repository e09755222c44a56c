"""Artifact downloads: a `302` to a presigned URL when the backend has one, else the bytes
streamed from storage with single-range `Range` support (206 / 416); and one member of a
stored zip, read with ranged reads (`zip_member`)."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator

from fastapi.responses import RedirectResponse, Response, StreamingResponse

from jaxport.storage import Storage
from jaxport.storage.base import CHUNK_BYTES

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
MEDIA_TYPES = {".zip": "application/zip", ".json": "application/json",
               ".tflite": "application/octet-stream"}


def media_type(filename: str) -> str:
    return MEDIA_TYPES.get("." + filename.rsplit(".", 1)[-1], "application/octet-stream")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | bool:
    """`(start, end)` inclusive for a satisfiable single range; None to send everything
    (no header, or a form we do not serve such as multi-range); False when unsatisfiable."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):  # suffix: the last N bytes
        n = int(m.group(2))
        return (max(0, size - n), size - 1) if n > 0 and size > 0 else False
    start = int(m.group(1))
    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    if start >= size or end < start:
        return False
    return start, end


def artifact_response(storage: Storage, key: str, filename: str, range_header: str | None) -> Response:
    """The HTTP answer for one stored artifact. Raises ObjectNotFound."""
    url = storage.presigned_url(key, filename)
    if url:
        return RedirectResponse(url, status_code=302)
    size = storage.size(key)
    media = media_type(filename)
    headers = {"Accept-Ranges": "bytes",
               "Content-Disposition": f'attachment; filename="{filename}"'}
    wanted = parse_range(range_header, size)
    if wanted is False:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    start, end = wanted if wanted else (0, size - 1)
    headers["Content-Length"] = str(max(0, end - start + 1))
    status = 200
    if wanted:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return StreamingResponse(storage.iter_range(key, start, end), status_code=status, media_type=media, headers=headers)


class StoredObject(io.RawIOBase):
    """A read-only, seekable file over one stored object, read with ranged reads: zipfile can
    read one member without fetching the whole archive. Raises ObjectNotFound on open."""

    def __init__(self, storage: Storage, key: str) -> None:
        self._storage, self._key, self._pos = storage, key, 0
        self._size = storage.size(key)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:
        end = min(self._pos + len(buffer), self._size) - 1
        if end < self._pos:
            return 0
        data = b"".join(self._storage.iter_range(self._key, self._pos, end))
        buffer[:len(data)] = data
        self._pos += len(data)
        return len(data)


def zip_member(storage: Storage, key: str, member: str) -> tuple[Iterator[bytes], int]:
    """(the bytes of `member` of the stored zip `key` in chunks, its size). Raises
    ObjectNotFound, or KeyError when the zip has no such member."""
    fh = io.BufferedReader(StoredObject(storage, key), 64 * 1024)
    try:
        archive = zipfile.ZipFile(fh)
        info = archive.getinfo(member)
        stream = archive.open(info)
    except BaseException:
        fh.close()
        raise

    def chunks() -> Iterator[bytes]:
        with fh, archive, stream:
            while chunk := stream.read(CHUNK_BYTES):
                yield chunk

    return chunks(), info.file_size
