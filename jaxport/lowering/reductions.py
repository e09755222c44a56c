"""Reductions, arg-reductions, cumulative ops, pooling (reduce_window), sort and top_k."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from jaxport.lowering.context import Ctx, Value, is_static, shape_of
from jaxport.lowering.registry import register


def _reduce(tf_fn, bool_fn=None):
    def rule(ctx: Ctx, x: Value, axes: Sequence[int], **_: Any) -> Value:
        if not axes:
            return x
        fn = bool_fn if (bool_fn is not None and tf.as_dtype(x.dtype) == tf.bool) else tf_fn
        return fn(x, axis=[int(a) for a in axes])

    return rule


_NARROW_INTS = (tf.int8, tf.int16, tf.uint8, tf.uint16, tf.uint32)


def _wrapping(tf_fn):
    """`tf_fn` on integers LiteRT cannot sum or multiply (8/16-bit, uint32) through int32: the
    result modulo 2**width is the same, and the cast back wraps as XLA's arithmetic does."""
    def fn(x: Value, axis: list[int]) -> tf.Tensor:
        dt = tf.as_dtype(x.dtype)
        if dt not in _NARROW_INTS:
            return tf_fn(x, axis=axis)
        return tf.cast(tf_fn(tf.cast(x, tf.int32), axis=axis), dt)

    return fn


register("reduce_sum", forms="any axes, numeric dtypes; 8/16-bit and uint32 integers summed in int32 "
         "(wrapping)")(_reduce(_wrapping(tf.reduce_sum)))
register("reduce_prod", forms="any axes, numeric dtypes; 8/16-bit and uint32 integers multiplied in "
         "int32 (wrapping)")(_reduce(_wrapping(tf.reduce_prod)))
register("reduce_max", forms="any axes; bool as any")(_reduce(tf.reduce_max, tf.reduce_any))
register("reduce_min", forms="any axes; bool as all")(_reduce(tf.reduce_min, tf.reduce_all))
register("reduce_and", forms="any axes, bool")(_reduce(tf.reduce_all))
register("reduce_or", forms="any axes, bool")(_reduce(tf.reduce_any))


def _arg(tf_fn):
    def rule(ctx: Ctx, x: Value, axes: Sequence[int], index_dtype: Any) -> Value:
        if len(axes) != 1:
            ctx.refuse("axes", axes, "exactly one axis")
        dt = tf.as_dtype(np.dtype(index_dtype))
        if dt not in (tf.int32, tf.int64):
            ctx.refuse("index_dtype", index_dtype)
        if tf.as_dtype(x.dtype) == tf.bool:
            x = tf.cast(x, tf.int32)
        return tf_fn(x, axis=int(axes[0]), output_type=dt)

    return rule


register("argmax", forms="one axis, int32/int64 index (first index on ties)")(_arg(tf.math.argmax))
register("argmin", forms="one axis, int32/int64 index (first index on ties)")(_arg(tf.math.argmin))


@register("cumsum", forms="any axis, reverse")
def _cumsum(ctx: Ctx, x: Value, axis: int, reverse: bool) -> Value:
    return tf.math.cumsum(x, axis=int(axis), reverse=bool(reverse))


@register("cumprod", forms="any axis, reverse; a log-step scan along static axes (TFLite has no Cumprod)")
def _cumprod(ctx: Ctx, x: Value, axis: int, reverse: bool) -> Value:
    if shape_of(x)[int(axis)] is None:
        return tf.math.cumprod(x, axis=int(axis), reverse=bool(reverse))
    return _prefix_scan(ctx, x, int(axis), bool(reverse), tf.multiply, tf.ones([], x.dtype))


@register("cumlogsumexp", forms="any axis, reverse; float (as log(cumsum(exp(x - max))) + max: TF.js has no CumulativeLogsumexp)")
def _cumlogsumexp(ctx: Ctx, x: Value, axis: int, reverse: bool) -> Value:
    m = tf.stop_gradient(tf.reduce_max(x, axis=int(axis), keepdims=True))
    m = tf.where(tf.math.is_finite(m), m, tf.zeros_like(m))
    return tf.math.log(tf.math.cumsum(tf.exp(x - m), axis=int(axis), reverse=bool(reverse))) + m


def _prefix_scan(ctx: Ctx, x: Value, axis: int, reverse: bool, op, identity: Any) -> Value:
    """Hillis-Steele prefix scan with `op` along a static-size axis: log2(n) shifted ops."""
    n = shape_of(x)[axis]
    if n is None:
        ctx.refuse("axis", axis, "cumulative max/min along a symbolic dimension")
    rank = len(shape_of(x))
    x = tf.convert_to_tensor(x)
    if reverse:
        x = tf.reverse(x, [axis])
    k = 1
    while k < n:
        pad = [[0, 0]] * rank
        pad[axis] = [k, 0]
        index = [slice(None)] * rank
        index[axis] = slice(0, n)
        shifted = tf.pad(x, pad, constant_values=identity)[tuple(index)]
        x = op(x, shifted)
        k *= 2
    return tf.reverse(x, [axis]) if reverse else x


def _lowest(dt: tf.DType) -> Any:
    return -np.inf if dt.is_floating else dt.min


@register("cummax", forms="static-length axis, reverse (log-step scan)")
def _cummax(ctx: Ctx, x: Value, axis: int, reverse: bool) -> Value:
    dt = tf.as_dtype(x.dtype)
    return _prefix_scan(ctx, x, int(axis), bool(reverse), tf.maximum, tf.constant(_lowest(dt), dt))


@register("cummin", forms="static-length axis, reverse (log-step scan)")
def _cummin(ctx: Ctx, x: Value, axis: int, reverse: bool) -> Value:
    dt = tf.as_dtype(x.dtype)
    high = np.inf if dt.is_floating else dt.max
    return _prefix_scan(ctx, x, int(axis), bool(reverse), tf.minimum, tf.constant(high, dt))


def _same_padding(n: int, k: int, s: int) -> tuple[int, int]:
    total = max((-(-n // s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def _pool(ctx: Ctx, x: Value, kind: str, window_dimensions: Sequence[int], window_strides: Sequence[int], padding: Sequence[tuple], base_dilation: Sequence[int], window_dilation: Sequence[int]) -> Value:
    """reduce_window as TF pooling: spatial dims are those with a window, stride or padding."""
    if any(int(d) != 1 for d in base_dilation):
        ctx.refuse("base_dilation", tuple(base_dilation))
    rank = len(window_dimensions)
    spatial = [i for i in range(rank) if int(window_dimensions[i]) != 1 or int(window_strides[i]) != 1 or tuple(padding[i]) != (0, 0) or int(window_dilation[i]) != 1]
    if not spatial:
        return x
    if len(spatial) > 3:
        ctx.refuse("window_dimensions", tuple(window_dimensions), "pooling over more than 3 dimensions")
    if any(int(window_dilation[i]) != 1 for i in spatial) and any(int(window_strides[i]) != 1 for i in spatial):
        ctx.refuse("window_dilation", tuple(window_dilation), "window dilation together with strides")
    dt = tf.as_dtype(x.dtype)
    if kind == "sum" and not dt.is_floating:
        ctx.refuse("dtype", dt.name, "sum pooling of integers")
    x = tf.convert_to_tensor(x)
    if kind == "min":
        x = -x
    shape = ctx.in_avals[0].shape
    contiguous = spatial == list(range(spatial[0], spatial[-1] + 1))
    if contiguous and spatial[0] > 0:
        lead, trail, perm = list(range(spatial[0])), list(range(spatial[-1] + 1, rank)), None
    else:
        others = [i for i in range(rank) if i not in spatial]
        perm = others + spatial
        lead, trail = list(range(len(others))), []
        x = tf.transpose(x, perm)
        shape = [shape[p] for p in perm]
        spatial = list(range(len(others), rank))
    s_shape = [shape[i] for i in spatial]
    # Normal form: (batch, *spatial, channels).
    normal = [_prod(ctx, [shape[i] for i in lead])] + [ctx.dim(d) for d in s_shape] + [_prod(ctx, [shape[i] for i in trail])]
    reshaped = not (len(lead) == 1 and len(trail) == 1)
    if reshaped:
        x = tf.reshape(x, tf.stack(normal) if not all(isinstance(d, int) for d in normal) else normal)
    win = [int(window_dimensions[i]) for i in (spatial if perm is None else [perm[i] for i in spatial])]
    strides = [int(window_strides[i]) for i in (spatial if perm is None else [perm[i] for i in spatial])]
    pads = [tuple(int(p) for p in padding[i]) for i in (spatial if perm is None else [perm[i] for i in spatial])]
    dil = [int(window_dilation[i]) for i in (spatial if perm is None else [perm[i] for i in spatial])]
    # TF pooling refuses a stride longer than the window (a 1×1 max pool with stride 2 in
    # ResNetV2 and NASNet): pool those dims with stride 1, then keep every s-th position.
    skip = [s > (k - 1) * d + 1 for k, s, d in zip(win, strides, dil)]
    pool_strides = [1 if sk else s for sk, s in zip(skip, strides)]
    mode = "VALID"
    if any(p != (0, 0) for p in pads):
        if kind != "sum" and not any(skip) and is_static(s_shape) and all(p == _same_padding(int(n), (k - 1) * d + 1, s) for p, n, k, s, d in zip(pads, s_shape, win, strides, dil)):
            mode = "SAME"  # TF's SAME max pooling ignores the padding, as -inf padding does
        else:
            fill = tf.constant(0 if kind == "sum" else _lowest(dt), dt)
            x = tf.pad(x, [[0, 0]] + [list(p) for p in pads] + [[0, 0]], constant_values=fill)
    if kind == "sum":
        y = tf.nn.pool(x, win, "AVG", strides=pool_strides, padding="VALID", dilations=dil) * tf.constant(float(np.prod(win)), dt)
    else:
        y = tf.nn.pool(x, win, "MAX", strides=pool_strides, padding=mode, dilations=dil)
    if any(skip):
        y = y[(slice(None), *(slice(None, None, s) if sk else slice(None) for sk, s in zip(skip, strides)), slice(None))]
    if kind == "min":
        y = -y
    out_shape = ctx.out_aval.shape
    if perm is not None:
        inv = np.argsort(perm)
        permuted = [out_shape[p] for p in perm]
        y = tf.reshape(y, ctx.shape(permuted))
        return tf.transpose(y, [int(i) for i in inv])
    if reshaped:
        y = tf.reshape(y, ctx.shape(out_shape))
    return y


def _prod(ctx: Ctx, dims: Sequence[Any]) -> Any:
    out: Any = 1
    for d in dims:
        v = ctx.dim(d)
        out = v if (isinstance(out, int) and out == 1) else out * v
    return out


_POOL_FORMS = ("up to 3 windowed dims in any layout, any strides (also longer than the window), "
               "padding, window dilation (stride 1); no base dilation")


@register("reduce_window_max", forms=_POOL_FORMS)
def _reduce_window_max(ctx: Ctx, x: Value, **params: Any) -> Value:
    return _pool(ctx, x, "max", **params)


@register("reduce_window_min", forms=_POOL_FORMS)
def _reduce_window_min(ctx: Ctx, x: Value, **params: Any) -> Value:
    return _pool(ctx, x, "min", **params)


@register("reduce_window_sum", forms=_POOL_FORMS + "; float only (as average pooling × window size)")
def _reduce_window_sum(ctx: Ctx, x: Value, **params: Any) -> Value:
    return _pool(ctx, x, "sum", **params)


def _take_along_last(x: tf.Tensor, idx: tf.Tensor) -> tf.Tensor:
    return tf.gather(x, idx, batch_dims=len(x.shape) - 1)


def _sort_order(keys: tf.Tensor) -> tf.Tensor:
    """The stable ascending order of `keys` along the last axis, every NaN last as in JAX.

    TF's and TF.js's top_k (what tf.argsort is) place NaNs anywhere, so float keys sort with
    NaNs as 0, then stably by "is NaN" (any non-NaN stand-in works: the second pass moves them)."""
    if not keys.dtype.is_floating:
        return tf.argsort(keys, axis=-1, stable=True)
    nan = tf.not_equal(keys, keys)
    by_value = tf.argsort(tf.where(nan, tf.zeros_like(keys), keys), axis=-1, stable=True)
    nan_last = tf.argsort(_take_along_last(tf.cast(nan, tf.int32), by_value), axis=-1, stable=True)
    return _take_along_last(by_value, nan_last)


def _to_last(ops: list[tf.Tensor], axis: int, rank: int) -> list[tf.Tensor]:
    """`ops` with `axis` swapped with the last axis (its own inverse: apply again to undo)."""
    if axis == rank - 1:
        return ops
    perm = list(range(rank))
    perm[axis], perm[-1] = perm[-1], perm[axis]
    return [tf.transpose(o, perm) for o in ops]


@register("sort", forms="any num_keys (lexicographic) along any dimension, any number of operands (ascending, stable; NaNs last as in JAX)")
def _sort(ctx: Ctx, *operands: Value, dimension: int, is_stable: bool, num_keys: int) -> list[Value]:
    rank = len(ctx.in_avals[0].shape)
    ops = _to_last([tf.convert_to_tensor(o) for o in operands], int(dimension), rank)
    # Lexicographic by keys 0..num_keys-1: stable sorts from the last key to the first.
    order = _sort_order(ops[int(num_keys) - 1])
    for key in reversed(ops[: int(num_keys) - 1]):
        order = _take_along_last(order, _sort_order(_take_along_last(key, order)))
    return _to_last([_take_along_last(o, order) for o in ops], int(dimension), rank)


def _top_k_along(ctx: Ctx, x: Value, k: int, axis: int, largest: bool = True) -> list[Value]:
    """The k largest (or smallest) values along `axis`, sorted, and their indices (the first
    index among ties), indices cast to the eqn's second output dtype."""
    rank = len(ctx.in_avals[0].shape)
    axis = int(axis) % rank
    (x,) = _to_last([tf.convert_to_tensor(x)], axis, rank)
    values, indices = tf.math.top_k(x if largest else -x, k=int(k), sorted=True)
    values = values if largest else -values
    indices = tf.cast(indices, tf.as_dtype(ctx.out_avals[1].dtype))
    return _to_last([values, indices], axis, rank)


@register("top_k", forms="any axis (last is native), static k")
def _top_k(ctx: Ctx, x: Value, k: int, axis: int = -1, **_: Any) -> list[Value]:
    return _top_k_along(ctx, x, k, axis)


@register("approx_top_k", forms="max and min, any reduction dimension, with or without aggregate_to_topk: "
          "the exact top-k, which is what XLA computes on CPU and GPU (recall 1 >= any recall_target)")
def _approx_top_k(ctx: Ctx, x: Value, k: int, reduction_dimension: int, is_max_k: bool, **_: Any) -> list[Value]:
    # Without aggregate_to_topk the output keeps more than k: the first of the exact order.
    kept = ctx.out_avals[0].shape[int(reduction_dimension)]
    if not is_static([kept]):
        ctx.refuse("k", k, "a symbolic number of kept elements")
    return _top_k_along(ctx, x, int(kept), reduction_dimension, largest=bool(is_max_k))


_MONOIDS = {"add": ("sum", 0), "mul": ("prod", 1), "max": ("max", -np.inf), "min": ("min", np.inf)}
"""A binary computation -> the reduction it makes and its identity (floats; ints below)."""


def _monoid(ctx: Ctx, jaxpr: Any, init: Value) -> str:
    """The reduction ("sum", "max", ...) a generic reduce's `jaxpr` computes: a single add, mul,
    max or min of its two arguments, with `init` (a constant) its identity; refused otherwise."""
    inner = getattr(jaxpr, "jaxpr", jaxpr)
    eqns = inner.eqns
    if (len(eqns) != 1 or eqns[0].primitive.name not in _MONOIDS or set(eqns[0].invars) != set(inner.invars)
            or len(inner.invars) != 2 or list(inner.outvars) != list(eqns[0].outvars)):
        ctx.refuse("jaxpr", inner, "only a single add, mul, max or min of the two arguments")
    kind, identity = _MONOIDS[eqns[0].primitive.name]
    dt = np.dtype(init.dtype)
    if kind in ("max", "min") and dt.kind in "iu":
        identity = np.iinfo(dt).min if kind == "max" else np.iinfo(dt).max
    if not isinstance(init, np.ndarray) or not np.all(init == identity):
        ctx.refuse("init_value", init, f"only the identity of {eqns[0].primitive.name} ({identity})")
    return kind


_REDUCE_OPS = {"sum": tf.reduce_sum, "prod": tf.reduce_prod, "max": tf.reduce_max, "min": tf.reduce_min}


@register("reduce", forms="one operand, the computation a single add/mul/max/min (as that reduction), the init value its identity")
def _reduce_generic(ctx: Ctx, *operands: Value, jaxpr: Any, dimensions: Sequence[int], **_: Any) -> Value:
    if len(operands) != 2:
        ctx.refuse("operands", len(operands) // 2, "only one operand")
    x, init = operands
    kind = _monoid(ctx, jaxpr, init)
    axes = [int(a) for a in dimensions]
    if tf.as_dtype(x.dtype) == tf.bool:
        ctx.refuse("dtype", "bool", "only numeric operands")
    return [_REDUCE_OPS[kind](x, axis=axes) if axes else x]  # reduce has a list of results


@register("reduce_window", forms="one operand, the computation a single add/max/min with its identity as init value "
          "(as reduce_window_sum/max/min)")
def _reduce_window_generic(ctx: Ctx, *operands: Value, jaxpr: Any, consts: Any = (), **params: Any) -> Value:
    if len(operands) != 2 or consts:
        ctx.refuse("operands", len(operands) // 2, "only one operand and no consts")
    x, init = operands
    kind = _monoid(ctx, jaxpr, init)
    if kind == "prod":
        ctx.refuse("jaxpr", "mul", "no product pooling")
    if kind == "sum" and not tf.as_dtype(x.dtype).is_floating:
        ctx.refuse("dtype", tf.as_dtype(x.dtype).name, "sum pooling of floats only")
    return [_pool(ctx, x, kind, **params)]  # a list of results, as reduce
