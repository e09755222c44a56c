"""dot_general as MatMul / BatchMatMul: batch dims first, free and contracting dims flattened.

Transposes are emitted only when the dims are out of order (a contracting block that comes
first becomes `transpose_a`/`transpose_b` instead), reshapes only when more than one free or
contracting dim has to be flattened.
"""

from __future__ import annotations

from typing import Any, Sequence

import tensorflow as tf

from jaxport.lowering.context import Ctx, Value, is_full, is_static
from jaxport.lowering.registry import register


def _prod(dims: Sequence[Any]) -> Any:
    out: Any = 1
    for d in dims:
        out = out * d
    return out


def _arrange(ctx: Ctx, x: tf.Tensor, shape: Sequence[Any], batch: list[int], contract: list[int], lhs: bool) -> tuple[tf.Tensor, bool, list[Any]]:
    """`x` as a rank-3 (or rank-2 without batch) matrix operand; returns it, whether it is
    transposed relative to MatMul's natural order, and the free dims' sizes."""
    rank = len(shape)
    free = [i for i in range(rank) if i not in batch and i not in contract]
    # Natural order: lhs (batch, free, contract), rhs (batch, contract, free).
    first, second = (free, contract) if lhs else (contract, free)
    if batch + first + second == list(range(rank)) or not first or not second:
        order, transposed = batch + first + second, False
    elif batch + second + first == list(range(rank)):
        order, transposed = batch + second + first, True
    else:
        order, transposed = batch + first + second, False
    if order != list(range(rank)):
        x = tf.transpose(x, order)
    blocks = [second, first] if transposed else [first, second]
    mat = [[shape[i] for i in batch]] if batch else []
    mat += [[_prod([shape[i] for i in blk])] for blk in blocks]
    want = [d for blk in mat for d in blk]
    if len(batch) > 1:
        want = [_prod([shape[i] for i in batch])] + want[len(batch):]
    have = [shape[i] for i in order]
    if len(have) != len(want) or any(a is not b and not (is_static([a, b]) and int(a) == int(b)) for a, b in zip(have, want)):
        x = tf.reshape(x, ctx.reshape_shape(want))
    return x, transposed, [shape[i] for i in free]


@register("dot_general", forms="any batch and contracting dims (MatMul/BatchMatMul); preferred_element_type casts operands")
def _dot_general(ctx: Ctx, lhs: Value, rhs: Value, dimension_numbers: Any, preferred_element_type: Any = None, **_: Any) -> Value:
    (lc, rc), (lb, rb) = dimension_numbers
    out_dt = ctx.out_dtype
    lhs, rhs = tf.convert_to_tensor(lhs), tf.convert_to_tensor(rhs)
    if lhs.dtype != out_dt:
        lhs = tf.cast(lhs, out_dt)
    if rhs.dtype != out_dt:
        rhs = tf.cast(rhs, out_dt)
    ls, rs = ctx.in_avals[0].shape, ctx.in_avals[1].shape
    if not lc and not lb:  # outer product
        a = tf.reshape(lhs, [-1, 1])
        b = tf.reshape(rhs, [1, -1])
        return tf.reshape(a * b, ctx.shape(ctx.out_aval.shape))
    a, ta, _ = _arrange(ctx, lhs, ls, [int(i) for i in lb], [int(i) for i in lc], lhs=True)
    b, tb, _ = _arrange(ctx, rhs, rs, [int(i) for i in rb], [int(i) for i in rc], lhs=False)
    if len(a.shape) == 2 and len(b.shape) == 3:
        a = tf.expand_dims(a, 0)
    y = tf.linalg.matmul(a, b, transpose_a=ta, transpose_b=tb)
    out_shape = ctx.out_aval.shape
    if not is_full(y, out_shape):
        y = tf.reshape(y, ctx.reshape_shape(out_shape))
    return y
