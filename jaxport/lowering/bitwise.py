"""Bitwise primitives without bitwise ops: and, or, xor, not, shifts, population count, count
of leading zeros, xor-reduction.

TF.js has no bitwise kernels at all and LiteRT no BitwiseAnd/Or, LeftShift or PopulationCount
builtin, so integers of up to 32 bits (int8, int16, int32, uint8, uint16, uint32) are taken
apart into their bits with integer arithmetic every runtime has (FloorDiv, FloorMod, Mul, Sum,
Gather): `bits(x)` is an int32 tensor with one more, last, dim of the dtype's width (least
significant bit first), `from_bits` sums bits back with their weights (the top bit's weight is
negative for signed dtypes), so that no intermediate overflows. A uint32 is taken apart as the
int32 of the same bits (the casts between them wrap) and so shifts right arithmetically as
XLA's does. Bools use the logical ops; wider integers (int64, uint64) keep TF's bitwise ops,
which neither runtime has (`gaps.py`).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from jaxport.lowering.context import Ctx, Value
from jaxport.lowering.registry import register

E = "elementwise"
_LAYOUTS = {tf.int8: (8, True), tf.int16: (16, True), tf.int32: (32, True), tf.uint8: (8, False),
            tf.uint16: (16, False), tf.uint32: (32, True)}
"""dtype -> (width, signed) of the integers taken apart into bits (uint32 as the int32 of its bits)."""
_NATIVE = "int64 and uint64 keep TF's bitwise ops (not in TF.js nor LiteRT)"
_FORMS = "bool (logical) and integers up to 32 bits (from bits by integer arithmetic); " + _NATIVE


def _dtype(x: Value) -> tf.DType:
    return tf.as_dtype(x.dtype)


def _weights(width: int, signed: bool) -> np.ndarray:
    """The value of each bit of a `width`-bit integer, least significant first (int32)."""
    w = np.array([1 << i for i in range(width)], np.int64)
    if signed:
        w[-1] = -w[-1]
    return w.astype(np.int32)


def bits(x: Value, width: int, signed: bool) -> tf.Tensor:
    """The bits of integer `x` (`width` bits, two's complement when `signed`) as 0/1 int32, in a
    new last dim. Floor division by 2**i reads bit i of a negative number too; bit 31 (whose
    2**31 int32 cannot hold) and every signed top bit are the sign."""
    v = tf.expand_dims(tf.cast(x, tf.int32), -1)
    low = tf.math.floormod(tf.math.floordiv(v, tf.constant(_weights(width - 1 if signed else width, False))), 2)
    return tf.concat([low, tf.cast(v < 0, tf.int32)], -1) if signed else low


def from_bits(b: tf.Tensor, width: int, signed: bool, dt: tf.DType) -> tf.Tensor:
    """The `dt` integer whose bits are `b` (last dim); every partial sum fits in int32."""
    return tf.cast(tf.reduce_sum(b * tf.constant(_weights(width, signed)), -1), dt)


def _native_only(dt: tf.DType) -> bool:
    return dt not in _LAYOUTS


def _binary(logical: Callable, on_bits: Callable, native: Callable) -> Callable:
    def rule(ctx: Ctx, x: Value, y: Value, **_: object) -> Value:
        dt = _dtype(x)
        if dt == tf.bool:
            return logical(x, y)
        if _native_only(dt):
            return native(x, y)
        layout = _LAYOUTS[dt]
        return from_bits(on_bits(bits(x, *layout), bits(y, *layout)), *layout, dt)

    return rule


register("and", forms=_FORMS, kind=E)(_binary(tf.logical_and, lambda a, b: a * b, tf.bitwise.bitwise_and))
register("or", forms=_FORMS, kind=E)(_binary(tf.logical_or, lambda a, b: a + b - a * b, tf.bitwise.bitwise_or))
register("xor", forms=_FORMS, kind=E)(_binary(tf.math.logical_xor, lambda a, b: a + b - 2 * a * b, tf.bitwise.bitwise_xor))


@register("not", forms="bool (logical) and integers up to 32 bits (as all-ones minus x); " + _NATIVE, kind=E)
def _not(ctx: Ctx, x: Value, **_: object) -> Value:
    dt = _dtype(x)
    if dt == tf.bool:
        return tf.logical_not(x)
    if _native_only(dt):
        return tf.bitwise.invert(x)
    width, signed = _LAYOUTS[dt]
    ones = -1 if signed else (1 << width) - 1  # every bit set
    return tf.cast(tf.constant(ones, tf.int32) - tf.cast(x, tf.int32), dt)


def _shifted(x: Value, y: Value, width: int, signed: bool, left: bool) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """x shifted left or logically right by y (0 for an amount outside [0, width), as XLA):
    bit j of x takes the weight of bit j ± y, gathered from a table padded with zeros.
    Also returns x's bits and the amount (in [0, width], a new last dim)."""
    b = bits(x, width, signed)
    s = tf.cast(y, tf.int32)
    s = tf.expand_dims(tf.where(tf.logical_or(s < 0, s >= width), tf.constant(width, tf.int32), s), -1)
    w, zeros = _weights(width, signed), np.zeros(width, np.int32)
    j = tf.range(width, dtype=tf.int32)
    table, at = (np.concatenate([w, zeros]), j + s) if left else (np.concatenate([zeros, w]), j - s + width)
    return tf.reduce_sum(b * tf.gather(tf.constant(table), at), -1), b, s


def _shift_rule(kind: str) -> Callable:
    def rule(ctx: Ctx, x: Value, y: Value, **_: object) -> Value:
        dt = _dtype(x)
        if _native_only(dt):
            return _native_shift(kind, x, y)
        width, signed = _LAYOUTS[dt]
        out, b, s = _shifted(x, y, width, signed, left=kind == "left")
        if kind == "arithmetic":
            # the top bit fills the s vacated bits: add the weights of the top s positions
            w = _weights(width, signed)
            fill = np.array([w[width - k:].sum() for k in range(width + 1)], np.int64).astype(np.int32)
            out = out + b[..., -1] * tf.gather(tf.constant(fill), s[..., 0])
        return tf.cast(out, dt)

    return rule


_UNSIGNED = {tf.int64: tf.uint64}


def _native_shift(kind: str, x: Value, y: Value) -> tf.Tensor:
    """TF's own shift ops (wide integers): the logical shift of a signed operand through its
    unsigned twin."""
    if kind == "left":
        return tf.bitwise.left_shift(x, y)
    dt = _dtype(x)
    if kind == "logical" and dt in _UNSIGNED:
        u = _UNSIGNED[dt]
        return tf.bitcast(tf.bitwise.right_shift(tf.bitcast(tf.convert_to_tensor(x), u), tf.bitcast(tf.convert_to_tensor(y), u)), dt)
    return tf.bitwise.right_shift(x, y)


_SHIFT_FORMS = "integers up to 32 bits (bits moved by integer arithmetic), amounts outside [0, width) as XLA; " + _NATIVE
register("shift_left", forms=_SHIFT_FORMS, kind=E)(_shift_rule("left"))
register("shift_right_logical", forms=_SHIFT_FORMS, kind=E)(_shift_rule("logical"))
register("shift_right_arithmetic", forms=_SHIFT_FORMS, kind=E)(_shift_rule("arithmetic"))


@register("population_count", forms="integers up to 32 bits (a sum of bits); " + _NATIVE, kind=E)
def _population_count(ctx: Ctx, x: Value, **_: object) -> Value:
    dt = _dtype(x)
    if _native_only(dt):
        return tf.cast(tf.raw_ops.PopulationCount(x=x), dt)
    return tf.cast(tf.reduce_sum(bits(x, *_LAYOUTS[dt]), -1), dt)


@register("clz", forms="integers up to 32 bits (width minus the highest set bit's position + 1)", kind=E)
def _clz(ctx: Ctx, x: Value, **_: object) -> Value:
    dt = _dtype(x)
    if _native_only(dt):
        ctx.refuse("dtype", dt.name, "TF has no count-leading-zeros op; only integers up to 32 bits")
    width, signed = _LAYOUTS[dt]
    length = tf.reduce_max(bits(x, width, signed) * tf.range(1, width + 1, dtype=tf.int32), -1)
    return tf.cast(width - length, dt)


@register("reduce_xor", forms="any axes; bool (parity of a sum) and integers up to 32 bits (per bit)")
def _reduce_xor(ctx: Ctx, x: Value, axes: Sequence[int], **_: Any) -> Value:
    dt = _dtype(x)
    axes = [int(a) for a in axes]
    if not axes:
        return x
    if dt == tf.bool:
        return tf.equal(tf.math.floormod(tf.reduce_sum(tf.cast(x, tf.int32), axes), 2), 1)
    if _native_only(dt):
        ctx.refuse("dtype", dt.name, "only bools and integers up to 32 bits")
    layout = _LAYOUTS[dt]
    return from_bits(tf.math.floormod(tf.reduce_sum(bits(x, *layout), axes), 2), *layout, dt)
