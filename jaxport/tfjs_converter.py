"""The one place that imports the `tensorflowjs` converter.

`tensorflowjs` 4.22 imports `tensorflow_decision_forests` at import time (only to load TF-DF
SavedModels, which jaxport never makes). We keep TF-DF out of the install (pyproject's
`[tool.uv] override-dependencies`), so a stub module stands in for it here. The converter's
other import-time needs are real dependencies: `tf_keras`, `tensorflow_hub` (which needs
`pkg_resources`, hence `setuptools<81`) and `jax2tf` (imported by `convert_jax`).

Importing this module is cheap; `converters()` pays the TensorFlow import (seconds) once.
"""

from __future__ import annotations

import functools
import sys
import types
import warnings
from types import ModuleType

_STUBBED = "tensorflow_decision_forests"


@functools.cache
def converters() -> ModuleType:
    """Return `tensorflowjs.converters`, importing it (with the TF-DF stub) on first call."""
    if _STUBBED not in sys.modules:
        stub = types.ModuleType(_STUBBED)
        stub.__doc__ = "Stub installed by jaxport.tfjs_converter: TF-DF is not installed."
        sys.modules[_STUBBED] = stub
    with warnings.catch_warnings():
        # tensorflow_hub's `from pkg_resources import parse_version` warns on every import.
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        import tensorflowjs.converters as tfjs_converters
    return tfjs_converters


@functools.cache
def supported_ops() -> frozenset[str]:
    """TF op names the TF.js runtime maps (the converter's own `op_list/*.json`)."""
    import importlib.util
    import json
    from pathlib import Path

    # Located without importing the package, which would import TensorFlow.
    spec = importlib.util.find_spec("tensorflowjs")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("tensorflowjs is not installed")
    op_list = Path(next(iter(spec.submodule_search_locations))) / "op_list"
    names: set[str] = set()
    for path in op_list.glob("*.json"):
        names.update(op["tfOpName"] for op in json.loads(path.read_text()))
    return frozenset(names)
