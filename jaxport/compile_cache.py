"""JAX's persistent compilation cache, so that what one process compiles the next one reuses.

Loading a Keras model runs its weight initializers (dozens of small XLA compiles, seconds
each on a cold process) and the reference compiles the model once per batch size; a worker's
conversion child dies after its job, and a CLI run after its model. With the cache on disk,
the next child or run loads the compiled executables instead (MobileNetV2 96: `load` 27 s →
5 s in a fresh process).

Configuration (`enable_from_env`):

- `JAXPORT_COMPILE_CACHE_DIR`: the directory, default `$XDG_CACHE_HOME/jaxport/xla`
  (`~/.cache/jaxport/xla`); `off` turns the cache off.
- `JAXPORT_COMPILE_CACHE_MAX_MB`: size cap, default 1024; least recently used entries are
  evicted past it.

Several processes may share one directory: with a size cap JAX takes a file lock
(`<dir>/.lockfile`) around every read, write and eviction.
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


class CacheConfigError(JaxportError):
    """A compile cache variable holds something unusable."""

    code = "bad_config"


def default_dir() -> Path:
    """`$XDG_CACHE_HOME/jaxport/xla`, `~/.cache/jaxport/xla` when XDG_CACHE_HOME is unset."""
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "jaxport" / "xla"


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

    Call it before the process compiles anything: JAX opens its cache at the first compile.
    Entries are kept whatever their compile time (the initializers Keras runs are small and
    many), least recently used first out past `max_bytes`.
    """
    import jax

    directory.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    jax.config.update("jax_compilation_cache_max_size", int(max_bytes))


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
