"""The optional parts of jaxport and what installs each: one table, `EXTRAS`.

The base install (`pip install jaxport`) is the engine, the library and the `convert` and
`inspect` commands. `jaxport[service]` adds the API, the workers and the storage backends
(`up`, `serve`, `worker`, `submit`, ...), `jaxport[onnx]` the `onnx` target. The TF.js converter
(`tensorflowjs`, for the `tfjs` target) is installed with `pip install --no-deps` beside the
package: its own metadata requires TF Decision Forests, which pins an older TensorFlow, so it
cannot be a dependency (pyproject.toml). Each entry lists the modules the part imports; one that
cannot be found makes `require` raise `MissingExtra` naming the part and its install command.
Finding a module does not import it: checking is cheap.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from jaxport.errors import MissingExtra


@dataclass(frozen=True)
class Extra:
    """An optional part: the modules it brings and the command that installs them."""

    name: str
    modules: tuple[str, ...]
    install: str


EXTRAS: dict[str, Extra] = {e.name: e for e in (
    Extra("service", ("celery", "redis", "fastapi", "uvicorn", "multipart", "boto3", "httpx",
                      "psutil", "prometheus_client", "keras_hub"),
          "pip install 'jaxport[service]'"),
    Extra("onnx", ("jax2onnx", "onnx", "onnxruntime"), "pip install 'jaxport[onnx]'"),
    Extra("tfjs", ("tensorflowjs",), "pip install --no-deps 'tensorflowjs==4.22.0'"),
)}
"""Extra name -> what it brings. The `tfjs` command installs the version pyproject.toml's `tfjs`
group locks (tests/engine/test_extras.py checks they agree)."""


def _findable(module: str) -> bool:
    """Whether `module` can be imported as far as the import system says without importing it
    (a finder that refuses it, or a None left in sys.modules, count as not findable)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_modules(extra: str) -> list[str]:
    """The modules of `extra` that cannot be found (empty when it is installed)."""
    return [m for m in EXTRAS[extra].modules if not _findable(m)]


def check(extra: str, needed_for: str) -> MissingExtra | None:
    """The `MissingExtra` to raise when `extra` is not (wholly) installed, else None;
    `needed_for` says what the user asked for that needs it (e.g. "the onnx target")."""
    missing = missing_modules(extra)
    return missing_extra(extra, needed_for, f"no module {', '.join(map(repr, missing))}") if missing else None


def require(extra: str, needed_for: str) -> None:
    """Raise `check(extra, needed_for)`'s error, if any."""
    error = check(extra, needed_for)
    if error is not None:
        raise error


def missing_extra(extra: str, needed_for: str, why: str) -> MissingExtra:
    """The error for `needed_for` lacking `extra`, `why` saying what was not found."""
    part = "the TF.js converter" if extra == "tfjs" else f"the {extra!r} extra"
    return MissingExtra(f"{needed_for} needs {part}, which is not installed ({why})",
                        EXTRAS[extra].install, extra=extra)


def extra_of_module(module: str) -> str | None:
    """The extra whose modules include `module`'s top-level package, else None."""
    top = module.partition(".")[0]
    return next((e.name for e in EXTRAS.values() if top in e.modules), None)
