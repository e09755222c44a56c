"""Streaming `multipart/form-data` upload: the `file` part goes to a temp file in chunks while
its sha256 is taken, small text fields (`options`) are kept in memory, each up to MAX_FIELD_BYTES
and at most MAX_FORM_FIELDS of them. Memory use stays constant whatever the upload size
(python-multipart's push parser, no spooling)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from fastapi import Request
from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header

from jaxport.errors import ArchiveTooLarge, JaxportError

MAX_FIELD_BYTES = 64 * 1024
MAX_FORM_FIELDS = 8  # parts other than `file`; the API reads one (`options`)
ARCHIVE_SUFFIXES = (".keras", ".zip", ".tar.gz", ".tgz")


class UploadError(JaxportError):
    """The request body is not the multipart form the API expects."""

    code = "bad_upload"
    http_status = 400


def archive_form(field: str, description: str) -> dict:
    """The OpenAPI `openapi_extra` of a route taking this module's form: `file` (the archive)
    and one optional text `field` (the request body is read by `receive_upload`, so FastAPI
    cannot infer it)."""
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary",
                     "description": "a .keras file, or a .zip/.tar.gz with jaxport.toml"},
            field: {"type": "string", "description": description}}}}}}}


@dataclass
class Upload:
    """The received `file` part (on local disk) and the other form fields."""

    path: Path
    filename: str
    sha256: str
    size: int
    fields: dict[str, str] = field(default_factory=dict)


def safe_filename(name: str) -> str:
    """A filesystem-safe base name that keeps a known archive suffix (`model.keras`)."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", name.replace("\\", "/").rsplit("/", 1)[-1])[:100]
    base = base.lstrip(".") or "upload"
    return base if base.lower().endswith(ARCHIVE_SUFFIXES) else base + ".bin"


class _FormReceiver:
    """Callbacks for MultipartParser: routes each part to the file or to a field buffer."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.upload: Upload | None = None
        self.fields: dict[str, str] = {}
        self._field_parts = 0
        self.too_large = False
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name = ""
        self._file: BinaryIO | None = None
        self._hash = hashlib.sha256()
        self._size = 0
        self._buffer = bytearray()

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._add("_header_field", d[s:e]),
            "on_header_value": lambda d, s, e: self._add("_header_value", d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _add(self, attr: str, data: bytes) -> None:
        setattr(self, attr, getattr(self, attr) + data)

    def _part_begin(self) -> None:
        self._headers, self._name, self._buffer = {}, "", bytearray()

    def _header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field = self._header_value = b""

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = params.get(b"name", b"").decode("utf-8", "replace")
        if self._name == "file":
            if self.upload is not None:
                raise UploadError("more than one `file` part", "send exactly one archive")
            filename = params.get(b"filename", b"upload").decode("utf-8", "replace")
            path = self.directory / safe_filename(filename)
            self._file = open(path, "wb")
            self.upload = Upload(path=path, filename=filename, sha256="", size=0)
        else:
            self._field_parts += 1
            if self._field_parts > MAX_FORM_FIELDS:
                raise UploadError(f"more than {MAX_FORM_FIELDS} form fields besides `file`",
                                  "send `file` and optional `options`")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._file is not None:
            self._size += len(chunk)
            if self._size > self.max_bytes:
                self.too_large = True
                return
            self._hash.update(chunk)
            self._file.write(chunk)
        elif len(self._buffer) + len(chunk) > MAX_FIELD_BYTES:
            raise UploadError(f"form field {self._name!r} is larger than {MAX_FIELD_BYTES} bytes")
        else:
            self._buffer += chunk

    def _part_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            assert self.upload is not None
            self.upload.sha256, self.upload.size = self._hash.hexdigest(), self._size
        elif self._name:
            self.fields[self._name] = self._buffer.decode("utf-8", "replace")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


async def receive_upload(request: Request, directory: Path, max_bytes: int) -> Upload:
    """Read the whole request body into `directory/<safe filename>` plus fields.

    Raises UploadError (malformed body, no `file` part) or ArchiveTooLarge. An over-size body
    is drained without being stored, so the client reads a clean 413.
    """
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise UploadError("expected a multipart/form-data body",
                          "send the archive as form field `file` (curl -F file=@model.keras)")
    receiver = _FormReceiver(directory, max_bytes)
    parser = MultipartParser(boundary, receiver.callbacks())
    try:
        async for chunk in request.stream():
            if chunk and not receiver.too_large:
                parser.write(chunk)
        if not receiver.too_large:
            parser.finalize()
    except MultipartParseError as exc:
        raise UploadError(f"malformed multipart body: {exc}") from None
    finally:
        receiver.close()
    if receiver.too_large:
        raise ArchiveTooLarge(f"upload is larger than the limit of {max_bytes} bytes",
                              "ask the operator to raise JAXPORT_MAX_UPLOAD_BYTES")
    if receiver.upload is None or not receiver.upload.sha256:
        raise UploadError("no `file` part in the form", "send the archive as form field `file`")
    receiver.upload.fields = receiver.fields
    return receiver.upload
