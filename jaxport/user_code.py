"""Trusted mode: importing a user's JAX function and params (CLI `--function`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Callable

import numpy as np

from jaxport.errors import JaxportError


def load_function(ref: str) -> Callable[..., Any]:
    """Import `path/to/module.py:name` and return the callable (runs the module's code)."""
    path_text, sep, name = ref.rpartition(":")
    path = Path(path_text)
    if not sep or not name or path.suffix != ".py":
        raise JaxportError(f"--function {ref!r} is not path/to/module.py:name")
    if not path.is_file():
        raise JaxportError(f"--function: {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"jaxport_user_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - user code may raise anything
        raise JaxportError(f"importing {path} failed: {type(exc).__name__}: {exc}") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise JaxportError(f"{path} has no function {name!r}")
    return fn


def load_params(path: Path) -> dict[str, np.ndarray]:
    """A flat params dict from `.npz` (no pickles)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except Exception as exc:  # noqa: BLE001
        raise JaxportError(f"--params {path}: cannot read: {exc}",
                           "write it with numpy.savez(path, name=array, ...)") from None
