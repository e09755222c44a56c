"""The whitelist of jnp ops a manifest step may use (`op = "mean"`), with their keyword params.

No user code runs from a manifest: an op is a name looked up here, its params are checked
against the types listed, and its arity against `n_args`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from jaxport.errors import ManifestError

# jax is imported only when an op runs, so validating a manifest (the HTTP API's cheap
# checks) does not load it.

Axis = (int, list)  # an int or a list of ints
_ANY = (1, 1 << 30)


@dataclass(frozen=True)
class Op:
    fn: Callable[..., Any]  # fn(*arrays, **params)
    params: dict[str, tuple[type, ...]]
    n_args: tuple[int, int] = (1, 1)  # inclusive range


def _resolve(path: str) -> Callable[..., Any]:
    """`"jax.numpy.mean"` → the function, imported on first use."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _axis(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _reduction(path: str) -> Op:
    return Op(lambda x, axis=None, keepdims=False: _resolve(path)(x, axis=_axis(axis),
                                                                   keepdims=keepdims),
              {"axis": Axis, "keepdims": (bool,)})


def _binary(path: str) -> Op:
    return Op(lambda a, b: _resolve(path)(a, b), {}, (2, 2))


def _unary(path: str) -> Op:
    return Op(lambda x: _resolve(path)(x), {})


def _with_axis(path: str, default: int = -1) -> Op:
    return Op(lambda x, axis=default: _resolve(path)(x, axis=axis), {"axis": (int,)})


def _arg_reduction(path: str) -> Op:
    return Op(lambda x, axis=-1: _resolve(path)(x, axis=axis).astype("int32"), {"axis": (int,)})


def _l2_normalize(x: Any, axis: int = -1, epsilon: float = 1e-12) -> Any:
    jnp = importlib.import_module("jax.numpy")
    lax = importlib.import_module("jax.lax")
    return x * lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=axis, keepdims=True), epsilon))


OPS: dict[str, Op] = {
    "mean": _reduction("jax.numpy.mean"),
    "sum": _reduction("jax.numpy.sum"),
    "max": _reduction("jax.numpy.max"),
    "min": _reduction("jax.numpy.min"),
    "prod": _reduction("jax.numpy.prod"),
    "logsumexp": _reduction("jax.nn.logsumexp"),
    "argmax": _arg_reduction("jax.numpy.argmax"),
    "argmin": _arg_reduction("jax.numpy.argmin"),
    "concatenate": Op(lambda *xs, axis=-1: _resolve("jax.numpy.concatenate")(xs, axis=axis),
                      {"axis": (int,)}, _ANY),
    "stack": Op(lambda *xs, axis=0: _resolve("jax.numpy.stack")(xs, axis=axis),
                {"axis": (int,)}, _ANY),
    "einsum": Op(lambda *xs, equation: _resolve("jax.numpy.einsum")(equation, *xs),
                 {"equation": (str,)}, _ANY),
    "matmul": _binary("jax.numpy.matmul"),
    "add": _binary("jax.numpy.add"),
    "sub": _binary("jax.numpy.subtract"),
    "mul": _binary("jax.numpy.multiply"),
    "div": _binary("jax.numpy.divide"),
    "maximum": _binary("jax.numpy.maximum"),
    "minimum": _binary("jax.numpy.minimum"),
    "softmax": _with_axis("jax.nn.softmax"),
    "log_softmax": _with_axis("jax.nn.log_softmax"),
    "l2_normalize": Op(_l2_normalize, {"axis": (int,), "epsilon": (float,)}),
    "transpose": Op(lambda x, axes=None: _resolve("jax.numpy.transpose")(x, axes),
                    {"axes": (list,)}),
    "reshape": Op(lambda x, shape: _resolve("jax.numpy.reshape")(x, tuple(shape)),
                  {"shape": (list,)}),
    "squeeze": Op(lambda x, axis=None: _resolve("jax.numpy.squeeze")(x, _axis(axis)),
                  {"axis": Axis}),
    "expand_dims": Op(lambda x, axis=0: _resolve("jax.numpy.expand_dims")(x, axis),
                      {"axis": (int,)}),
    "sigmoid": _unary("jax.nn.sigmoid"),
    "tanh": _unary("jax.numpy.tanh"),
    "relu": _unary("jax.nn.relu"),
    "gelu": Op(lambda x, approximate=True: _resolve("jax.nn.gelu")(x, approximate=approximate),
               {"approximate": (bool,)}),
    "exp": _unary("jax.numpy.exp"),
    "log": _unary("jax.numpy.log"),
    "sqrt": _unary("jax.numpy.sqrt"),
    "abs": _unary("jax.numpy.abs"),
    "negative": _unary("jax.numpy.negative"),
    "scale": Op(lambda x, factor: x * factor, {"factor": (int, float)}),
}
OPS["l2-normalize"] = OPS["l2_normalize"]  # the hyphenated spelling, accepted too

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


def apply_op(name: str, args: list[Any], params: dict[str, Any]) -> Any:
    """Apply whitelisted op `name` (already checked by `check_op_params`)."""
    return OPS[name].fn(*args, **params)
