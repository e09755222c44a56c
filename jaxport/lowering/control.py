"""Calls and control flow: jit, closed_call, call (eval_jaxpr), custom_jvp_call, custom_vjp_call,
custom_linear_solve, remat (checkpoint), cond, while, scan, optimization_barrier, device_put.

Calls are inlined. `cond` evaluates every branch and selects (no TF control flow), since the
branches are pure. `while` loops whose condition folds to a constant (fori_loop-style counters)
and `scan`s of static length up to `UNROLL_LIMIT` are unrolled — TF.js runs a `While` only under
`executeAsync` — anything else becomes a `tf.while_loop`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf
from jax._src import ad_checkpoint, custom_derivatives
from jax._src.lax import control_flow
from jax.extend import core as jcore

from jaxport.lowering.context import Ctx, Value, is_static, static_shape
from jaxport.lowering.registry import register
from jaxport.lowering.versions import scan_counts

UNROLL_LIMIT = 128
"""Longest static trip count that is unrolled instead of emitted as a `tf.while_loop`."""

R = "raw"


@register("jit", forms="inlined; jnp.searchsorted's bisection over one sorted array (uint32 "
          "arithmetic: not in TF.js, nor LiteRT's Gather) as a count of total-order comparisons", kind=R)
def _jit(ctx: Ctx, *args: Value, jaxpr: jcore.ClosedJaxpr, name: str = "", **_: Any) -> list[Value]:
    if name == "_searchsorted_scan_impl" and len(ctx.in_avals[0].shape) == 1:
        return [_searchsorted_by_count(ctx, jaxpr, *args)]
    return ctx.call(jaxpr, args)


def _searchsorted_by_count(ctx: Ctx, jaxpr: jcore.ClosedJaxpr, sorted_arr: Value, query: Value) -> tf.Tensor:
    """jnp.searchsorted(sorted_arr, query) as the number of elements of the (sorted) 1-D array
    below each query (side="left": `sorted < q`; "right": `sorted <= q`), in the total order
    its bisection uses on canonical values (-0 equal to +0, as IEEE compares them; NaN above +inf).

    The side is read off the bisection's comparison (le_to for left, lt_to for right)."""
    prims = set()
    stack = [jaxpr.jaxpr]
    while stack:
        j = stack.pop()
        for e in j.eqns:
            prims.add(e.primitive.name)
            stack += [sub.jaxpr if isinstance(sub, jcore.ClosedJaxpr) else sub for sub in e.params.values()
                      if isinstance(sub, (jcore.ClosedJaxpr, jcore.Jaxpr))]
    left = "le_to" in prims or "le" in prims
    a = tf.convert_to_tensor(sorted_arr)
    q = tf.convert_to_tensor(ctx.full(query, ctx.in_avals[1]))
    a = tf.reshape(a, [-1] + [1] * len(ctx.in_avals[1].shape))
    if a.dtype.is_floating:
        a_nan, q_nan = tf.not_equal(a, a), tf.not_equal(q, q)
        below = tf.logical_and(tf.logical_not(a_nan), tf.logical_or(q_nan, a < q))
        below = below if left else tf.logical_or(below, tf.logical_or(tf.logical_and(a_nan, q_nan), tf.equal(a, q)))
    else:
        below = a < q if left else a <= q
    return tf.reduce_sum(tf.cast(below, ctx.out_dtype), axis=0)


@register("closed_call", "call", forms="inlined (one primitive, eval_jaxpr, since JAX 0.12)", kind=R)
def _closed_call(ctx: Ctx, *args: Value, call_jaxpr: Any = None, jaxpr: Any = None, **_: Any) -> list[Value]:
    # JAX 0.12's eval_jaxpr takes `call_jaxpr`; older JAX's lax eval_jaxpr takes `jaxpr`.
    return ctx.call(call_jaxpr if call_jaxpr is not None else jaxpr, args)


@register(custom_derivatives.custom_jvp_call_p, forms="the primal function, inlined (jvp ignored)", kind=R)
def _custom_jvp_call(ctx: Ctx, *args: Value, call_jaxpr: jcore.ClosedJaxpr, **_: Any) -> list[Value]:
    return ctx.call(call_jaxpr, args)


@register(custom_derivatives.custom_vjp_call_p, forms="the primal function, inlined (fwd/bwd ignored)", kind=R)
def _custom_vjp_call(ctx: Ctx, *args: Value, call_jaxpr: jcore.ClosedJaxpr, **_: Any) -> list[Value]:
    return ctx.call(call_jaxpr, args)


@register(ad_checkpoint.remat_p, forms="inlined (rematerialization policy is irrelevant forward)", kind=R)
def _remat(ctx: Ctx, *args: Value, jaxpr: Any, **_: Any) -> list[Value]:
    return ctx.call(jaxpr, args)


@register("custom_linear_solve", forms="its solve function, inlined on the right-hand side (as JAX "
          "evaluates it; the other functions only serve differentiation)", kind=R)
def _custom_linear_solve(ctx: Ctx, *args: Value, const_lengths: Any, jaxprs: Any, **_: Any) -> list[Value]:
    # args: the consts of matvec, vecmat, solve and transpose_solve (const_lengths), then b
    before = int(const_lengths.matvec) + int(const_lengths.vecmat)
    solve_consts = list(args[before:before + int(const_lengths.solve)])
    b = list(args[sum(int(n) for n in const_lengths):])
    return ctx.call(jaxprs.solve, solve_consts + b)


@register("optimization_barrier", "device_put", forms="identity", kind=R)
def _identity_n(ctx: Ctx, *args: Value, **_: Any) -> list[Value]:
    return list(args)


def _full_tensors(ctx: Ctx, values: Sequence[Value], avals: Sequence[Any]) -> list[tf.Tensor]:
    return [tf.convert_to_tensor(ctx.full(v, a), tf.as_dtype(a.dtype)) for v, a in zip(values, avals)]


@register(control_flow.cond_p, forms="any number of branches; all evaluated, outputs selected by index (no TF control flow)", kind=R)
def _cond(ctx: Ctx, index: Value, *ops: Value, branches: Sequence[jcore.ClosedJaxpr], **_: Any) -> list[Value]:
    n = len(branches)
    if isinstance(index, np.ndarray):
        return ctx.call(branches[int(np.clip(index, 0, n - 1))], ops)
    results = [ctx.call(b, ops) for b in branches]
    index = tf.clip_by_value(tf.cast(index, tf.int32), 0, n - 1) if n > 2 or index.dtype != tf.bool else index
    outs = []
    for k, aval in enumerate(ctx.out_avals):
        vals = [r[k] for r in results]
        if index.dtype == tf.bool:
            outs.append(tf.where(index, vals[1], vals[0]))
            continue
        acc = vals[-1]
        for i in range(n - 2, -1, -1):
            acc = tf.where(tf.equal(index, i), vals[i], acc)
        outs.append(acc)
    return outs


@register(control_flow.while_p, forms="unrolled when the condition folds to a constant (up to UNROLL_LIMIT trips), else tf.while_loop; "
          "a batched condition (vmap) as in XLA: loop while any is true, each batch element stops where its own is false", kind=R)
def _while(ctx: Ctx, *args: Value, cond_jaxpr: jcore.ClosedJaxpr, body_jaxpr: jcore.ClosedJaxpr, cond_nconsts: int, body_nconsts: int) -> list[Value]:
    cconsts = list(args[:cond_nconsts])
    bconsts = list(args[cond_nconsts : cond_nconsts + body_nconsts])
    carry = list(args[cond_nconsts + body_nconsts :])
    carry_avals = ctx.out_avals
    batched = len(cond_jaxpr.out_avals[0].shape) > 0

    def pred_of(c: list) -> Value:
        (p,) = ctx.call(cond_jaxpr, cconsts + list(c))
        return p

    def step(c: list) -> list:
        """One trip of the body; with a batched condition, only where each element's is true."""
        new = ctx.call(body_jaxpr, bconsts + list(c))
        if not batched:
            return new
        p = pred_of(c)
        out = []
        for n, old, aval in zip(new, c, carry_avals):
            rank = len(aval.shape)
            if isinstance(p, np.ndarray) and isinstance(n, np.ndarray) and isinstance(old, np.ndarray):
                out.append(np.where(p.reshape(p.shape + (1,) * (rank - p.ndim)), n, old))
                continue
            pt = tf.convert_to_tensor(p)
            pt = tf.reshape(pt, tf.concat([tf.shape(pt), tf.ones([rank - len(p.shape)], tf.int32)], 0)) if rank > len(p.shape) else pt
            out.append(tf.where(pt, *_full_tensors(ctx, [n, old], [aval, aval])))
        return out

    unrolled = carry
    for _ in range(UNROLL_LIMIT + 1):
        pred = pred_of(unrolled)
        if not isinstance(pred, np.ndarray):
            break
        if not bool(np.any(pred)):
            return unrolled
        unrolled = step(unrolled)
    # Data-dependent (or too long): a real loop from the original carry.
    init = _full_tensors(ctx, carry, carry_avals)

    def cond_fn(*c: tf.Tensor) -> tf.Tensor:
        p = tf.convert_to_tensor(pred_of(list(c)))
        return tf.reduce_any(p) if batched else p

    def body_fn(*c: tf.Tensor) -> list[tf.Tensor]:
        return _full_tensors(ctx, step(list(c)), carry_avals)

    invariants = [tf.TensorShape(static_shape(a.shape)) for a in carry_avals]
    return list(tf.while_loop(cond_fn, body_fn, init, shape_invariants=invariants))


@register(control_flow.scan_p, forms="any consts/carry/xs; unrolled for static length <= UNROLL_LIMIT, else tf.while_loop; reverse", kind=R)
def _scan(ctx: Ctx, *args: Value, jaxpr: jcore.ClosedJaxpr, length: Any, reverse: bool, **params: Any) -> list[Value]:
    num_consts, num_carry = scan_counts(params)
    consts = list(args[:num_consts])
    carry = list(args[num_consts : num_consts + num_carry])
    xs = list(args[num_consts + num_carry :])
    xs_avals = ctx.in_avals[num_consts + num_carry :]
    carry_avals = ctx.out_avals[:num_carry]
    ys_avals = ctx.out_avals[num_carry:]
    if is_static([length]) and int(length) <= UNROLL_LIMIT:
        n = int(length)
        xs_full = [ctx.full(x, a) for x, a in zip(xs, xs_avals)]
        slices = [list(x) if isinstance(x, np.ndarray) else tf.unstack(x, num=n) for x in xs_full]
        ys: list[list[Value]] = [[None] * n for _ in ys_avals]
        order = range(n - 1, -1, -1) if reverse else range(n)
        for t in order:
            outs = ctx.call(jaxpr, consts + carry + [s[t] for s in slices])
            carry = outs[:num_carry]
            for k, y in enumerate(outs[num_carry:]):
                ys[k][t] = y
        stacked = []
        for k, aval in enumerate(ys_avals):
            elems = [ctx.full(y, aval.update(shape=aval.shape[1:])) for y in ys[k]]
            if all(isinstance(e, np.ndarray) for e in elems):
                stacked.append(np.stack(elems))
            else:
                stacked.append(tf.stack([tf.convert_to_tensor(e, tf.as_dtype(aval.dtype)) for e in elems]))
        return carry + stacked
    return _scan_loop(ctx, jaxpr, ctx.dim(length), reverse, consts, carry, xs, xs_avals, carry_avals, ys_avals)


def _scan_loop(ctx: Ctx, jaxpr: jcore.ClosedJaxpr, n: Any, reverse: bool, consts: list, carry: list, xs: list, xs_avals: list, carry_avals: list, ys_avals: list) -> list[Value]:
    xs_t = _full_tensors(ctx, xs, xs_avals)
    init_carry = _full_tensors(ctx, carry, carry_avals)
    arrays = [tf.TensorArray(tf.as_dtype(a.dtype), size=n, element_shape=tf.TensorShape(static_shape(a.shape[1:]))) for a in ys_avals]

    def body(i: tf.Tensor, c: list, ys: list) -> tuple:
        t = n - 1 - i if reverse else i
        outs = ctx.call(jaxpr, consts + list(c) + [tf.gather(x, t) for x in xs_t])
        new_c = _full_tensors(ctx, outs[: len(c)], carry_avals)
        y_avals = [a.update(shape=a.shape[1:]) for a in ys_avals]
        new_ys = [ta.write(t, y) for ta, y in zip(ys, _full_tensors(ctx, outs[len(c) :], y_avals))]
        return i + 1, new_c, new_ys

    _, final_c, final_ys = tf.while_loop(lambda i, c, ys: i < n, body, (tf.constant(0), init_carry, arrays))
    return list(final_c) + [ta.stack() for ta in final_ys]
