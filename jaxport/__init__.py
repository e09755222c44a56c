"""jaxport: Keras 3 on JAX models and JAX functions → verified SavedModel, TFLite and TF.js.

Library entry point: `jaxport.export(fn, params, inputs=..., targets=..., out_dir=...)`.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")



def _package_version() -> str:
    """The installed distribution's version (its metadata); in a source checkout that was never
    installed, the version pyproject.toml beside the package states; else "0+unknown"."""
    from importlib import metadata

    try:
        return metadata.version("jaxport")
    except metadata.PackageNotFoundError:
        import re
        from pathlib import Path

        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        found = re.search(r'^version = "([^"]+)"', pyproject.read_text(), re.M) if pyproject.is_file() else None
        return found.group(1) if found else "0+unknown"


__version__ = _package_version()

from jaxport.api import export  # noqa: E402

__all__ = ["export", "__version__"]
