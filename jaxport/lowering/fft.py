"""`fft` (all four types, over the last 1-3 axes) in real arithmetic, and the complex glue
around it (`complex`, `real`, `imag`, `conj`).

LiteRT's builtins barely take complex tensors (RFFT2D only, power-of-two lengths, no Complex
op), so a transform is computed on real and imaginary parts held apart: a DFT along one axis
is a MatMul with constant cos/sin matrices (lengths up to `DIRECT_MAX`, and prime lengths up to
`PRIME_MAX`), a longer composite length n = n1·n2 the four-step Cooley-Tukey factorization
(n1-point DFTs, a twiddle product, n2-point DFTs; recursively), so constants stay O(n) and the
work O(n·(n1 + n2)). The rule's result is `Complex(re, im)`; the consumers here (`real`,
`imag`, `conj`, another `fft`) read the parts back off that op, so a program whose outputs are
real (a spectrogram) leaves no complex tensor in the graph once TF and the converters prune
the unused `Complex`. A complex value from elsewhere is split with `Real`/`Imag`.

The same holds across the complex arithmetic between an `fft` and its consumers (Keras's STFT
scales and transposes its spectrum): `complex_operands()` makes the structural rules and
add/sub/neg act on the two parts (`PARTWISE`), and mul/div use the complex formulas on them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from jaxport.lowering.context import Ctx, Value, is_static, op_type
from jaxport.lowering.registry import RULES, Rule, register
from jaxport.lowering.shapes import reshape_to, transpose

DIRECT_MAX = 512
"""Lengths up to this are one DFT MatMul (a 512-point complex DFT is two 1 MiB matrices)."""

PRIME_MAX = 2048
"""A prime length cannot be factored: above this its DFT matrices would pass 32 MiB; refused."""

# (re, im) of a complex value; im None stands for zeros (a real operand).
Parts = tuple[Value, Value | None]


def split(x: Value) -> Parts:
    """The real and imaginary parts of complex value `x`, read off the op that made it when it
    is `Complex` or a cast of a real tensor (so no complex tensor is needed), else `Real`/`Imag`."""
    if isinstance(x, np.ndarray):
        return np.real(x), (np.imag(x) if np.iscomplexobj(x) and np.any(np.imag(x)) else None)
    kind = op_type(x)
    if kind == "Complex":
        return x.op.inputs[0], x.op.inputs[1]
    if kind == "Cast" and not x.op.inputs[0].dtype.is_complex:
        return tf.cast(x.op.inputs[0], x.dtype.real_dtype), None
    if not x.dtype.is_complex:
        return x, None
    return tf.math.real(x), tf.math.imag(x)


def join(re: Value, im: Value | None) -> tf.Tensor:
    """`Complex(re, im)`, the form `split` reads back."""
    return tf.complex(re, tf.zeros_like(re) if im is None else im)


def _divisor(n: int) -> int:
    """The largest divisor of `n` that is at most sqrt(n) (1 for a prime)."""
    for d in range(int(np.sqrt(n)), 1, -1):
        if n % d == 0:
            return d
    return 1


def _angles(rows: int, cols: int, n: int) -> np.ndarray:
    """2π·(j·k mod n)/n for j < rows, k < cols, in float64 (exact reduction before the sine)."""
    jk = np.outer(np.arange(rows, dtype=np.int64), np.arange(cols, dtype=np.int64)) % n
    return 2 * np.pi * jk / n


def _matmul(x: Value | None, m: np.ndarray, dtype: tf.DType) -> Value | None:
    """x[..., j] @ m[j, k] as a broadcasting MatMul (the form dot_general gives a Dense layer)."""
    if x is None:
        return None
    if len(x.shape) == 1:  # MatMul takes matrices
        return tf.linalg.matmul(x[None], tf.constant(m, dtype))[0]
    return tf.linalg.matmul(x, tf.constant(m, dtype))


def _add(a: Value | None, b: Value | None, sign: float = 1.0) -> Value | None:
    """a + sign·b where None is zero."""
    if b is None:
        return a
    b = b if sign > 0 else -b
    return b if a is None else a + b


def _dft_direct(x: Parts, n: int, cols: int, inverse: bool, scale: float, dtype: tf.DType) -> Parts:
    """The first `cols` outputs of the n-point DFT of `x` along its last axis, as MatMuls."""
    angles = _angles(n, cols, n)
    c, s = scale * np.cos(angles), scale * np.sin(angles)
    sign = 1.0 if inverse else -1.0  # exp(sign·iθ) = cos θ + sign·i·sin θ
    re, im = x
    re_c, re_s = _matmul(re, c, dtype), _matmul(re, s, dtype)
    im_c, im_s = _matmul(im, c, dtype), _matmul(im, s, dtype)
    return _add(re_c, im_s, -sign), _add(im_c, re_s, sign)


def _dft(x: Parts, dims: list[Any], cols: int, inverse: bool, scale: float, ctx: Ctx) -> Parts:
    """The first `cols` outputs of the DFT (times `scale`; inverse: the exp(+iθ) kernel) along
    the last axis of `x`, whose aval dims are `dims`; the result's last dim is `cols`."""
    n = int(dims[-1])
    dtype = tf.as_dtype(x[0].dtype)
    n1 = _divisor(n)
    if n <= DIRECT_MAX or n1 == 1:
        return _dft_direct(x, n, cols, inverse, scale, dtype)
    # Four-step: j = n2·j1 + j2, k = k1 + n1·k2;
    # X[k] = Σ_j2 ω_n2^(j2·k2) · ω_n^(j2·k1) · Σ_j1 ω_n1^(j1·k1) · x[n2·j1 + j2].
    n2 = n // n1
    lead = list(dims[:-1])
    r = len(lead)
    swap = list(range(r)) + [r + 1, r]
    parts = [None if p is None else transpose(reshape_to(ctx, p, lead + [n1, n2]), swap) for p in x]
    re, im = _dft((parts[0], parts[1]), lead + [n2, n1], n1, inverse, 1.0, ctx)  # [.., j2, k1]
    angles = (1.0 if inverse else -1.0) * _angles(n2, n1, n)
    tc, ts = tf.constant(scale * np.cos(angles), dtype), tf.constant(scale * np.sin(angles), dtype)
    re, im = re * tc - im * ts, re * ts + im * tc
    re, im = (transpose(p, swap) for p in (re, im))  # [.., k1, j2]
    re, im = _dft((re, im), lead + [n1, n2], n2, inverse, 1.0, ctx)  # [.., k1, k2]
    re, im = (reshape_to(ctx, transpose(p, swap), lead + [n]) for p in (re, im))
    if cols < n:
        re, im = re[..., :cols], im[..., :cols]
    return re, im


def _along(x: Parts, dims: list[Any], axis: int, fn) -> tuple[Parts, list[Any]]:
    """`fn(parts, dims)` applied along `axis` (negative) by moving it last and back."""
    rank = len(dims)
    a = rank + axis
    perm = [i for i in range(rank) if i != a] + [a]
    back = list(np.argsort(perm))
    moved = [dims[i] for i in perm]
    parts = tuple(None if p is None else transpose(p, perm) for p in x)
    (re, im), cols = fn(parts, moved)
    moved[-1] = cols
    return (transpose(re, back), None if im is None else transpose(im, back)), [moved[i] for i in back]


def _c2c(x: Parts, dims: list[Any], axes: Sequence[int], inverse: bool, ctx: Ctx) -> tuple[Parts, list[Any]]:
    """Complex DFTs along each of `axes` (negative), scaled by 1/n each when `inverse`."""
    for axis in axes:
        n = int(dims[axis])
        x, dims = _along(x, dims, axis, lambda p, d, n=n: (_dft(p, d, n, inverse, 1 / n if inverse else 1.0, ctx), n))
    return x, dims


def _irfft_last(x: Parts, dims: list[Any], n: int, ctx: Ctx) -> Value:
    """The real inverse DFT of length n along the last axis from its n//2 + 1 first bins: the
    Hermitian spectrum's other half is implied (the imaginary parts of bin 0 and of bin n/2 are
    ignored, as XLA does)."""
    m = n // 2 + 1
    re, im = x
    dtype = tf.as_dtype(re.dtype)
    if n <= DIRECT_MAX or _divisor(n) == 1:
        weight = np.full(m, 2.0)
        weight[0] = 1.0
        if n % 2 == 0:
            weight[-1] = 1.0
        angles = _angles(m, n, n)
        c, s = weight[:, None] * np.cos(angles) / n, -weight[:, None] * np.sin(angles) / n
        return _add(_matmul(re, c, dtype), _matmul(im, s, dtype))
    # The full spectrum X[m..n-1] = conj(X[n-m..1]), then one complex inverse DFT.
    tail = n - m
    re = tf.concat([re, tf.reverse(re[..., 1:tail + 1], [-1])], -1)
    im = tf.concat([im, -tf.reverse(im[..., 1:tail + 1], [-1])], -1)
    return _dft((re, im), list(dims[:-1]) + [n], n, True, 1 / n, ctx)[0]


_TYPES = {0: "FFT", 1: "IFFT", 2: "RFFT", 3: "IRFFT"}


@register("fft", forms=(
    "FFT, IFFT, RFFT, IRFFT over the last 1-3 axes, in real arithmetic (no complex kernels): "
    f"a DFT MatMul per axis with constant cos/sin matrices up to length {DIRECT_MAX}, longer "
    "lengths by four-step Cooley-Tukey; symbolic lengths and prime lengths above "
    f"{PRIME_MAX} refused. The complex result is Complex(re, im), read back by real/imag/conj/fft"))
def _fft(ctx: Ctx, x: Value, fft_type: Any, fft_lengths: Sequence[int]) -> Value:
    kind = _TYPES[int(getattr(fft_type, "value", fft_type))]
    if not is_static(fft_lengths):
        ctx.refuse("fft_lengths", tuple(fft_lengths), "a transform over a symbolic dimension has "
                   "no constant DFT matrix", "transform only axes of static size")
    lengths = [int(n) for n in fft_lengths]
    for n in lengths:
        if _divisor(n) == 1 and n > PRIME_MAX:
            ctx.refuse("fft_lengths", tuple(lengths),
                       f"the prime length {n} has no factorization, and its {n}x{n} DFT matrices "
                       f"would be {2 * 4 * n * n / 2**20:.0f} MiB",
                       "pad the signal to a composite length (jnp.fft's `n`), or build only the "
                       "savedmodel target")
    dims = list(ctx.in_avals[0].shape)
    axes = list(range(-len(lengths), 0))
    if kind in ("FFT", "IFFT"):
        (re, im), _ = _c2c(split(x), dims, axes, kind == "IFFT", ctx)
        return join(re, im)
    if kind == "RFFT":
        n = lengths[-1]
        parts, dims = _along((x, None), dims, -1, lambda p, d: (_dft(p, d, n // 2 + 1, False, 1.0, ctx), n // 2 + 1))
        (re, im), _ = _c2c(parts, dims, axes[:-1], False, ctx)
        return join(re, im)
    parts, dims = _c2c(split(x), dims, axes[:-1], True, ctx)
    return _irfft_last(parts, dims, lengths[-1], ctx)


@register("complex", forms="float operands of one shape (Complex; LiteRT has no such op: read back by real/imag/conj/fft)")
def _complex(ctx: Ctx, x: Value, y: Value) -> Value:
    return tf.complex(x, y)


@register("real", forms="complex operands: the real part, read off Complex/fft when they made it (else Real)", kind="elementwise")
def _real(ctx: Ctx, x: Value) -> Value:
    return split(x)[0]


@register("imag", forms="complex operands: the imaginary part, read off Complex/fft when they made it (else Imag)", kind="elementwise")
def _imag(ctx: Ctx, x: Value) -> Value:
    re, im = split(x)
    return tf.zeros_like(re) if im is None else im


@register("conj", forms="complex and float operands (as Complex(re, -im))", kind="elementwise")
def _conj(ctx: Ctx, x: Value, **_: Any) -> Value:
    re, im = split(x)
    return tf.complex(re, tf.zeros_like(re) if im is None else -im)


PARTWISE = ("transpose", "reshape", "broadcast_in_dim", "squeeze", "slice", "concatenate", "pad",
            "rev", "gather", "dynamic_slice", "select_n", "copy", "add", "sub", "neg")
"""Rules that commute with taking real and imaginary parts: run once per part on complex operands."""


def _is_complex(aval: Any) -> bool:
    return np.dtype(aval.dtype).kind == "c"


def _real_ctx(ctx: Ctx) -> Ctx:
    """`ctx` with every complex aval made its real counterpart (what a rule sees for one part)."""
    def real(aval: Any) -> Any:
        return aval.update(dtype=np.finfo(aval.dtype).dtype) if _is_complex(aval) else aval
    return Ctx(ctx.lowerer, ctx.eqn, [real(a) for a in ctx.in_avals], [real(a) for a in ctx.out_avals])


def _zeros(re: Value) -> Value:
    return np.zeros_like(re) if isinstance(re, np.ndarray) else tf.zeros_like(re)


def _parts_of(ctx: Ctx, operands: Sequence[Value]) -> list[Parts] | None:
    """Each operand's parts (a non-complex operand, such as a dynamic shape, as itself twice),
    or None when no operand is complex."""
    flags = [_is_complex(a) for a in ctx.in_avals]
    if not any(flags):
        return None
    return [split(x) if c else (x, x) for x, c in zip(operands, flags)]


def _partwise(rule: Rule) -> Rule:
    def fn(ctx: Ctx, *operands: Value, **params: Any) -> Value:
        parts = _parts_of(ctx, operands)
        if parts is None:
            return rule.fn(ctx, *operands, **params)
        real = _real_ctx(ctx)
        re = rule.fn(real, *(p[0] for p in parts), **params)
        if all(p[1] is None for p, a in zip(parts, ctx.in_avals) if _is_complex(a)):
            return join(re, None)
        im = rule.fn(real, *(_zeros(p[0]) if p[1] is None else p[1] for p in parts), **params)
        return join(re, im)
    return dataclasses.replace(rule, fn=fn, forms=rule.forms + "; complex operands part by part")


def _mul(a: Parts, b: Parts) -> Parts:
    (x, y), (u, v) = a, b
    if y is None or v is None:
        return x * u, (None if y is None and v is None else (x * v if y is None else y * u))
    return x * u - y * v, x * v + y * u


def _div(a: Parts, b: Parts) -> Parts:
    (x, y), (u, v) = a, b
    if v is None:
        return x / u, None if y is None else y / u
    y = _zeros(x) if y is None else y
    den = u * u + v * v
    return (x * u + y * v) / den, (y * u - x * v) / den


def _complex_formula(rule: Rule, formula) -> Rule:
    def fn(ctx: Ctx, *operands: Value, **params: Any) -> Value:
        parts = _parts_of(ctx, operands)
        if parts is None:
            return rule.fn(ctx, *operands, **params)
        return join(*formula(*parts))
    return dataclasses.replace(rule, fn=fn, forms=rule.forms + "; complex operands on their parts")


def complex_operands() -> None:
    """Let the rules of `PARTWISE`, `mul` and `div` take complex operands as (re, im) parts, so
    complex values between an `fft` and its `real`/`imag` leave no complex op; call once, after
    every rule module registered."""
    for name in PARTWISE:
        RULES[name] = _partwise(RULES[name])
    RULES["mul"] = _complex_formula(RULES["mul"], _mul)
    RULES["div"] = _complex_formula(RULES["div"], _div)
