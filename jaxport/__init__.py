"""jaxport: Keras 3 on JAX models and JAX functions → verified SavedModel, TFLite and TF.js.

Library entry point: `jaxport.export(fn, params, inputs=..., targets=..., out_dir=...)`.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.2.0"

from jaxport.api import export  # noqa: E402

__all__ = ["export", "__version__"]
