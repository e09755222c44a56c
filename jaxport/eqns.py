"""How refusals describe a jaxpr equation: its user-code location, params and Keras scope.

Shared by the converters that walk jaxprs (the plain-TF lowering, the ONNX target); imports
JAX only, so a target can describe a refusal without importing TensorFlow.
"""

from __future__ import annotations

from typing import Any

from jax._src import source_info_util
from jax.extend import core as jcore


UNKNOWN_LOCATION = "an unknown location"


def location(eqn: jcore.JaxprEqn) -> str:
    """`file:line` of the innermost user frame that produced `eqn`, or `an unknown location`."""
    frame = source_info_util.user_frame(eqn.source_info.traceback)
    if frame is None:
        return UNKNOWN_LOCATION
    return f"{frame.file_name}:{frame.start_line}"


def short_params(params: dict[str, Any], limit: int = 160) -> str:
    """A one-line summary of an eqn's params without nested jaxprs or callables."""
    parts = []
    for k, v in params.items():
        if isinstance(v, (jcore.ClosedJaxpr, jcore.Jaxpr)) or callable(v):
            continue
        if isinstance(v, (tuple, list)) and any(isinstance(x, (jcore.ClosedJaxpr, jcore.Jaxpr)) for x in v):
            continue
        text = repr(v)
        if "\n" in text:
            continue
        parts.append(f"{k}={text[:40] + '…' if len(text) > 40 else text}")
    out = ", ".join(parts)
    return out[:limit] + "…" if len(out) > limit else out


def scope(eqn: jcore.JaxprEqn) -> str:
    """` (inside <name stack>)` when the eqn was traced under named scopes, e.g. Keras layers."""
    stack = str(eqn.source_info.name_stack)
    return f" (inside {stack})" if stack else ""
