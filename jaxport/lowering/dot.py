"""dot_general as MatMul / BatchMatMul: batch dims first, free and contracting dims flattened.

Transposes are emitted only when the dims are out of order (a contracting block that comes
first becomes `transpose_a`/`transpose_b` instead), reshapes only when more than one free or
contracting dim has to be flattened. A weight matrix on the left of the data (`W @ x`, as in
`jax.image.resize`) is moved to the right and the result transposed back, so the converters see
data × weights, the form TFLite's FULLY_CONNECTED takes.
"""

from __future__ import annotations

from typing import Any, Sequence

import tensorflow as tf

from jaxport.lowering.context import Ctx, Value, is_full, is_static, op_type
from jaxport.lowering.registry import register
from jaxport.lowering.shapes import reshape_to, transpose


def _prod(dims: Sequence[Any]) -> Any:
    out: Any = 1
    for d in dims:
        out = out * d
    return out


def _arrange(ctx: Ctx, x: tf.Tensor, shape: Sequence[Any], batch: list[int], contract: list[int], lhs: bool) -> tuple[tf.Tensor, bool]:
    """`x` as a matrix operand (batch dims, then two matrix dims); returns it and whether it is
    transposed relative to MatMul's natural order."""
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
    x = transpose(x, order)
    blocks = [second, first] if transposed else [first, second]
    mat = [[shape[i] for i in batch]] if batch else []
    mat += [[_prod([shape[i] for i in blk])] for blk in blocks]
    want = [d for blk in mat for d in blk]  # several batch dims stay: BatchMatMul takes them
    have = [shape[i] for i in order]
    if len(have) != len(want) or any(a is not b and not (is_static([a, b]) and int(a) == int(b)) for a, b in zip(have, want)):
        x = tf.reshape(x, ctx.reshape_shape(want))
    return x, transposed


def _is_weights(x: tf.Tensor, shape: Sequence[Any]) -> bool:
    """Is `x` a static-shaped constant or param read (as opposed to data from the inputs)?"""
    return is_static(shape) and op_type(x) in ("Const", "ReadVariableOp")


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
    out_shape = ctx.out_aval.shape
    if not lc and not lb:  # outer product
        a = tf.reshape(lhs, [-1, 1])
        b = tf.reshape(rhs, [1, -1])
        return tf.reshape(a * b, ctx.shape(out_shape))
    if not lb and _is_weights(lhs, ls) and not _is_weights(rhs, rs):
        # dot(W, x) = transpose(dot(x, W)): x's free dims first, then W's.
        n_lhs_free, n_rhs_free = len(ls) - len(lc), len(rs) - len(rc)
        swapped = list(out_shape[n_lhs_free:]) + list(out_shape[:n_lhs_free])
        y = _matmul(ctx, rhs, lhs, rs, ls, (rc, lc), ((), ()), swapped)
        return transpose(y, [n_rhs_free + i for i in range(n_lhs_free)] + list(range(n_rhs_free)))
    return _matmul(ctx, lhs, rhs, ls, rs, (lc, rc), (lb, rb), out_shape)


def _matmul(ctx: Ctx, lhs: tf.Tensor, rhs: tf.Tensor, ls: Sequence[Any], rs: Sequence[Any],
            contract: tuple[Sequence[int], Sequence[int]], batch: tuple[Sequence[int], Sequence[int]],
            out_shape: Sequence[Any]) -> tf.Tensor:
    """dot_general of `lhs` (shape `ls`) and `rhs` (`rs`) with at least one contracting or batch
    dim, as one MatMul/BatchMatMul between the reshapes and transposes it needs."""
    (lc, rc), (lb, rb) = contract, batch
    b, tb = _arrange(ctx, rhs, rs, [int(i) for i in rb], [int(i) for i in rc], lhs=False)
    n_free = len(ls) - len(lc)
    if not lb and n_free > 1 and [int(i) for i in lc] == list(range(n_free, len(ls))):
        # x[..., k] @ W[k, n] (a Dense layer; several trailing k dims merged): a broadcasting
        # BatchMatMul, the free dims of x kept instead of flattened and restored.
        a = lhs if len(lc) == 1 else reshape_to(ctx, lhs, list(ls[:n_free]) + [_prod(ls[n_free:])])
        y = tf.linalg.matmul(a, b, transpose_b=tb)
        return y if is_full(y, out_shape) else tf.reshape(y, ctx.reshape_shape(out_shape))
    a, ta = _arrange(ctx, lhs, ls, [int(i) for i in lb], [int(i) for i in lc], lhs=True)
    if len(a.shape) == 2 and len(b.shape) == 3:
        a = tf.expand_dims(a, 0)
    y = tf.linalg.matmul(a, b, transpose_a=ta, transpose_b=tb)
    if not is_full(y, out_shape):
        y = tf.reshape(y, ctx.reshape_shape(out_shape))
    return y
