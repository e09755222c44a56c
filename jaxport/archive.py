"""Model archives: a bare `.keras` file, or a `.zip`/`.tar.gz` with `jaxport.toml` (DESIGN.md §2).

Everything here is defensive: uploads are hostile until proven otherwise. Before a byte is
inflated we check the type by magic bytes, member counts, declared sizes, compression methods
(bzip2/lzma members are refused: `zipfile` inflates a bzip2 block in one call) and
compression ratios, and member paths (no absolute paths, `..`, links or devices). The same
checks run on the `.keras` files inside, since `keras.saving.load_model` reads a whole weights
member into memory.

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
from typing import IO, Iterator

from jaxport.errors import ArchiveError, ArchiveTooLarge, ManifestError
from jaxport.manifest import MANIFEST_NAME, SAMPLES_NAME, Manifest, parse_manifest

_ZIP_MAGIC = b"PK\x03\x04"
_GZIP_MAGIC = b"\x1f\x8b"
_ALLOWED_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}
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


def _check_name(name: str, where: str) -> str:
    norm = posixpath.normpath(name)
    if name.startswith("/") or norm.startswith("..") or "\\" in name or "\0" in name:
        raise ArchiveError(f"member {name!r} has an unsafe path", "use relative paths only",
                           where=where)
    return norm


def _check_zip(zf: zipfile.ZipFile, where: str, limits: ArchiveLimits) -> list[zipfile.ZipInfo]:
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise ArchiveError(f"{len(infos)} members, more than the {limits.max_members} allowed",
                           where=where)
    total = 0
    for info in infos:
        _check_name(info.filename, where)
        if info.compress_type not in _ALLOWED_ZIP_METHODS:
            raise ArchiveError(
                f"member {info.filename!r} uses compression method {info.compress_type}",
                "only stored and deflated members are accepted; re-create the zip with "
                "`zip -r` or Python's zipfile defaults",
                where=where,
            )
        total += info.file_size
        if (info.file_size > limits.ratio_floor
                and info.file_size > limits.max_ratio * max(info.compress_size, 1)):
            raise ArchiveError(
                f"member {info.filename!r} inflates {info.file_size / max(info.compress_size, 1):.0f}×"
                f" (limit {limits.max_ratio:.0f}×): refusing a likely zip bomb", where=where)
    if total > limits.max_unpacked_bytes:
        raise ArchiveTooLarge(
            f"unpacks to {total} bytes, over the {limits.max_unpacked_bytes}-byte limit",
            "ship smaller models, or raise JAXPORT_MAX_UNPACKED_BYTES", where=where)
    return infos


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
        names = {i.filename for i in _check_zip(zf, where, limits)}
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


def _iter_tar(path: Path, limits: ArchiveLimits, where: str) -> Iterator[tuple[tarfile.TarInfo, tarfile.TarFile]]:
    """Stream a tar.gz member by member, enforcing limits before any payload is read."""
    total = 0
    count = 0
    try:
        with tarfile.open(path, mode="r|gz") as tf:
            for info in tf:
                count += 1
                if count > limits.max_members:
                    raise ArchiveError(f"more than {limits.max_members} members", where=where)
                _check_name(info.name, where)
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
                        "ship smaller models, or raise JAXPORT_MAX_UNPACKED_BYTES", where=where)
                yield info, tf
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise ArchiveError(f"not a readable .tar.gz archive: {exc}", "re-create the archive",
                           where=where) from None


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
            infos = _check_zip(zf, where, limits)
            names = [i.filename for i in infos]
            root = _find_root(names)
            if root is None:
                if "config.json" in names:
                    return ArchiveInfo("keras", None, names)
                raise ArchiveError(
                    f"the zip holds no {MANIFEST_NAME} and is not a .keras file",
                    f"put {MANIFEST_NAME} at the top of the archive (DESIGN.md §2)", where=where)
            info = zf.getinfo(root + MANIFEST_NAME)
            if info.file_size > _MANIFEST_MAX_BYTES:
                raise ManifestError(f"{MANIFEST_NAME} is over 1 MiB", where=where)
            manifest = _read_manifest(zf.read(info), where)
    else:
        names, text = [], None
        for info, tf in _iter_tar(path, limits, where):
            names.append(posixpath.normpath(info.name))
            if posixpath.basename(info.name) == MANIFEST_NAME and info.name.count("/") <= 1:
                if info.size > _MANIFEST_MAX_BYTES:
                    raise ManifestError(f"{MANIFEST_NAME} is over 1 MiB", where=where)
                text = tf.extractfile(info).read()
        root = _find_root(names)
        if root is None or text is None:
            raise ArchiveError(f"the archive holds no {MANIFEST_NAME}",
                               f"put {MANIFEST_NAME} at the top of the archive", where=where)
        manifest = _read_manifest(text, where)
    _check_manifest_files(manifest, {posixpath.normpath(n) for n in names}, root, where)
    return ArchiveInfo(kind, manifest, names)


def _copy_bounded(src: IO[bytes], dst: Path, limit: int, where: str) -> None:
    written = 0
    with open(dst, "wb") as out:
        while chunk := src.read(_CHUNK):
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
            for zi in zf.infolist():
                if zi.is_dir():
                    continue
                target = dest / _check_name(zi.filename, where)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(zi) as src:
                    _copy_bounded(src, target, zi.file_size, where)
    else:
        for ti, tf in _iter_tar(path, limits, where):
            target = dest / _check_name(ti.name, where)
            target.parent.mkdir(parents=True, exist_ok=True)
            _copy_bounded(tf.extractfile(ti), target, ti.size, where)
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
