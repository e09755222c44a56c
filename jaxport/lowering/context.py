"""The jaxpr interpreter: walks a closed jaxpr and emits TensorFlow ops through `RULES`.

Values flowing through the interpreter are numpy arrays (constants: literals, closed-over
consts and everything computed only from them, folded eagerly with JAX itself) or
`tf.Tensor`s. Any value may be *compact*: its shape broadcasts to its aval's shape (size-1
or missing leading dims), which is how `broadcast_in_dim` stays free and elementwise ops use
the runtimes' implicit broadcasting. `Ctx.full` materializes a compact value when needed.
Symbolic dims in avals and params (`b`, `2*s`, …) are evaluated from `tf.shape` of the inputs.
"""

from __future__ import annotations

from typing import Any, NoReturn, Sequence

import jax
import numpy as np
import tensorflow as tf
from jax._src.export import shape_poly
from jax.extend import core as jcore

from jaxport.eqns import UNKNOWN_LOCATION, location, scope, short_params
from jaxport.errors import LoweringError
from jaxport.lowering.registry import REFUSALS, RULES

Value = Any  # np.ndarray | tf.Tensor
DimValue = int | tf.Tensor

# Primitives that must not be folded even when all their operands are constants.
_NO_FOLD = {"broadcast_in_dim", "iota", "dim_as_value", "rng_uniform", "random_bits", "random_seed", "random_wrap"}
_FOLD_MAX_ELEMENTS = 1 << 22


def where(eqn: jcore.JaxprEqn, outer: Sequence[jcore.JaxprEqn] = ()) -> str:
    """`eqn`'s user location, else that of the innermost enclosing call (`outer`, outermost
    first) that has one: an eqn inside a library's jitted function (jnp.linalg.cholesky) was
    traced without the user's frames, its call was not."""
    for e in (eqn, *reversed(outer)):
        loc = location(e)
        if loc != UNKNOWN_LOCATION:
            return loc
    return UNKNOWN_LOCATION


def no_rule_error(eqn: jcore.JaxprEqn, outer: Sequence[jcore.JaxprEqn] = ()) -> LoweringError:
    """The error for `eqn`'s primitive having no rule (`outer`: the enclosing call eqns): the
    refusal's own reason and hint when it is a deliberate refusal (`REFUSALS`), else the generic one."""
    name = eqn.primitive.name
    refusal = REFUSALS.get(name)
    if refusal is not None:
        return LoweringError(
            f"primitive {name} ({short_params(eqn.params)}) at {where(eqn, outer)} has no lowering: {refusal.why}",
            refusal.hint + scope(eqn),
        )
    return LoweringError(
        f"primitive {name} ({short_params(eqn.params)}) at {where(eqn, outer)} has no lowering",
        f"the TF.js target and the plain-TF TFLite path need every primitive lowered to TF ops{scope(eqn)}; "
        "rewrite that code with supported jnp/lax operations (see docs/lowering.md), or build "
        "only the savedmodel/tflite targets, which use the XLA path",
    )


def _eval_dim_expr(e: Any, env: dict[str, tf.Tensor]) -> DimValue:
    """Evaluate a jax.export symbolic dim expression with `env` mapping symbols to int32 scalars."""
    total: DimValue = 0
    for term, coeff in e._sorted_terms:
        value: DimValue = 1
        for factor, power in term._factors:
            if factor.var is not None:
                if factor.var not in env:
                    raise LoweringError(
                        f"dimension symbol {factor.var!r} is not a dimension of any input",
                        "every symbol in a shape must appear in an input's declared shape",
                    )
                f = env[factor.var]
            else:
                a, b = (_eval_dim_expr(o, env) if shape_poly.is_symbolic_dim(o) else int(o) for o in factor.operands)
                op = factor.operation
                f = {
                    "floordiv": lambda: a // b,
                    "mod": lambda: a % b,
                    "max": lambda: tf.maximum(a, b),
                    "min": lambda: tf.minimum(a, b),
                }[op]()
            for _ in range(power):
                value = f if isinstance(value, int) and value == 1 else value * f
        piece = value if coeff == 1 else coeff * value
        total = piece if isinstance(total, int) and total == 0 else total + piece
    return total


def op_type(x: Value) -> str | None:
    """The type of the TF op that produced graph tensor `x` (None for constants and eager values)."""
    if isinstance(x, tf.Tensor) and not tf.executing_eagerly():
        return x.op.type
    return None


def is_static(shape: Sequence[Any]) -> bool:
    return all(isinstance(d, (int, np.integer)) for d in shape)


def static_shape(shape: Sequence[Any]) -> list[int | None]:
    """The aval shape for `set_shape`: ints kept, symbolic dims as None."""
    return [int(d) if isinstance(d, (int, np.integer)) else None for d in shape]


def shape_of(x: Value) -> tuple[int | None, ...]:
    """Static shape of a value (None for unknown dims)."""
    if isinstance(x, np.ndarray):
        return x.shape
    return tuple(x.shape.as_list())


def is_full(x: Value, aval_shape: Sequence[Any]) -> bool:
    """Does value `x` have exactly the aval's shape (not a compact broadcastable form)?"""
    s = shape_of(x)
    if len(s) != len(aval_shape):
        return False
    for have, want in zip(s, aval_shape):
        if isinstance(want, (int, np.integer)):
            if have != want:
                return False
        elif have == 1:  # a size-1 dim standing for a symbolic one
            return False
    return True


class Lowerer:
    """Per-function state: the symbolic-dim environment, shared by nested jaxprs."""

    def __init__(self, dim_env: dict[str, tf.Tensor]) -> None:
        self.dim_env = dim_env
        self.outer: list[jcore.JaxprEqn] = []  # the call eqns being lowered, outermost first

    def dim(self, d: Any) -> DimValue:
        if isinstance(d, (int, np.integer)):
            return int(d)
        return _eval_dim_expr(d, self.dim_env)

    def shape(self, dims: Sequence[Any]) -> list[int] | tf.Tensor:
        """Python ints when static, else an int32 shape tensor evaluated from the inputs."""
        if is_static(dims):
            return [int(d) for d in dims]
        return tf.stack([tf.constant(v, tf.int32) if isinstance(v, int) else tf.cast(v, tf.int32) for v in map(self.dim, dims)])

    def reshape_shape(self, dims: Sequence[Any]) -> list[int] | tf.Tensor:
        """A shape for `tf.reshape`: static ints, with -1 for a single symbolic dim."""
        symbolic = [i for i, d in enumerate(dims) if not isinstance(d, (int, np.integer))]
        if len(symbolic) == 1:
            return [-1 if i == symbolic[0] else int(d) for i, d in enumerate(dims)]
        return self.shape(dims)

    def full(self, x: Value, aval: Any) -> Value:
        """`x` broadcast to exactly `aval.shape` (a no-op for values already full)."""
        if is_full(x, aval.shape):
            return x
        if isinstance(x, np.ndarray) and is_static(aval.shape):
            return np.broadcast_to(x, tuple(aval.shape))
        if isinstance(x, np.ndarray) and x.size == 1:  # a splat: Fill, not BroadcastTo
            out = tf.fill(self.shape(aval.shape), tf.constant(x.reshape(()), tf.as_dtype(aval.dtype)))
        else:
            out = tf.broadcast_to(x, self.shape(aval.shape))
        out.set_shape(static_shape(aval.shape))
        return out

    def eval_jaxpr(self, jaxpr: jcore.Jaxpr, consts: Sequence[Value], args: Sequence[Value]) -> list[Value]:
        """Interpret `jaxpr` on `consts` + `args`; returns the (possibly compact) outputs."""
        env: dict[jcore.Var, Value] = {}

        def read(v: Any) -> Value:
            if isinstance(v, jcore.Literal):
                return np.asarray(v.val, dtype=v.aval.dtype)
            return env[v]

        for var, val in zip(jaxpr.constvars, consts):
            env[var] = _as_value(val, var.aval)
        for var, val in zip(jaxpr.invars, args):
            env[var] = val
        for eqn in jaxpr.eqns:
            invals = [read(v) for v in eqn.invars]
            outs = self.eval_eqn(eqn, invals)
            for var, val in zip(eqn.outvars, outs):
                env[var] = val
        return [read(v) for v in jaxpr.outvars]

    def call(self, closed: jcore.ClosedJaxpr | jcore.Jaxpr, args: Sequence[Value]) -> list[Value]:
        """Interpret a nested (closed) jaxpr, e.g. a pjit body or a cond branch."""
        if isinstance(closed, jcore.ClosedJaxpr):
            return self.eval_jaxpr(closed.jaxpr, closed.consts, args)
        return self.eval_jaxpr(closed, [], args)

    def eval_eqn(self, eqn: jcore.JaxprEqn, invals: list[Value]) -> list[Value]:
        name = eqn.primitive.name
        rule = RULES.get(name)
        in_avals = [v.aval for v in eqn.invars]
        out_avals = [v.aval for v in eqn.outvars]
        if (
            name not in _NO_FOLD
            and all(isinstance(x, np.ndarray) for x in invals)
            and not eqn.effects
            and all(is_static(a.shape) for a in in_avals + out_avals if hasattr(a, "shape"))
            and sum(int(np.prod(a.shape)) for a in out_avals if hasattr(a, "shape")) <= _FOLD_MAX_ELEMENTS
        ):
            return self._fold(eqn, invals, in_avals, out_avals, elementwise=rule is not None and rule.kind == "elementwise")
        if rule is None:
            raise no_rule_error(eqn, self.outer)
        ctx = Ctx(self, eqn, in_avals, out_avals)
        if rule.kind == "full":
            invals = [self.full(x, a) if hasattr(a, "shape") else x for x, a in zip(invals, in_avals)]
        self.outer.append(eqn)
        try:
            out = rule.fn(ctx, *invals, **eqn.params)
        finally:
            self.outer.pop()
        outs = list(out) if eqn.primitive.multiple_results else [out]
        if len(outs) != len(out_avals):
            raise AssertionError(f"rule for {name} returned {len(outs)} values for {len(out_avals)} outputs")
        result = []
        for val, aval in zip(outs, out_avals):
            if isinstance(val, tf.Tensor):
                if val.dtype != tf.as_dtype(aval.dtype):
                    raise AssertionError(f"rule for {name} returned {val.dtype}, expected {aval.dtype}")
                if rule.kind == "full":
                    val.set_shape(static_shape(aval.shape))
            elif not isinstance(val, np.ndarray):
                val = _as_value(val, aval)
            result.append(val)
        return result

    def _fold(self, eqn: jcore.JaxprEqn, invals: list[np.ndarray], in_avals: list, out_avals: list, elementwise: bool) -> list[np.ndarray]:
        """Evaluate an all-constant eqn eagerly in JAX (exact JAX semantics), keeping compactness."""
        if elementwise and invals:
            rank = len(out_avals[0].shape)
            common = np.broadcast_shapes(*[(1,) * (rank - x.ndim) + x.shape for x in invals])
            args = [np.broadcast_to(x.reshape((1,) * (rank - x.ndim) + x.shape), common) for x in invals]
        else:
            args = [np.broadcast_to(x, tuple(a.shape)) if x.shape != tuple(a.shape) else x for x, a in zip(invals, in_avals)]
        bind_params = eqn.primitive.get_bind_params(eqn.params)
        with jax.default_device(jax.devices("cpu")[0]), eqn.ctx.manager:
            out = eqn.primitive.bind(*args, **bind_params)
        outs = out if eqn.primitive.multiple_results else [out]
        return [np.asarray(o, dtype=a.dtype) for o, a in zip(outs, out_avals)]


def _as_value(val: Any, aval: Any) -> Value:
    if isinstance(val, (tf.Tensor, tf.Variable)):
        return val
    return np.asarray(val, dtype=aval.dtype)


class Ctx:
    """What a rule sees besides its operands: the eqn's avals, shapes, nested calls, refusals."""

    def __init__(self, lowerer: Lowerer, eqn: jcore.JaxprEqn, in_avals: list, out_avals: list) -> None:
        self.lowerer = lowerer
        self.eqn = eqn
        self.in_avals = in_avals
        self.out_avals = out_avals

    @property
    def out_aval(self) -> Any:
        return self.out_avals[0]

    @property
    def out_dtype(self) -> tf.DType:
        return tf.as_dtype(self.out_avals[0].dtype)

    def shape(self, dims: Sequence[Any]) -> list[int] | tf.Tensor:
        return self.lowerer.shape(dims)

    def dim(self, d: Any) -> DimValue:
        return self.lowerer.dim(d)

    def reshape_shape(self, dims: Sequence[Any]) -> list[int] | tf.Tensor:
        return self.lowerer.reshape_shape(dims)

    def full(self, x: Value, aval: Any) -> Value:
        return self.lowerer.full(x, aval)

    def call(self, jaxpr: jcore.ClosedJaxpr | jcore.Jaxpr, args: Sequence[Value]) -> list[Value]:
        return self.lowerer.call(jaxpr, args)

    def refuse(self, param: str, value: Any, why: str = "", hint: str = "") -> NoReturn:
        """Raise the LoweringError for a parameter form this rule does not lower."""
        eqn = self.eqn
        text = repr(value)
        text = text[:80] + "…" if len(text) > 80 else text
        raise LoweringError(
            f"primitive {eqn.primitive.name} ({param}={text}) at {where(eqn, self.lowerer.outer)} has no lowering"
            + (f": {why}" if why else ""),
            (hint or "this form of the primitive is not supported by the plain-TF lowering "
             "(see docs/lowering.md for the supported forms)") + scope(eqn),
        )
