"""Symbolic shapes: declared specs → `jax.ShapeDtypeStruct`s, and output specs by `eval_shape`."""

from __future__ import annotations

import re
from typing import Any

import jax
from jax import export as jax_export

from jaxport.errors import ShapeError, first_line
from jaxport.program import Function, Program
from jaxport.specs import TensorSpec


def symbolic_args(function: Function) -> list[jax.ShapeDtypeStruct]:
    """One abstract value per input, symbols shared across inputs (equal names, equal sizes)."""
    symbols = function.symbols
    scope = jax_export.SymbolicScope(function.constraints)
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
        out = _eval_shape_learning_constraints(function, program.params)
        if isinstance(out, Exception):
            exc = out
            declared = ", ".join(f"{s.name}={s}" for s in function.inputs)
            raise ShapeError(
                f"function {function.name!r} does not trace with inputs {declared}: "
                f"{type(exc).__name__}: {first_line(exc)}",
                "check the input shapes and dtypes in [functions.*.inputs] against the models' "
                "expected inputs, and the axes of vmap and ops",
            )
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


_INCONCLUSIVE = re.compile(r"comparison '([^']+)' (<=|>=|<|>) '(-?\d+)' is inconclusive")
MAX_LEARNED_CONSTRAINTS = 8


def _eval_shape_learning_constraints(function: Function, params: Any) -> Any:
    """`jax.eval_shape` of the function; the output pytree, or the exception that stopped it.

    When a model compares a symbolic dim with a constant (`s <= 16` to slice a position
    table), jax cannot decide it for every `s`. Valid inputs satisfy the comparison, so we add
    it as a constraint and trace again, MAX_LEARNED_CONSTRAINTS times at most; the constraints
    are reported. Past that, the last inconclusive comparison is the exception returned.
    """
    learned = 0
    while True:
        try:
            return jax.eval_shape(function.fn, params, *symbolic_args(function))
        except jax.errors.InconclusiveDimensionOperation as exc:
            match = _INCONCLUSIVE.search(str(exc))
            constraint = " ".join(match.groups()) if match else None
            if (constraint is None or constraint in function.constraints
                    or learned == MAX_LEARNED_CONSTRAINTS):
                return exc
            function.constraints.append(constraint)
            learned += 1
        except Exception as exc:  # noqa: BLE001 - any tracing failure is a shape problem here
            return exc


def upper_bounds(function: Function) -> dict[str, int]:
    """Largest allowed size per symbol, from constraints of the form `s <= N` / `s < N`."""
    bounds: dict[str, int] = {}
    for c in function.constraints:
        m = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*(<=|<)\s*(\d+)\s*", c)
        if m:
            limit = int(m.group(3)) - (m.group(2) == "<")
            bounds[m.group(1)] = min(limit, bounds.get(m.group(1), limit))
    return bounds
