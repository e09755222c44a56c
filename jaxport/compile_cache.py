"""Persistent compile caches, so that what one process compiles the next one reuses.

Loading a model and computing the JAX reference compile with XLA in JAX; running the orbax
SavedModel in TensorFlow compiles its `XlaCallModule` with TensorFlow's XLA once per batch
size (MobileNetV2 96: ~5 s each). A worker's conversion child dies after its job and a CLI run
after its model, and what they compiled with them. With the caches on disk the next child or
run loads the compiled executables instead: JAX's persistent cache in `<dir>/jax`, TensorFlow's
(`--tf_xla_persistent_cache_directory`) in `<dir>/tf`.

Configuration (`enable_from_env`):

- `JAXPORT_COMPILE_CACHE_DIR`: the directory, default `$XDG_CACHE_HOME/jaxport/compile`
  (`~/.cache/jaxport/compile`); `off` turns both caches off.
- `JAXPORT_COMPILE_CACHE_MAX_MB`: size cap, default 1024, half for each part. JAX evicts its
  least recently used entries past it; TensorFlow's part, which has no cap of its own, is
  trimmed (oldest first) each time a process enables the cache.

Several processes may share one directory: with a size cap JAX takes a file lock
(`<dir>/jax/.lockfile`) around every read, write and eviction; TensorFlow keeps one file per
compiled cluster and compiles anew when it finds none.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from jaxport.errors import JaxportError

log = logging.getLogger(__name__)

DIR_ENV = "JAXPORT_COMPILE_CACHE_DIR"
MAX_MB_ENV = "JAXPORT_COMPILE_CACHE_MAX_MB"
DEFAULT_MAX_MB = 1024
OFF = "off"
TF_FLAGS_ENV = "TF_XLA_FLAGS"
TF_CACHE_FLAG = "--tf_xla_persistent_cache_directory"


class CacheConfigError(JaxportError):
    """A compile cache variable holds something unusable."""

    code = "bad_config"


def default_dir() -> Path:
    """`$XDG_CACHE_HOME/jaxport/compile` (`~/.cache/jaxport/compile` when it is unset)."""
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "jaxport" / "compile"


def configured() -> tuple[Path | None, int]:
    """(directory or None when off, cap in bytes) from the environment."""
    raw_dir = os.environ.get(DIR_ENV, "").strip()
    directory = None if raw_dir.lower() == OFF else Path(raw_dir) if raw_dir else default_dir()
    raw_mb = os.environ.get(MAX_MB_ENV, "").strip()
    try:
        max_mb = int(raw_mb) if raw_mb else DEFAULT_MAX_MB
    except ValueError:
        raise CacheConfigError(f"{MAX_MB_ENV} must be an integer (MB), got {raw_mb!r}",
                               f"e.g. {MAX_MB_ENV}={DEFAULT_MAX_MB}") from None
    if max_mb <= 0:
        raise CacheConfigError(f"{MAX_MB_ENV} must be positive, got {max_mb}",
                               f"turn the cache off with {DIR_ENV}={OFF} instead")
    return directory, max_mb * 2**20


def enable(directory: Path, max_bytes: int) -> None:
    """Cache every XLA compile of this process (and of children forked later) in `directory`.

    Call it before the process compiles anything: JAX opens its cache at the first compile,
    TensorFlow reads `TF_XLA_FLAGS` at its first XLA compile. JAX keeps entries whatever their
    compile time (a reference on a small model compiles in milliseconds).
    """
    import jax

    jax_dir, tf_dir = directory / "jax", directory / "tf"
    for part in (jax_dir, tf_dir):
        part.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(jax_dir))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    jax.config.update("jax_compilation_cache_max_size", int(max_bytes) // 2)
    enable_tensorflow(tf_dir, int(max_bytes) // 2)


def enable_tensorflow(directory: Path, max_bytes: int) -> None:
    """Point TensorFlow's XLA cache at `directory` (kept in `TF_XLA_FLAGS` beside the flags
    already there, so children inherit it) and trim it to `max_bytes`."""
    flags = [f for f in os.environ.get(TF_FLAGS_ENV, "").split()
             if not f.startswith(TF_CACHE_FLAG)]
    os.environ[TF_FLAGS_ENV] = " ".join([*flags, f"{TF_CACHE_FLAG}={directory}"])
    trim(directory, max_bytes)


def trim(directory: Path, max_bytes: int) -> None:
    """Delete the least recently modified files of `directory` until it holds `max_bytes`."""
    files = []
    for path in directory.iterdir():
        try:
            stat = path.stat()
        except FileNotFoundError:  # removed by another process meanwhile
            continue
        if path.is_file():
            files.append((stat.st_mtime, stat.st_size, path))
    total = sum(size for _, size, _ in files)
    for _, size, path in sorted(files):
        if total <= max_bytes:
            break
        path.unlink(missing_ok=True)
        total -= size


def enable_from_env() -> Path | None:
    """`enable` as the environment says (module docstring); the directory, or None when off.

    A directory that cannot be created leaves the cache off with a warning: it only saves time.
    """
    directory, max_bytes = configured()
    if directory is None:
        return None
    try:
        enable(directory, max_bytes)
    except OSError as exc:
        log.warning("compile cache off: cannot use %s: %s", directory, exc.strerror or exc)
        return None
    return directory
