"""conv_general_dilated as Conv2D / DepthwiseConv2dNative / Conv3D in channels-last layout.

Any dimension numbers (operands are transposed to NHWC/HWIO, the result to the requested
layout), explicit padding (TF 'SAME'/'VALID' when equivalent, else a Pad or a crop), strides,
kernel dilation, input dilation (transposed convolution: zeros inserted by interior padding),
and feature groups: depthwise when every group has one input channel, otherwise split into
per-group Conv2Ds and concatenated (TF.js fails at run time on grouped Conv2D).
1-D convolutions run as 2-D with a unit height.
"""

from __future__ import annotations

from typing import Any, Sequence

import tensorflow as tf

from jaxport.lowering.context import Ctx, Value, is_static
from jaxport.lowering.registry import register
from jaxport.lowering.shapes import reshape_to


def _same(n: int, k: int, s: int) -> tuple[int, int]:
    total = max((-(-n // s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def _dilate(x: tf.Tensor, axis: int, d: int) -> tf.Tensor:
    """Insert d-1 zeros between the elements of `x` along `axis`."""
    rank = len(x.shape)
    y = tf.expand_dims(x, axis + 1)
    cfg = [[0, 0]] * (rank + 1)
    cfg[axis + 1] = [0, d - 1]
    y = tf.pad(y, cfg)
    shape = tf.shape(x)
    n = shape[axis]
    y = tf.reshape(y, tf.concat([shape[:axis], [n * d], shape[axis + 1 :]], 0))
    index = [slice(None)] * rank
    index[axis] = slice(0, n * d - (d - 1))
    out = y[tuple(index)]
    static = x.shape.as_list()
    if static[axis] is not None:
        static[axis] = static[axis] * d - (d - 1)
    out.set_shape(static)
    return out


@register("conv_general_dilated", forms="1-3 spatial dims, any dimension numbers, padding (incl. negative), strides, rhs_dilation, lhs_dilation (transposed), feature_group_count (depthwise or split groups); batch_group_count=1")
def _conv(ctx: Ctx, lhs: Value, rhs: Value, window_strides: Sequence[int], padding: Sequence[tuple], lhs_dilation: Sequence[int], rhs_dilation: Sequence[int], dimension_numbers: Any, feature_group_count: int, batch_group_count: int, preferred_element_type: Any = None, **_: Any) -> Value:
    if int(batch_group_count) != 1:
        ctx.refuse("batch_group_count", batch_group_count)
    lhs_spec, rhs_spec, out_spec = dimension_numbers
    nsp = len(lhs_spec) - 2
    if nsp not in (1, 2, 3):
        ctx.refuse("dimension_numbers", dimension_numbers, f"{nsp} spatial dims")
    strides = [int(s) for s in window_strides]
    rdil = [int(d) for d in rhs_dilation]
    ldil = [int(d) for d in lhs_dilation]
    if any(s > 1 for s in strides) and any(d > 1 for d in rdil):
        ctx.refuse("rhs_dilation", tuple(rdil), "kernel dilation together with strides > 1")
    groups = int(feature_group_count)
    out_dt = ctx.out_dtype
    x = tf.convert_to_tensor(lhs)
    w = tf.convert_to_tensor(rhs)
    if x.dtype != out_dt:
        x = tf.cast(x, out_dt)
    if w.dtype != out_dt:
        w = tf.cast(w, out_dt)
    lperm = [lhs_spec[0], *lhs_spec[2:], lhs_spec[1]]
    rperm = [*rhs_spec[2:], rhs_spec[1], rhs_spec[0]]
    if lperm != list(range(nsp + 2)):
        x = tf.transpose(x, lperm)
    if rperm != list(range(nsp + 2)):
        w = tf.transpose(w, rperm)
    in_shape = [ctx.in_avals[0].shape[i] for i in lperm]
    k_shape = [int(ctx.in_avals[1].shape[i]) for i in rperm]
    for i, d in enumerate(ldil):
        if d > 1:
            x = _dilate(x, 1 + i, d)
    spatial = [in_shape[1 + i] if ldil[i] == 1 else (in_shape[1 + i] - 1) * ldil[i] + 1 for i in range(nsp)]
    pads = [tuple(int(p) for p in pr) for pr in padding]
    eff_k = [(k_shape[i] - 1) * rdil[i] + 1 for i in range(nsp)]
    mode = "VALID"
    if any(p != (0, 0) for p in pads):
        if is_static(spatial) and all(p == _same(int(n), k, s) for p, n, k, s in zip(pads, spatial, eff_k, strides)) and ldil == [1] * nsp:
            mode = "SAME"
        else:
            if any(lo < 0 or hi < 0 for lo, hi in pads):
                index = [slice(None)] + [slice(-lo if lo < 0 else 0, hi if hi < 0 else None) for lo, hi in pads] + [slice(None)]
                x = x[tuple(index)]
            if any(lo > 0 or hi > 0 for lo, hi in pads):
                x = tf.pad(x, [[0, 0]] + [[max(lo, 0), max(hi, 0)] for lo, hi in pads] + [[0, 0]])
    if nsp == 1:  # run as 2-D with a unit height
        x = tf.expand_dims(x, 1)
        w = tf.expand_dims(w, 0)
        strides, rdil, k_shape = [1] + strides, [1] + rdil, [1] + k_shape
    c_in_per_group = k_shape[-2]
    c_out = k_shape[-1]
    if groups == 1:
        y = _plain(x, w, strides, rdil, mode)
    elif c_in_per_group == 1 and len(strides) == 2:
        w = reshape_to(ctx, w, [k_shape[0], k_shape[1], groups, c_out // groups])
        y = tf.nn.depthwise_conv2d(x, w, [1, *strides, 1], mode, dilations=rdil)
    else:
        xs = tf.split(x, groups, axis=-1)
        ws = tf.split(w, groups, axis=-1)
        y = tf.concat([_plain(a, b, strides, rdil, mode) for a, b in zip(xs, ws)], axis=-1)
    if nsp == 1:
        y = tf.squeeze(y, 1)
    src = [0] * (nsp + 2)
    src[out_spec[0]] = 0
    src[out_spec[1]] = nsp + 1
    for i, d in enumerate(out_spec[2:]):
        src[d] = 1 + i
    if src != list(range(nsp + 2)):
        y = tf.transpose(y, src)
    return y


def _plain(x: tf.Tensor, w: tf.Tensor, strides: list[int], dil: list[int], mode: str) -> tf.Tensor:
    if len(strides) == 2:
        return tf.nn.conv2d(x, w, [1, *strides, 1], mode, dilations=[1, *dil, 1])
    return tf.nn.conv3d(x, w, [1, *strides, 1], mode, dilations=[1, *dil, 1])
