"""Model archives: a bare `.keras` file, or a `.zip`/`.tar.gz` with `jaxport.toml` (see docs/archive.md).

Everything here is defensive: uploads are hostile until proven otherwise. Before a byte is
inflated we check the type by magic bytes, member counts, declared sizes, compression methods
(bzip2/lzma members are refused: `zipfile` inflates a bzip2 block in one call) and
compression ratios, encrypted members, and member paths (no absolute paths, `..`, links or
devices, no two members naming one path). A `.tar.gz` declares no compressed size per member,
so its ratio is measured while the stream is read. Reading a zip member checks its CRC. The
same checks run on the `.keras` files inside, since `keras.saving.load_model` reads a whole
weights member into memory.

`inspect_archive` is cheap (no TF, no extraction) and is what the HTTP API calls before it
queues a job; `extract_archive` is what the engine calls.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from jaxport.errors import ArchiveError, ArchiveTooLarge, ManifestError
from jaxport.manifest import MANIFEST_NAME, SAMPLES_NAME, Manifest, parse_manifest

_ZIP_MAGIC = b"PK\x03\x04"
_GZIP_MAGIC = b"\x1f\x8b"
_ALLOWED_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}
_ZIP_ENCRYPTED = 0x1  # general purpose flag bit 0
_ZIP_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError)
_TAR_READ_ERRORS = (tarfile.TarError, zlib.error, EOFError, OSError)
_MANIFEST_MAX_BYTES = 1 << 20
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on what an archive may unpack to. Defaults fit large real models."""

    max_members: int = 1000
    max_unpacked_bytes: int = 8 << 30
    max_ratio: float = 100.0  # uncompressed / compressed, for members over `ratio_floor`
    ratio_floor: int = 1 << 20

    @classmethod
    def from_env(cls) -> "ArchiveLimits":
        value = os.environ.get("JAXPORT_MAX_UNPACKED_BYTES")
        return cls(max_unpacked_bytes=int(value)) if value else cls()


@dataclass
class ArchiveInfo:
    """What `inspect_archive` learned: the kind, the manifest (None for a bare model), members."""

    kind: str  # "keras" | "zip" | "tar.gz"
    manifest: Manifest | None
    members: list[str] = field(default_factory=list)


@dataclass
class Source:
    """An extracted archive, ready for `compose.load_program`."""

    kind: str
    manifest: Manifest | None
    models: dict[str, Path]  # model name -> .keras path
    samples: Path | None


def _kind(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise ArchiveError(f"cannot read {path.name}: {exc.strerror}") from None
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if head.startswith(_GZIP_MAGIC):
        return "tar.gz"
    if not head:
        raise ArchiveError(f"{path.name} is empty", "upload a .keras, .zip or .tar.gz file")
    raise ArchiveError(
        f"{path.name} is neither a .keras file nor a .zip or .tar.gz archive",
        "upload a Keras 3 native .keras file (model.save('m.keras')), or a .zip/.tar.gz holding "
        f"{MANIFEST_NAME} and the .keras files it names",
    )


class _MemberPaths:
    """The paths of an archive's members so far: refuses two members naming one path after
    normalisation (`a/b`, `a//b`, `./a/b`) and a path that is both a file and a folder."""

    def __init__(self, where: str) -> None:
        self.where = where
        self._seen: dict[str, str] = {}  # normalised path -> the member name that took it
        self._files: set[str] = set()
        self._folders: set[str] = set()  # every folder a member's path passes through

    def add(self, name: str, is_dir: bool) -> str:
        """Record member `name`; return its normalised path (`.` for the root folder).

        Raises `ArchiveError` for an absolute path, a `..` part, or a path already taken."""
        norm = posixpath.normpath(name)
        if (name.startswith("/") or ".." in name.split("/") or "\\" in name or "\0" in name
                or (norm == "." and not is_dir)):
            raise ArchiveError(f"member {name!r} has an unsafe path", "use relative paths only",
                               where=self.where)
        if norm == ".":
            return norm
        if norm in self._seen:
            raise ArchiveError(f"members {self._seen[norm]!r} and {name!r} are the same path",
                               "give every member its own path; re-create the archive",
                               where=self.where)
        parts = norm.split("/")
        parents = {"/".join(parts[:i]) for i in range(1, len(parts))}
        clash = (parents & self._files) or (set() if is_dir else {norm} & self._folders)
        if clash:
            raise ArchiveError(f"{clash.pop()!r} is a file and a folder (member {name!r})",
                               "give every member its own path; re-create the archive",
                               where=self.where)
        self._seen[norm] = name
        self._folders |= parents | ({norm} if is_dir else set())
        if not is_dir:
            self._files.add(norm)
        return norm


def _check_ratio(name: str, size: int, compressed: int, limits: ArchiveLimits, where: str) -> None:
    """Refuse member `name` if its `size` bytes came from more than `max_ratio` times fewer
    `compressed` bytes (members up to `ratio_floor` bytes are not checked)."""
    ratio = size / max(compressed, 1)
    if size > limits.ratio_floor and ratio > limits.max_ratio:
        raise ArchiveError(
            f"member {name!r} inflates {ratio:.0f}× (limit {limits.max_ratio:.0f}×): refusing a "
            "likely zip bomb", "real model weights compress far less; re-create the archive "
            "from the model files", where=where)


def _check_zip(zf: zipfile.ZipFile, where: str,
               limits: ArchiveLimits) -> dict[str, zipfile.ZipInfo]:
    """The zip's file members by normalised path, after every check its directory allows."""
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise ArchiveError(f"{len(infos)} members, more than the {limits.max_members} allowed",
                           where=where)
    paths = _MemberPaths(where)
    files = {}
    total = 0
    for info in infos:
        norm = paths.add(info.filename, info.is_dir())
        if not info.is_dir():
            files[norm] = info
        if info.flag_bits & _ZIP_ENCRYPTED:
            raise ArchiveError(f"member {info.filename!r} is encrypted",
                               "re-create the zip without a password", where=where)
        if info.compress_type not in _ALLOWED_ZIP_METHODS:
            raise ArchiveError(
                f"member {info.filename!r} uses compression method {info.compress_type}",
                "only stored and deflated members are accepted; re-create the zip with "
                "`zip -r` or Python's zipfile defaults",
                where=where,
            )
        total += info.file_size
        _check_ratio(info.filename, info.file_size, info.compress_size, limits, where)
    if total > limits.max_unpacked_bytes:
        raise ArchiveTooLarge(
            f"unpacks to {total} bytes, over the {limits.max_unpacked_bytes}-byte limit",
            "ship smaller models, or raise JAXPORT_MAX_UNPACKED_BYTES", where=where)
    return files


def _zip_chunks(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> Iterator[bytes]:
    """The bytes of a checked member; a bad CRC or a corrupt entry is an `ArchiveError`."""
    try:
        with zf.open(info) as src:
            while chunk := src.read(_CHUNK):
                yield chunk
    except _ZIP_READ_ERRORS as exc:
        raise ArchiveError(f"member {info.filename!r} cannot be read: {exc}",
                           "the archive is corrupt; re-create it", where=where) from None


def _open_zip(path: Path, where: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ArchiveError(f"not a readable zip file: {exc}", "re-create the archive",
                           where=where) from None


def check_keras_file(path: Path, where: str = "", limits: ArchiveLimits | None = None) -> None:
    """Check that `path` is a plausible, bounded Keras 3 `.keras` file (a zip with config.json)."""
    where = where or path.name
    limits = limits or ArchiveLimits.from_env()
    with open(path, "rb") as f:
        is_zip = f.read(4) == _ZIP_MAGIC
    if not is_zip:
        raise ArchiveError("is not a Keras 3 .keras file (not a zip)",
                           "save the model with model.save('name.keras') in Keras 3",
                           where=where)
    with _open_zip(path, where) as zf:
        names = _check_zip(zf, where, limits)
    if "config.json" not in names:
        hint = ("this looks like a jaxport archive, not a .keras model" if MANIFEST_NAME in names
                else "save the model with model.save('name.keras') in Keras 3")
        raise ArchiveError("is not a Keras 3 .keras file (no config.json inside)", hint,
                           where=where)


def _find_root(names: list[str]) -> str | None:
    """The folder holding jaxport.toml: the archive root, or a single top-level folder."""
    if MANIFEST_NAME in names:
        return ""
    nested = [n for n in names if n.count("/") == 1 and n.endswith("/" + MANIFEST_NAME)]
    return nested[0][: -len(MANIFEST_NAME)] if len(nested) == 1 else None


def _read_manifest(text: bytes, where: str) -> Manifest:
    try:
        return parse_manifest(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise ManifestError(f"{MANIFEST_NAME} is not UTF-8 text", where=where) from None


def _check_manifest_files(manifest: Manifest, members: set[str], root: str, where: str) -> None:
    for name, rel in manifest.models.items():
        if posixpath.normpath(root + rel) not in members:
            raise ManifestError(
                f"models.{name} = {rel!r}, but the archive has no such file",
                f"add {rel} to the archive next to {MANIFEST_NAME}", where=where)


class _CountingReader:
    """A binary file that counts the bytes read from it: a tar stream's compressed input."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.count += len(data)
        return data


def _unreadable_tar(exc: BaseException, where: str) -> ArchiveError:
    return ArchiveError(f"not a readable .tar.gz archive: {exc}", "re-create the archive",
                        where=where)


def _tar_chunks(tf: tarfile.TarFile, info: tarfile.TarInfo, compressed: _CountingReader,
                limits: ArchiveLimits, where: str) -> Iterator[bytes]:
    """The bytes of a tar member, refused as soon as they inflate past the ratio limit."""
    start, produced = compressed.count, 0
    try:
        src = tf.extractfile(info)
        while chunk := src.read(_CHUNK):
            produced += len(chunk)
            _check_ratio(info.name, produced, compressed.count - start, limits, where)
            yield chunk
    except _TAR_READ_ERRORS as exc:
        raise _unreadable_tar(exc, where) from None


def _iter_tar(path: Path, limits: ArchiveLimits,
              where: str) -> Iterator[tuple[str, int, Iterator[bytes]]]:
    """Stream a tar.gz: (normalised path, size, bytes) per regular file, each checked before
    its payload is read. What the caller leaves unread is read here, under the same checks."""
    total = 0
    count = 0
    paths = _MemberPaths(where)
    try:
        with open(path, "rb") as raw:
            compressed = _CountingReader(raw)
            with tarfile.open(fileobj=compressed, mode="r|gz") as tf:
                for info in tf:
                    count += 1
                    if count > limits.max_members:
                        raise ArchiveError(f"more than {limits.max_members} members", where=where)
                    norm = paths.add(info.name, info.isdir())
                    if info.isdir():
                        continue
                    if not info.isfile():
                        raise ArchiveError(
                            f"member {info.name!r} is a link or special file",
                            "archives may hold regular files only", where=where)
                    total += info.size
                    if total > limits.max_unpacked_bytes:
                        raise ArchiveTooLarge(
                            f"unpacks to more than {limits.max_unpacked_bytes} bytes",
                            "ship smaller models, or raise JAXPORT_MAX_UNPACKED_BYTES",
                            where=where)
                    chunks = _tar_chunks(tf, info, compressed, limits, where)
                    yield norm, info.size, chunks
                    for _ in chunks:  # skipping would inflate unchecked
                        pass
    except _TAR_READ_ERRORS as exc:
        raise _unreadable_tar(exc, where) from None


def inspect_archive(path: Path, limits: ArchiveLimits | None = None) -> ArchiveInfo:
    """Cheap checks of an upload: kind, limits, manifest parses, named files present.

    Raises `ArchiveError`/`ManifestError`. Never imports TensorFlow or loads a model.
    """
    path = Path(path)
    limits = limits or ArchiveLimits.from_env()
    where = path.name
    kind = _kind(path)
    if kind == "zip":
        with _open_zip(path, where) as zf:
            files = _check_zip(zf, where, limits)
            names = list(files)
            root = _find_root(names)
            if root is None:
                if "config.json" in names:
                    return ArchiveInfo("keras", None, names)
                raise ArchiveError(
                    f"the zip holds no {MANIFEST_NAME} and is not a .keras file",
                    f"put {MANIFEST_NAME} at the top of the archive (see docs/archive.md)", where=where)
            info = files[root + MANIFEST_NAME]
            if info.file_size > _MANIFEST_MAX_BYTES:
                raise ManifestError(f"{MANIFEST_NAME} is over 1 MiB", where=where)
            manifest = _read_manifest(b"".join(_zip_chunks(zf, info, where)), where)
    else:
        names, text = [], None
        for name, size, chunks in _iter_tar(path, limits, where):
            names.append(name)
            if posixpath.basename(name) == MANIFEST_NAME and name.count("/") <= 1:
                if size > _MANIFEST_MAX_BYTES:
                    raise ManifestError(f"{MANIFEST_NAME} is over 1 MiB", where=where)
                text = b"".join(chunks)
        root = _find_root(names)
        if root is None or text is None:
            raise ArchiveError(f"the archive holds no {MANIFEST_NAME}",
                               f"put {MANIFEST_NAME} at the top of the archive", where=where)
        manifest = _read_manifest(text, where)
    _check_manifest_files(manifest, set(names), root, where)
    return ArchiveInfo(kind, manifest, names)


def _copy_bounded(chunks: Iterable[bytes], dst: Path, limit: int, where: str) -> None:
    written = 0
    with open(dst, "wb") as out:
        for chunk in chunks:
            written += len(chunk)
            if written > limit:
                raise ArchiveError("a member inflates past its declared size", where=where)
            out.write(chunk)


def extract_archive(path: Path, dest: Path, limits: ArchiveLimits | None = None) -> Source:
    """Check and unpack `path` into `dest`; return the models and samples it holds."""
    path, dest = Path(path), Path(dest)
    limits = limits or ArchiveLimits.from_env()
    info = inspect_archive(path, limits)
    if info.kind == "keras":
        check_keras_file(path, limits=limits)
        return Source("keras", None, {"model": path}, None)
    dest.mkdir(parents=True, exist_ok=True)
    where = path.name
    if info.kind == "zip":
        with _open_zip(path, where) as zf:
            for name, zi in _check_zip(zf, where, limits).items():
                target = dest / name
                target.parent.mkdir(parents=True, exist_ok=True)
                _copy_bounded(_zip_chunks(zf, zi, where), target, zi.file_size, where)
    else:
        for name, size, chunks in _iter_tar(path, limits, where):
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            _copy_bounded(chunks, target, size, where)
    root = dest / (_find_root(info.members) or "")
    manifest = info.manifest
    assert manifest is not None
    models = {}
    for name, rel in manifest.models.items():
        models[name] = root / rel
        check_keras_file(models[name], where=f"{where}: {rel}", limits=limits)
    samples = root / SAMPLES_NAME
    return Source(info.kind, manifest, models, samples if samples.exists() else None)


def check_zip_file(path: Path, where: str, limits: ArchiveLimits | None = None) -> None:
    """Apply the member rules (count, methods, sizes, ratios) to a zip such as `samples.npz`."""
    with _open_zip(path, where) as zf:
        _check_zip(zf, where, limits or ArchiveLimits.from_env())
