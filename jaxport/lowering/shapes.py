"""Shape and layout primitives: broadcast_in_dim, reshape, squeeze, transpose, concatenate,
pad, rev, slice, iota, split, tile.

`broadcast_in_dim` emits no BroadcastTo: it reshapes to a compact value without leading 1-dims
(often a no-op) and lets consumers broadcast. Chains of reshapes and of transposes collapse.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from jaxport.lowering import patterns
from jaxport.lowering.context import Ctx, Value, is_static, op_type, shape_of, static_shape
from jaxport.lowering.registry import register


def reshape_to(ctx: Ctx, x: Value, dims: Sequence[Any]) -> Value:
    """`x` reshaped to aval dims `dims`, skipping no-op reshapes and collapsing reshape chains."""
    if isinstance(x, np.ndarray):
        if is_static(dims):
            return x.reshape([int(d) for d in dims])
        x = tf.constant(x)
    if is_static(dims) and shape_of(x) == tuple(int(d) for d in dims):
        return x
    if op_type(x) == "Reshape":
        x = x.op.inputs[0]
        if is_static(dims) and shape_of(x) == tuple(int(d) for d in dims):
            return x
    out = tf.reshape(x, ctx.reshape_shape(dims))
    out.set_shape(static_shape(dims))
    return out


def _strip_leading_ones(shape: list) -> list:
    i = 0
    while i < len(shape) and shape[i] == 1:
        i += 1
    return shape[i:]


@register("broadcast_in_dim", forms="static and symbolic shapes; stays compact (no BroadcastTo); a reduction broadcast back over its axes keeps dims", kind="raw")
def _broadcast_in_dim(ctx: Ctx, x: Value, *dyn: Value, shape: Sequence[Any], broadcast_dimensions: Sequence[int], **_: Any) -> Value:
    if dyn:
        ctx.refuse("dynamic shape operands", len(dyn))
    kept = patterns.keepdims(x, broadcast_dimensions, len(shape))
    if kept is not None:
        return kept
    rank_in = len(ctx.in_avals[0].shape)
    have = list(shape_of(x))
    have = [1] * (rank_in - len(have)) + have
    out = [1] * len(shape)
    src: list[int | None] = [None] * len(shape)  # which input dim feeds each out dim
    for i, d in enumerate(broadcast_dimensions):
        if have[i] != 1:
            out[d] = have[i]
            src[d] = i
    k = len(out) - len(_strip_leading_ones(out))
    out, src = out[k:], src[k:]
    if list(shape_of(x)) == out:
        return x
    if isinstance(x, np.ndarray):
        return x.reshape(out)
    offset = len(have) - len(shape_of(x))
    y = tf.reshape(x, placed_shape(x, [None if s is None else s - offset for s in src]))
    y.set_shape(out)
    return y


def placed_shape(x: tf.Tensor, axes: Sequence[int | None]) -> list[int] | tf.Tensor:
    """A shape to reshape `x` to: entry p is `x`'s dim `axes[p]`, or 1 where that is None.
    Static, with -1 for one unknown dim (no Shape/Pack ops), unless several are unknown."""
    dims = shape_of(x)
    static = [1 if a is None else dims[a] for a in axes]
    if static.count(None) <= 1:
        return [-1 if d is None else d for d in static]
    dyn = tf.shape(x)
    return tf.stack([tf.constant(1, tf.int32) if a is None else dyn[a] for a in axes])


@register("reshape", forms="static and symbolic new_sizes; dimensions (a transpose first); adding or removing leading 1-dims is free; a reduction reshaped to keep its dims keeps them", kind="raw")
def _reshape(ctx: Ctx, x: Value, *dyn: Value, new_sizes: Sequence[Any], dimensions: Any, **_: Any) -> Value:
    if dyn:
        ctx.refuse("dynamic shape operands", len(dyn))
    transposed = dimensions is not None and list(dimensions) != list(range(len(dimensions)))
    target = ctx.out_aval.shape
    kept = None if transposed else patterns.reshaped_keepdims(x, target)
    if kept is not None:
        return kept
    if not transposed and is_static(target) and None not in shape_of(x) and len(shape_of(x)) <= len(target):
        if _strip_leading_ones(list(shape_of(x))) == _strip_leading_ones([int(d) for d in target]):
            return x  # e.g. a (C,) BatchNorm statistic reshaped to (1, 1, 1, C): already compact
    x = ctx.full(x, ctx.in_avals[0])
    if transposed:
        x = tf.transpose(x, [int(d) for d in dimensions])
    return reshape_to(ctx, x, target)


@register("squeeze", forms="any dimensions (as a reshape)")
def _squeeze(ctx: Ctx, x: Value, dimensions: Sequence[int]) -> Value:
    return reshape_to(ctx, x, ctx.out_aval.shape)


def transpose(x: Value, permutation: Sequence[int]) -> Value:
    """`x` transposed by `permutation`; the identity is free and a Transpose chain becomes one."""
    perm = [int(p) for p in permutation]
    if perm == list(range(len(perm))):
        return x
    if op_type(x) == "Transpose":
        inner = tf.get_static_value(x.op.inputs[1])
        if inner is not None:
            perm = [int(inner[p]) for p in perm]
            x = x.op.inputs[0]
            if perm == list(range(len(perm))):
                return x
    return tf.transpose(x, perm)


@register("transpose", forms="any permutation; identity dropped, chains composed")
def _transpose(ctx: Ctx, x: Value, permutation: Sequence[int]) -> Value:
    return transpose(x, permutation)


@register("concatenate", forms="any dimension, any number of operands")
def _concatenate(ctx: Ctx, *xs: Value, dimension: int) -> Value:
    if len(xs) == 1:
        return xs[0]
    return tf.concat(list(xs), axis=int(dimension))


def _dyn_dim(x: Value, axis: int) -> Any:
    s = shape_of(x)[axis]
    return s if s is not None else tf.shape(x)[axis]


@register("pad", forms="negative (cropping), positive and interior padding; scalar padding value (zero: Pad, else PadV2)")
def _pad(ctx: Ctx, x: Value, padding_value: Value, padding_config: Sequence[tuple]) -> Value:
    x = tf.convert_to_tensor(x)
    # A constant stays numpy: tf.pad emits Pad (which the converters fold into a convolution's
    # padding) for a zero, PadV2 only for another value.
    pv = padding_value if isinstance(padding_value, np.ndarray) else tf.convert_to_tensor(padding_value)
    rank = len(padding_config)
    for axis, (_, _, interior) in enumerate(padding_config):
        interior = int(interior)
        if interior > 0:
            n = _dyn_dim(x, axis)
            y = tf.expand_dims(x, axis + 1)
            cfg = [[0, 0]] * (rank + 1)
            cfg[axis + 1] = [0, interior]
            y = tf.pad(y, cfg, constant_values=pv)
            full = tf.shape(y)
            new_shape = tf.concat([full[:axis], [n * (1 + interior)], full[axis + 2 :]], 0)
            y = tf.reshape(y, new_shape)
            x = tf.gather(y, tf.range(n * (1 + interior) - interior), axis=axis)
    if any(int(lo) < 0 or int(hi) < 0 for lo, hi, _ in padding_config):
        index = []
        for axis, (lo, hi, _) in enumerate(padding_config):
            start = -int(lo) if int(lo) < 0 else 0
            stop = int(hi) if int(hi) < 0 else None
            index.append(slice(start, stop))
        x = x[tuple(index)]
    cfg = [[max(int(lo), 0), max(int(hi), 0)] for lo, hi, _ in padding_config]
    if any(a or b for a, b in cfg):
        x = tf.pad(x, cfg, constant_values=pv)
    return x


@register("rev", forms="any dimensions (one ReverseV2 per axis)")
def _rev(ctx: Ctx, x: Value, dimensions: Sequence[int]) -> Value:
    for d in dimensions:  # one axis per op: LiteRT's REVERSE_V2 rejects non-contiguous axes
        x = tf.reverse(x, [int(d)])
    return x


@register("slice", forms="static and symbolic bounds, any strides")
def _slice(ctx: Ctx, x: Value, start_indices: Sequence[Any], limit_indices: Sequence[Any], strides: Sequence[int] | None) -> Value:
    shape = ctx.in_avals[0].shape
    strides = strides or [1] * len(shape)
    index = []
    trivial = True
    for s, e, st, n in zip(start_indices, limit_indices, strides, shape):
        if (isinstance(s, int) and s == 0) and (e is n or (is_static([e, n]) and int(e) == int(n))) and int(st) == 1:
            index.append(slice(None))
            continue
        trivial = False
        index.append(slice(ctx.dim(s), ctx.dim(e), int(st)))
    if trivial:
        return x
    return tf.convert_to_tensor(x)[tuple(index)]


@register("iota", forms="any dtype, dimension and (symbolic) shape; compact result", kind="raw")
def _iota(ctx: Ctx, dtype: Any, shape: Sequence[Any], dimension: int, **_: Any) -> Value:
    n = shape[dimension]
    compact = [n] + [1] * (len(shape) - 1 - dimension)
    if is_static([n]):
        return np.arange(int(n), dtype=np.dtype(dtype)).reshape([int(d) for d in compact])
    r = tf.range(ctx.dim(n), dtype=tf.as_dtype(np.dtype(dtype)))
    return tf.reshape(r, [-1] + [1] * (len(shape) - 1 - dimension))


@register("split", forms="static sizes along any axis")
def _split(ctx: Ctx, x: Value, sizes: Sequence[Any], axis: int) -> list[Value]:
    if not is_static(sizes):
        ctx.refuse("sizes", sizes, "symbolic split sizes")
    return tf.split(x, [int(s) for s in sizes], axis=int(axis))


@register("tile", forms="any reps, symbolic ones evaluated from tf.shape")
def _tile(ctx: Ctx, x: Value, reps: Sequence[Any]) -> Value:
    return tf.tile(x, ctx.shape(reps))


@register("dim_as_value", forms="a (symbolic) dimension as a scalar, evaluated from tf.shape", kind="raw")
def _dim_as_value(ctx: Ctx, dim: Any, **_: Any) -> Value:
    v = ctx.dim(dim)
    if isinstance(v, int):
        return np.asarray(v, dtype=ctx.out_aval.dtype)
    return tf.cast(v, ctx.out_dtype)


@register("stack", forms="any axis, any number of operands")
def _stack(ctx: Ctx, *xs: Value, axis: int) -> Value:
    return tf.stack(list(xs), axis=int(axis))


@register("unstack", forms="any axis")
def _unstack(ctx: Ctx, x: Value, axis: int, **_: Any) -> list[Value]:
    return tf.unstack(x, axis=int(axis))
