"""Symbolic shapes: declared specs → `jax.ShapeDtypeStruct`s, and output specs by `eval_shape`."""

from __future__ import annotations

import jax
from jax import export as jax_export

from jaxport.errors import ShapeError
from jaxport.program import Function, Program
from jaxport.specs import TensorSpec


def symbolic_args(function: Function) -> list[jax.ShapeDtypeStruct]:
    """One abstract value per input, symbols shared across inputs (equal names, equal sizes)."""
    symbols = function.symbols
    scope = jax_export.SymbolicScope()
    dims = dict(zip(symbols, jax_export.symbolic_shape(",".join(symbols), scope=scope))) if symbols else {}
    return [
        jax.ShapeDtypeStruct(tuple(dims[d] if isinstance(d, str) else d for d in s.shape), s.dtype)
        for s in function.inputs
    ]


def _dim_name(dim) -> int | str:
    return dim if isinstance(dim, int) else str(dim)


def infer_outputs(program: Program) -> None:
    """Fill each function's `output_specs` (and empty `outputs`) by abstract evaluation.

    Raises `ShapeError` if tracing fails or the returned names differ from `outputs`.

    This runs before any export so that a declared shape that does not fit the models is
    reported once, clearly, instead of as a converter traceback.
    """
    for function in program.functions.values():
        try:
            out = jax.eval_shape(function.fn, program.params, *symbolic_args(function))
        except Exception as exc:  # noqa: BLE001 - any tracing failure is a shape problem here
            declared = ", ".join(f"{s.name}={s}" for s in function.inputs)
            raise ShapeError(
                f"function {function.name!r} does not trace with inputs {declared}: "
                f"{type(exc).__name__}: {_first_line(exc)}",
                "check the input shapes and dtypes in [functions.*.inputs] against the models' "
                "expected inputs, and the axes of vmap and ops",
            ) from None
        if isinstance(out, dict) and not function.outputs:
            function.outputs = list(out)
        if not isinstance(out, dict) or set(out) != set(function.outputs):
            got = sorted(out) if isinstance(out, dict) else type(out).__name__
            raise ShapeError(
                f"function {function.name!r} returns {got}, expected outputs {function.outputs}"
            )
        function.output_specs = [
            TensorSpec(k, out[k].dtype, tuple(_dim_name(d) for d in out[k].shape))
            for k in function.outputs
        ]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:400] if text else ""
