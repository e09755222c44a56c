"""The whitelist of jnp ops a manifest step may use (`op = "mean"`), with their keyword params.

No user code runs from a manifest: an op is a name looked up here, its params are checked
against the types listed, and its arity against `n_args`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxport.errors import ManifestError

Axis = (int, list)  # an int or a list of ints
_ANY = (1, 1 << 30)


@dataclass(frozen=True)
class Op:
    fn: Callable[..., jax.Array]  # fn(*arrays, **params)
    params: dict[str, tuple[type, ...]]
    n_args: tuple[int, int] = (1, 1)  # inclusive range


def _l2_normalize(x: jax.Array, axis: int = -1, epsilon: float = 1e-12) -> jax.Array:
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=axis, keepdims=True), epsilon))


def _reshape(x: jax.Array, shape: list[int]) -> jax.Array:
    return jnp.reshape(x, tuple(shape))


def _transpose(x: jax.Array, axes: list[int] | None = None) -> jax.Array:
    return jnp.transpose(x, axes)


def _axis(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _reduction(fn: Callable[..., jax.Array]) -> Op:
    return Op(lambda x, axis=None, keepdims=False: fn(x, axis=_axis(axis), keepdims=keepdims),
              {"axis": Axis, "keepdims": (bool,)})


def _binary(fn: Callable[[jax.Array, jax.Array], jax.Array]) -> Op:
    return Op(fn, {}, (2, 2))


def _unary(fn: Callable[[jax.Array], jax.Array]) -> Op:
    return Op(fn, {})


OPS: dict[str, Op] = {
    "mean": _reduction(jnp.mean),
    "sum": _reduction(jnp.sum),
    "max": _reduction(jnp.max),
    "min": _reduction(jnp.min),
    "prod": _reduction(jnp.prod),
    "logsumexp": Op(lambda x, axis=None, keepdims=False: jax.nn.logsumexp(x, _axis(axis), keepdims=keepdims),
                    {"axis": Axis, "keepdims": (bool,)}),
    "argmax": Op(lambda x, axis=-1: jnp.argmax(x, axis=axis).astype(jnp.int32), {"axis": (int,)}),
    "argmin": Op(lambda x, axis=-1: jnp.argmin(x, axis=axis).astype(jnp.int32), {"axis": (int,)}),
    "concatenate": Op(lambda *xs, axis=-1: jnp.concatenate(xs, axis=axis), {"axis": (int,)}, _ANY),
    "stack": Op(lambda *xs, axis=0: jnp.stack(xs, axis=axis), {"axis": (int,)}, _ANY),
    "einsum": Op(lambda *xs, equation: jnp.einsum(equation, *xs), {"equation": (str,)}, _ANY),
    "matmul": _binary(jnp.matmul),
    "add": _binary(jnp.add),
    "sub": _binary(jnp.subtract),
    "mul": _binary(jnp.multiply),
    "div": _binary(jnp.divide),
    "maximum": _binary(jnp.maximum),
    "minimum": _binary(jnp.minimum),
    "softmax": Op(lambda x, axis=-1: jax.nn.softmax(x, axis=axis), {"axis": (int,)}),
    "log_softmax": Op(lambda x, axis=-1: jax.nn.log_softmax(x, axis=axis), {"axis": (int,)}),
    "l2_normalize": Op(_l2_normalize, {"axis": (int,), "epsilon": (float,)}),
    "transpose": Op(_transpose, {"axes": (list,)}),
    "reshape": Op(_reshape, {"shape": (list,)}),
    "squeeze": Op(lambda x, axis=None: jnp.squeeze(x, _axis(axis)), {"axis": Axis}),
    "expand_dims": Op(lambda x, axis=0: jnp.expand_dims(x, axis), {"axis": (int,)}),
    "sigmoid": _unary(jax.nn.sigmoid),
    "tanh": _unary(jnp.tanh),
    "relu": _unary(jax.nn.relu),
    "gelu": Op(lambda x, approximate=True: jax.nn.gelu(x, approximate=approximate),
               {"approximate": (bool,)}),
    "exp": _unary(jnp.exp),
    "log": _unary(jnp.log),
    "sqrt": _unary(jnp.sqrt),
    "abs": _unary(jnp.abs),
    "negative": _unary(jnp.negative),
    "scale": Op(lambda x, factor: x * factor, {"factor": (int, float)}),
}
OPS["l2-normalize"] = OPS["l2_normalize"]  # the spelling DESIGN.md uses

_REQUIRED = {"einsum": {"equation"}, "reshape": {"shape"}, "scale": {"factor"}}


def check_op_params(name: str, params: dict[str, Any], n_args: int, where: str) -> None:
    """Raise `ManifestError` if `params` or the arity do not fit op `name`."""
    op = OPS[name]
    lo, hi = op.n_args
    if not lo <= n_args <= hi:
        want = str(lo) if lo == hi else f"at least {lo}"
        raise ManifestError(f"op {name!r} takes {want} arg(s), got {n_args}", where=where)
    missing = _REQUIRED.get(name, set()) - set(params)
    if missing:
        raise ManifestError(f"op {name!r} needs {sorted(missing)}", where=where)
    for key, value in params.items():
        if key not in op.params:
            allowed = ", ".join(op.params) or "none"
            raise ManifestError(f"op {name!r} has no parameter {key!r}",
                                f"its parameters: {allowed}", where=where)
        types = op.params[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ManifestError(f"op {name!r}: {key} = {value!r} has the wrong type", where=where)
        if isinstance(value, list) and not all(isinstance(v, int) for v in value):
            raise ManifestError(f"op {name!r}: {key} must be a list of ints", where=where)


def apply_op(name: str, args: list[jax.Array], params: dict[str, Any]) -> jax.Array:
    """Apply whitelisted op `name` (already checked by `check_op_params`)."""
    return OPS[name].fn(*args, **params)
