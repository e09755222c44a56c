"""Indexing: gather, dynamic_slice, dynamic_update_slice, scatter (set, add, sub, mul, min, max).

Out-of-bounds indices follow JAX: CLIP and PROMISE_IN_BOUNDS clamp the start so the whole
slice is in bounds, FILL_OR_DROP returns the fill value for a gather (NaN for floats, the
lowest signed / highest unsigned integer, True) and drops a scatter's update.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf
from jax.lax import GatherScatterMode

from jaxport.lowering.context import Ctx, Value, op_type, shape_of
from jaxport.lowering.registry import register
from jaxport.lowering.shapes import placed_shape, reshape_to


def _same_dim(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - inconclusive symbolic comparison
        return False


def _fill_value(dt: tf.DType, fill: Any) -> Any:
    if fill is not None:
        return fill
    if dt.is_floating:
        return np.nan
    if dt == tf.bool:
        return True
    return dt.min if not dt.is_unsigned else dt.max


def _mode(ctx: Ctx, mode: Any) -> GatherScatterMode:
    mode = GatherScatterMode.from_any(mode) if not isinstance(mode, GatherScatterMode) else mode
    if mode not in (GatherScatterMode.CLIP, GatherScatterMode.PROMISE_IN_BOUNDS, GatherScatterMode.FILL_OR_DROP):
        ctx.refuse("mode", mode)
    return mode


def _clamped_starts(ctx: Ctx, idx: tf.Tensor, dims: Sequence[int], sizes: Sequence[Any], operand_shape: Sequence[Any]) -> tuple[tf.Tensor, tf.Tensor]:
    """Clamp the last axis of `idx` (one column per operand dim in `dims`) to [0, dim - size];
    also return the in-bounds mask over the batch shape (before clamping)."""
    his = [ctx.dim(operand_shape[d]) - ctx.dim(sizes[d]) for d in dims]
    if isinstance(idx, np.ndarray) and all(isinstance(h, int) for h in his):
        hi_np = np.asarray(his, idx.dtype)
        return np.clip(idx, 0, hi_np), np.all((idx >= 0) & (idx <= hi_np), axis=-1)
    idx = tf.convert_to_tensor(idx)
    if len(dims) == 1:  # one column (Embedding, take): no ReduceAll, and _column gets it free
        col, hi = _column(idx, 0), tf.cast(his[0], idx.dtype)
        valid = tf.logical_and(col >= 0, col <= hi)
        return tf.expand_dims(tf.clip_by_value(col, tf.zeros_like(hi), hi), -1), valid
    hi = tf.stack([tf.cast(h, idx.dtype) for h in his])
    valid = tf.reduce_all(tf.logical_and(idx >= 0, idx <= hi), axis=-1)
    return tf.clip_by_value(idx, tf.zeros_like(hi), hi), valid


@register("gather", forms="modes clip/promise_in_bounds/fill_or_drop; full slices on non-indexed dims (Embedding, take, x[i]) as GatherV2/GatherNd; a single start index with any slice sizes (crops) as Slice; anything else (take_along_axis, batching dims) as GatherNd over an index grid")
def _gather(ctx: Ctx, operand: Value, indices: Value, dimension_numbers: Any, slice_sizes: Sequence[Any], mode: Any, fill_value: Any = None, **_: Any) -> Value:
    mode = _mode(ctx, mode)
    dn = dimension_numbers
    op_shape = ctx.in_avals[0].shape
    rank = len(op_shape)
    idx = indices if isinstance(indices, np.ndarray) else tf.convert_to_tensor(indices)
    if tf.as_dtype(idx.dtype) not in (tf.int32, tf.int64):
        idx = idx.astype(np.int32) if isinstance(idx, np.ndarray) else tf.cast(idx, tf.int32)
    smap = [int(d) for d in dn.start_index_map]
    collapsed = {int(d) for d in dn.collapsed_slice_dims}
    obatch = [int(d) for d in dn.operand_batching_dims]
    ibatch = [int(d) for d in dn.start_indices_batching_dims]
    batch_shape = ctx.in_avals[1].shape[:-1]
    x = tf.convert_to_tensor(operand)
    out_shape = ctx.out_aval.shape
    if obatch:  # batching dims become explicit index columns (as XLA expands them)
        idx = tf.convert_to_tensor(idx)
        idx_shape = tf.shape(idx)[:-1]
        cols = []
        for bd in ibatch:
            r = tf.range(tf.cast(idx_shape[bd], idx.dtype), dtype=idx.dtype)
            shape = [1] * len(batch_shape)
            shape[bd] = -1
            cols.append(tf.expand_dims(tf.broadcast_to(tf.reshape(r, shape), idx_shape), -1))
        idx = tf.concat([idx, *cols], axis=-1)
        smap = smap + obatch
        collapsed = collapsed | set(obatch)
    idx, valid = _clamped_starts(ctx, idx, smap, slice_sizes, op_shape)
    window = [d for d in range(rank) if d not in collapsed]
    full_rest = all(_same_dim(slice_sizes[d], op_shape[d]) for d in range(rank) if d not in smap) and all(
        _same_dim(slice_sizes[d], 1) for d in smap
    )
    if full_rest:
        if len(smap) == 1:
            g = tf.gather(x, _column(idx, 0), axis=smap[0])
            labels = [("w", d) for d in range(smap[0])] + [("b", i) for i in range(len(batch_shape))] + [("w", d) for d in range(smap[0] + 1, rank)]
        else:
            front = smap + [d for d in range(rank) if d not in smap]
            if front != list(range(rank)):
                x = tf.transpose(x, front)
            g = tf.gather_nd(x, idx)
            labels = [("b", i) for i in range(len(batch_shape))] + [("w", d) for d in range(rank) if d not in smap]
        for d in smap:
            if d not in collapsed:
                g = tf.expand_dims(g, -1)
                labels.append(("w", d))
        out_labels = _output_labels(len(out_shape), [int(o) for o in dn.offset_dims], window)
        perm = [labels.index(lab) for lab in out_labels]
        if perm != list(range(len(perm))):
            g = tf.transpose(g, perm)
    elif not batch_shape:
        begin = [tf.constant(0, idx.dtype)] * rank
        for k, d in enumerate(smap):
            begin[d] = idx[k]
        g = tf.slice(x, tf.stack(begin), ctx.shape(slice_sizes))
        g = reshape_to(ctx, g, out_shape)
    else:
        g = _gather_grid(ctx, x, tf.convert_to_tensor(idx), smap, slice_sizes, collapsed, [int(o) for o in dn.offset_dims], batch_shape)
    if mode == GatherScatterMode.FILL_OR_DROP and not (isinstance(valid, np.ndarray) and valid.all()):
        out_rank = len(out_shape)
        batch_pos = [p for p in range(out_rank) if p not in {int(o) for o in dn.offset_dims}]
        mask = valid
        if batch_pos:
            mask = tf.reshape(valid, placed_shape(valid, [batch_pos.index(p) if p in batch_pos else None
                                                          for p in range(out_rank)]))
        fill = tf.constant(_fill_value(tf.as_dtype(ctx.out_aval.dtype), fill_value), ctx.out_dtype)
        g = tf.where(mask, g, fill)
    return g


def _column(idx: Value, k: int) -> Value:
    """`idx[..., k]` without an ellipsis StridedSlice (LiteRT's converter rejects it); free when
    `idx` is a single column just added by ExpandDims or Reshape."""
    if isinstance(idx, np.ndarray):
        return idx[..., k]
    shape = shape_of(idx)
    if shape[-1] == 1 and op_type(idx) in ("ExpandDims", "Reshape") and shape.count(None) <= 1:
        source = idx.op.inputs[0]
        if shape_of(source) == shape[:-1]:
            return source
    return tf.gather(idx, k, axis=-1)


def _output_labels(out_rank: int, offset_dims: list[int], window: list[int]) -> list[tuple[str, int]]:
    labels: list[tuple[str, int]] = []
    w = iter(window)
    b = 0
    for p in range(out_rank):
        if p in offset_dims:
            labels.append(("w", next(w)))
        else:
            labels.append(("b", b))
            b += 1
    return labels


def _gather_grid(ctx: Ctx, x: tf.Tensor, idx: tf.Tensor, smap: list[int], slice_sizes: Sequence[Any], collapsed: set[int], offset_dims: list[int], batch_shape: Sequence[Any]) -> tf.Tensor:
    """The general gather: GatherNd with one full operand index per output element."""
    rank = len(slice_sizes)
    nb = len(batch_shape)
    window = [d for d in range(rank) if d not in collapsed]
    # Index grid in layout (batch..., window...) x rank.
    idx_dyn = tf.shape(idx)[:-1]
    win_sizes = [ctx.dim(slice_sizes[d]) for d in window]
    grid_shape = tf.concat([idx_dyn, tf.stack([tf.cast(s, tf.int32) for s in win_sizes])], 0) if window else idx_dyn
    cols = []
    for d in range(rank):
        if d in smap:
            start = _column(idx, smap.index(d))
            start = tf.reshape(start, tf.concat([idx_dyn, tf.ones([len(window)], tf.int32)], 0))
        else:
            start = tf.zeros([], idx.dtype)
        if d in window:
            k = window.index(d)
            shape = [1] * (nb + len(window))
            shape[nb + k] = -1
            off = tf.reshape(tf.range(tf.cast(win_sizes[k], idx.dtype), dtype=idx.dtype), shape)
            start = start + off
        cols.append(tf.broadcast_to(start, grid_shape))
    g = tf.gather_nd(x, tf.stack(cols, axis=-1))
    labels = [("b", i) for i in range(nb)] + [("w", d) for d in window]
    out_labels = _output_labels(nb + len(window), offset_dims, window)
    perm = [labels.index(lab) for lab in out_labels]
    if perm != list(range(len(perm))):
        g = tf.transpose(g, perm)
    return g


@register("dynamic_slice", forms="static or symbolic slice sizes, start indices clamped as in JAX")
def _dynamic_slice(ctx: Ctx, operand: Value, *starts: Value, slice_sizes: Sequence[Any]) -> Value:
    shape = ctx.in_avals[0].shape
    static = all(isinstance(d, int) for d in (*shape, *slice_sizes))
    if static and all(isinstance(s, np.ndarray) for s in starts):
        begin = [int(np.clip(int(s), 0, int(n) - int(k))) for s, n, k in zip(starts, shape, slice_sizes)]
        return tf.slice(operand, begin, [int(k) for k in slice_sizes])
    begin = tf.stack([
        tf.clip_by_value(tf.cast(s, tf.int32), 0, tf.cast(ctx.dim(n) - ctx.dim(k), tf.int32)) for s, n, k in zip(starts, shape, slice_sizes)
    ])
    return tf.slice(operand, begin, ctx.shape(slice_sizes))


@register("dynamic_update_slice", forms="any update shape, start indices clamped as in JAX (as Pad + Select)")
def _dynamic_update_slice(ctx: Ctx, operand: Value, update: Value, *starts: Value) -> Value:
    shape = ctx.in_avals[0].shape
    ushape = ctx.in_avals[1].shape
    begin = [tf.clip_by_value(tf.cast(s, tf.int32), 0, tf.cast(ctx.dim(n) - ctx.dim(u), tf.int32)) for s, n, u in zip(starts, shape, ushape)]
    pads = tf.stack([tf.stack([b, tf.cast(ctx.dim(n) - ctx.dim(u), tf.int32) - b]) for b, n, u in zip(begin, shape, ushape)])
    padded = tf.pad(update, pads)
    mask = tf.pad(tf.ones_like(update, dtype=tf.bool), pads)
    return tf.where(mask, padded, operand)


def _scatter_prepare(ctx: Ctx, operand: Value, indices: Value, updates: Value, dn: Any, mode: Any) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor | None, list[int]]:
    """Scatter forms with full windows on non-indexed dims, no batching dims: returns the
    operand with the indexed dims moved first, clamped GatherNd-style indices, the updates in
    matching layout, the mask of updates to keep (None: all) and the operand permutation."""
    mode = _mode(ctx, mode)
    if dn.operand_batching_dims:
        ctx.refuse("operand_batching_dims", dn.operand_batching_dims)
    op_shape = ctx.in_avals[0].shape
    up_shape = ctx.in_avals[2].shape
    rank = len(op_shape)
    smap = [int(d) for d in dn.scatter_dims_to_operand_dims]
    inserted = {int(d) for d in dn.inserted_window_dims}
    if set(smap) != inserted:
        ctx.refuse("scatter_dims_to_operand_dims", dn.scatter_dims_to_operand_dims, "only scatters whose indexed dims are all inserted window dims")
    uwd = [int(d) for d in dn.update_window_dims]
    rest = [d for d in range(rank) if d not in smap]
    if [up_shape[p] for p in uwd] != [op_shape[d] for d in rest]:
        ctx.refuse("update_window_dims", dn.update_window_dims, "updates must cover the non-indexed dims fully")
    x = tf.convert_to_tensor(operand)
    front = smap + rest
    if front != list(range(rank)):
        x = tf.transpose(x, front)
    u = tf.convert_to_tensor(updates)
    ubatch = [p for p in range(len(up_shape)) if p not in uwd]
    uperm = ubatch + uwd
    if uperm != list(range(len(up_shape))):
        u = tf.transpose(u, uperm)
    idx = tf.convert_to_tensor(indices)
    if idx.dtype not in (tf.int32, tf.int64):
        idx = tf.cast(idx, tf.int32)
    hi = tf.stack([tf.cast(ctx.dim(op_shape[d]) - 1, idx.dtype) for d in smap])
    valid = tf.reduce_all(tf.logical_and(idx >= 0, idx <= hi), axis=-1)
    idx = tf.clip_by_value(idx, tf.zeros_like(hi), hi)
    if len(idx.shape) == 1:  # TF's scatter ops need a (possibly unit) batch of indices
        idx, u, valid = idx[None], u[None], valid[None]
    keep = None
    if mode == GatherScatterMode.FILL_OR_DROP:
        keep = tf.reshape(valid, tf.concat([tf.shape(valid), tf.ones([len(uwd)], tf.int32)], 0))
    return x, idx, u, keep, front


def _restore(x: tf.Tensor, front: list[int]) -> tf.Tensor:
    if front == list(range(len(front))):
        return x
    return tf.transpose(x, [int(i) for i in np.argsort(front)])


@register("scatter-add", forms="indexed dims all inserted, full windows on the rest, no batching dims (Add of ScatterNd); modes as gather")
def _scatter_add(ctx: Ctx, operand: Value, indices: Value, updates: Value, dimension_numbers: Any, mode: Any, update_jaxpr: Any = None, update_consts: Any = (), **_: Any) -> Value:
    x, idx, u, keep, front = _scatter_prepare(ctx, operand, indices, updates, dimension_numbers, mode)
    if keep is not None:
        u = tf.where(keep, u, tf.zeros_like(u))
    added = tf.scatter_nd(idx, u, tf.shape(x, out_type=idx.dtype))
    return _restore(x + added, front)


@register("scatter", forms="as scatter-add (TensorScatterUpdate); overlapping indices take one of the updates")
def _scatter(ctx: Ctx, operand: Value, indices: Value, updates: Value, dimension_numbers: Any, mode: Any, update_jaxpr: Any = None, update_consts: Any = (), **_: Any) -> Value:
    x, idx, u, keep, front = _scatter_prepare(ctx, operand, indices, updates, dimension_numbers, mode)
    if keep is None:
        return _restore(tf.tensor_scatter_nd_update(x, idx, u), front)
    # Dropped updates go to an extra slot past the end of the first indexed dim, cut off after.
    n = tf.shape(x, out_type=idx.dtype)[0]
    rank = len(x.shape)
    spare = tf.pad(x, [[0, 1]] + [[0, 0]] * (rank - 1))
    keep_rows = tf.reshape(keep, tf.shape(idx)[:-1])
    first = tf.where(keep_rows, _column(idx, 0), tf.fill(tf.shape(idx)[:-1], n))
    idx = tf.concat([tf.expand_dims(first, -1), tf.gather(idx, tf.range(1, tf.shape(idx)[-1]), axis=-1)], axis=-1)
    return _restore(tf.tensor_scatter_nd_update(spare, idx, u)[:-1], front)


@register("scatter-sub", forms="as scatter-add of the negated updates")
def _scatter_sub(ctx: Ctx, operand: Value, indices: Value, updates: Value, **params: Any) -> Value:
    return _scatter_add(ctx, operand, indices, -tf.convert_to_tensor(updates), **params)


_DENSE_SCATTER_MAX = 1 << 24
"""Most elements (updates × operand rows × window) a scatter-mul/min/max may spread out."""


def _dense_scatter(combine: str):
    """scatter-mul/min/max as a dense reduction: LiteRT has no ScatterNd but for sums and TF.js
    no segment max/min/prod. Every update is compared with every row of the indexed dims (a
    one-hot of updates × rows), the rows it misses take the operand's own value (max, min) or 1
    (mul), and the reduction over the updates, combined with the operand, gives each row."""

    def rule(ctx: Ctx, operand: Value, indices: Value, updates: Value, dimension_numbers: Any, mode: Any, **_: Any) -> Value:
        x, idx, u, keep, front = _scatter_prepare(ctx, operand, indices, updates, dimension_numbers, mode)
        k = int(idx.shape[-1])
        rows = x.shape.as_list()[:k]
        n = idx.shape[:-1].num_elements()
        if None in rows or n is None:
            ctx.refuse("shape", ctx.in_avals[0].shape, "only static indexed dims and number of updates")
        window = x.shape.as_list()[k:]
        m = int(np.prod(rows))
        spread = n * m * int(np.prod([d for d in window if d is not None]))
        if spread > _DENSE_SCATTER_MAX:
            ctx.refuse("shape", ctx.in_avals[0].shape, f"{spread} elements spread out (updates × rows × window), "
                       f"over {_DENSE_SCATTER_MAX}")
        if None in window:  # a symbolic (batch) dim in the window
            window = tf.shape(x)[k:]

        def dims(*lead: int) -> list[int] | tf.Tensor:
            return [*lead, *window] if isinstance(window, list) else tf.concat([tf.constant(lead, tf.int32), window], 0)

        strides = np.cumprod([1] + rows[:0:-1])[::-1].astype(np.int32)
        flat = tf.reduce_sum(tf.reshape(tf.cast(idx, tf.int32), [n, k]) * strides, -1)
        hits = tf.equal(flat[:, None], tf.range(m, dtype=tf.int32)[None, :])  # (n, m)
        if keep is not None:
            hits = tf.logical_and(hits, tf.reshape(keep, [n, 1]))
        hits = tf.reshape(hits, [n, m] + [1] * (len(x.shape) - k))
        u = tf.reshape(u, dims(n, 1))
        xr = tf.reshape(x, dims(1, m))
        if combine == "mul":
            out = xr[0] * tf.reduce_prod(tf.where(hits, u, tf.ones_like(u)), 0)
        else:
            reduce, pair = (tf.reduce_max, tf.maximum) if combine == "max" else (tf.reduce_min, tf.minimum)
            out = pair(xr[0], reduce(tf.where(hits, u, xr), 0))
        return _restore(tf.reshape(out, dims(*rows)), front)

    return rule


_DENSE_FORMS = (" as scatter-add, static indexed dims and number of updates, up to 2**24 elements of updates × rows × window "
                "(a dense one-hot reduction: LiteRT has no such scatter, TF.js no segment reduction)")
register("scatter-mul", forms="product" + _DENSE_FORMS)(_dense_scatter("mul"))
register("scatter-max", forms="maximum" + _DENSE_FORMS)(_dense_scatter("max"))
register("scatter-min", forms="minimum" + _DENSE_FORMS)(_dense_scatter("min"))
