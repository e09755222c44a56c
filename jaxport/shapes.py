"""Symbolic shapes: declared specs → `jax.ShapeDtypeStruct`s, the function traced once on them
(`trace`), and output specs from that trace."""

from __future__ import annotations

import re
from typing import Any

import jax
import numpy as np
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


def trace(function: Function, params: Any) -> tuple[jax.core.ClosedJaxpr, Any]:
    """`jax.make_jaxpr(function.fn, return_shape=True)` on `symbolic_args(function)`: (the
    closed jaxpr, the output pytree of `ShapeDtypeStruct`s).

    Traced once and kept on the function (`Function.traced`) while its `fn`, the params'
    structure, shapes and dtypes and the constraints stay the same, so the output inference,
    the lowering and inspection share one trace. Raises whatever tracing raises (not kept)."""
    leaves, tree = jax.tree_util.tree_flatten(params)
    key = (function.fn, tree, tuple((np.shape(x), getattr(x, "dtype", type(x))) for x in leaves),
           tuple(function.constraints))
    if function.traced is None or function.traced[0] != key:
        closed, out = jax.make_jaxpr(function.fn, return_shape=True)(params, *symbolic_args(function))
        function.traced = (key, closed, out)
    return function.traced[1], function.traced[2]


def _dim_name(dim) -> int | str:
    return dim if isinstance(dim, int) else str(dim)


def infer_outputs(program: Program) -> None:
    """Fill each function's `output_specs` (and empty `outputs`) by abstract evaluation.

    Raises `ShapeError` if tracing fails or the returned names differ from `outputs`.

    This runs before any export so that a declared shape that does not fit the models is
    reported once, clearly, instead of as a converter traceback.
    """
    for function in program.functions.values():
        out = _trace_learning_constraints(function, program.params)
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


def _trace_learning_constraints(function: Function, params: Any) -> Any:
    """The function's output pytree from its symbolic `trace`, or the exception that stopped it.

    When a model compares a symbolic dim with a constant (`s <= 16` to slice a position
    table), jax cannot decide it for every `s`. Valid inputs satisfy the comparison, so we add
    it as a constraint and trace again, MAX_LEARNED_CONSTRAINTS times at most; the constraints
    are reported. Past that, the last inconclusive comparison is the exception returned.
    """
    learned = 0
    while True:
        try:
            return trace(function, params)[1]
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
