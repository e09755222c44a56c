"""Op patterns the runtimes run as one op, recognized among the TF ops already emitted.

The rules emit ops one primitive at a time, and JAX spells a keep-dims reduction, a mean, a
softmax and a log-softmax as several primitives. Each recognizer here looks at the producers of
a rule's operands and returns the one op computing the same values (`Sum(keep_dims)`, `Mean`,
`Softmax`, `LogSoftmax`), or None when the operands do not have that shape. Ops a match leaves
unused are pruned by TF and by the converters.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from jaxport.lowering.context import Value, op_type, shape_of

_REDUCTIONS = {"Sum": tf.reduce_sum, "Mean": tf.reduce_mean, "Max": tf.reduce_max, "Min": tf.reduce_min,
               "Prod": tf.reduce_prod, "All": tf.reduce_all, "Any": tf.reduce_any}


def _reduced_axes(x: tf.Tensor) -> list[int] | None:
    """The sorted, non-negative axes a reduction op output `x` reduced over (None if not static)."""
    axes = tf.get_static_value(x.op.inputs[1])
    if axes is None:
        return None
    rank = x.op.inputs[0].shape.rank
    if rank is None:
        return None
    return sorted(int(a) % rank for a in np.atleast_1d(axes))


def _same(a: Value, b: Value) -> bool:
    return isinstance(a, tf.Tensor) and isinstance(b, tf.Tensor) and a.graph is b.graph and a.name == b.name


def _last_axis_keepdims(x: Value, op: str, of: tf.Tensor) -> bool:
    """Is `x` = `op`(`of`, axis=-1, keep_dims=True)?"""
    if op_type(x) != op or not x.op.get_attr("keep_dims") or not _same(x.op.inputs[0], of):
        return False
    return _reduced_axes(x) == [of.shape.rank - 1]


def _unkept_axes(x: Value) -> list[int] | None:
    """The axes of a reduction op output `x` made with keep_dims=False, else None."""
    if op_type(x) not in _REDUCTIONS or x.op.get_attr("keep_dims"):
        return None
    return _reduced_axes(x)


def _kept(x: tf.Tensor, axes: list[int]) -> tf.Tensor:
    return _REDUCTIONS[x.op.type](x.op.inputs[0], axis=axes, keepdims=True)


def keepdims(x: Value, broadcast_dimensions: Sequence[int], out_rank: int) -> tf.Tensor | None:
    """A reduction (keep_dims=False) broadcast back over its reduced axes: the same reduction
    with keep_dims=True, which broadcasts to the result (no Reshape)."""
    axes = _unkept_axes(x)
    if axes is None or x.op.inputs[0].shape.rank != out_rank:
        return None
    if list(broadcast_dimensions) != [d for d in range(out_rank) if d not in axes]:
        return None
    return _kept(x, axes)


def reshaped_keepdims(x: Value, dims: Sequence[Any]) -> tf.Tensor | None:
    """A reduction (keep_dims=False) reshaped to `dims`, its input's rank with 1 at the reduced
    axes (GlobalAveragePooling2D then Reshape((1, 1, C))): the reduction with keep_dims=True."""
    axes = _unkept_axes(x)
    if axes is None or len(dims) != x.op.inputs[0].shape.rank or any(not _is_int(dims[a], 1) for a in axes):
        return None
    rest = [d for i, d in enumerate(dims) if i not in axes]
    have = shape_of(x)
    if have.count(None) > 1 or any(_is_int(d) != (h is not None) or (h is not None and int(d) != h)
                                   for d, h in zip(rest, have)):
        return None
    return _kept(x, axes)


def _is_int(d: Any, value: int | None = None) -> bool:
    return isinstance(d, (int, np.integer)) and (value is None or int(d) == value)


def mean(num: Value, den: Value) -> tf.Tensor | None:
    """`Sum(x, axes) / n` with n the static number of elements summed: `Mean(x, axes)`."""
    if op_type(num) != "Sum" or not isinstance(den, np.ndarray) or den.size != 1:
        return None
    source = num.op.inputs[0]
    axes = _reduced_axes(num)
    if axes is None or not source.dtype.is_floating:
        return None
    sizes = [source.shape[a] for a in axes]
    if None in sizes or float(den.reshape(())) != float(np.prod(sizes)):
        return None
    return tf.reduce_mean(source, axis=axes, keepdims=bool(num.op.get_attr("keep_dims")))


def _shifted_by_max(x: Value) -> tf.Tensor | None:
    """`a` when `x` = `a - Max(a, axis=-1, keep_dims=True)`, else None."""
    if op_type(x) != "Sub":
        return None
    a, m = x.op.inputs
    return a if _last_axis_keepdims(m, "Max", of=a) else None


def softmax(num: Value, den: Value) -> tf.Tensor | None:
    """`Exp(a - max(a)) / Sum(that Exp, axis=-1, keep_dims)`: `Softmax(a)`."""
    if op_type(num) != "Exp" or not _last_axis_keepdims(den, "Sum", of=num):
        return None
    a = _shifted_by_max(num.op.inputs[0])
    return None if a is None else tf.nn.softmax(a)


def log_softmax(x: Value, y: Value) -> tf.Tensor | None:
    """`g - Log(Sum(Exp(g), axis=-1, keep_dims))` with g = a - max(a): `LogSoftmax(a)`."""
    if op_type(y) != "Log" or op_type(y.op.inputs[0]) != "Sum":
        return None
    total = y.op.inputs[0]
    exp = total.op.inputs[0]
    if op_type(exp) != "Exp" or not _same(exp.op.inputs[0], x) or not _last_axis_keepdims(total, "Sum", of=exp):
        return None
    a = _shifted_by_max(x)
    return None if a is None else tf.nn.log_softmax(a)
