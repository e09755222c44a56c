"""Elementwise primitives: arithmetic, transcendental, comparison, select (bitwise ones: `bitwise.py`).

All are `kind="elementwise"`: operands may be compact and TF's implicit (trailing-aligned)
broadcasting does the rest. `max(x, 0)` becomes `Relu` and `min(Relu(x), 6)` `Relu6`.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import tensorflow as tf

from jaxport.lowering import fft, patterns
from jaxport.lowering.context import Ctx, Value, op_type
from jaxport.lowering.registry import register

E = "elementwise"


def _dtype(x: Value) -> tf.DType:
    return tf.as_dtype(x.dtype)


def _is_const(x: Value, value: float) -> bool:
    return isinstance(x, np.ndarray) and x.size == 1 and bool(np.all(x == value))


def _is_int(x: Value) -> bool:
    return _dtype(x).is_integer


def _is_bool(x: Value) -> bool:
    return _dtype(x) == tf.bool


def _unary(tf_fn):
    def rule(ctx: Ctx, x: Value, **_: object) -> Value:
        return tf_fn(x)

    return rule


_SMALL = 2.0 ** -7  # below it, x ± x³/6 is exact to float32 (LiteRT's log1p/expm1 are not)


def _small_or(x: Value, cubic: float, big: Value) -> Value:
    """`big`, or x + cubic * x³ where |x| < _SMALL (the odd Taylor series of sinh/asinh/atanh)."""
    small = x + tf.constant(cubic, x.dtype) * x * x * x
    return tf.where(tf.abs(x) < tf.constant(_SMALL, x.dtype), small, big)


def _sinh(x: Value) -> Value:
    return _small_or(x, 1 / 6, (tf.exp(x) - tf.exp(-x)) * tf.constant(0.5, x.dtype))


def _asinh(x: Value) -> Value:
    """sign(x) * log1p(a + a² / (1 + sqrt(1 + a²))), a = |x|, written so that neither a huge nor a
    zero `a` overflows or divides by zero."""
    a = tf.abs(x)
    inv = tf.math.reciprocal(a)
    return _small_or(x, -1 / 6, tf.sign(x) * tf.math.log1p(a + a / (inv + tf.sqrt(1 + inv * inv))))


def _one_minus_square_root(x: Value) -> Value:
    """sqrt(1 - x²), as sqrt((1 - x)(1 + x)) (no cancellation near ±1); NaN for |x| > 1."""
    one = tf.constant(1.0, x.dtype)
    return tf.sqrt((one - x) * (one + x))


def _acosh(x: Value) -> Value:
    """log1p((x - 1) + sqrt((x - 1)(x + 1))) (exact near 1), log(2x) above 1e8 (where x² would
    overflow); NaN below 1."""
    one, big = tf.constant(1.0, x.dtype), tf.constant(1e8, x.dtype)
    m = tf.minimum(x, big)  # no inf in the branch not taken (LiteRT's Select would pass it on)
    near = tf.math.log1p((m - one) + tf.sqrt((m - one) * (m + one)))
    # log(2x), scaled by 2**-64: LiteRT's Log is off (or inf) for inputs above ~1e19
    far = tf.math.log(x * tf.constant(2.0 ** -64, x.dtype)) + tf.constant(65 * np.log(2.0), x.dtype)
    return tf.where(x > big, far, near)


def _atanh(x: Value) -> Value:
    """sign(x) * log1p(2a / (1 - a)) / 2 with a = |x| (1 - a is exact near 1; ±inf at ±1, NaN
    beyond), x + x³/3 near 0."""
    a = tf.abs(x)
    big = tf.sign(x) * tf.constant(0.5, x.dtype) * tf.math.log1p((a + a) / (tf.constant(1.0, x.dtype) - a))
    return _small_or(x, 1 / 3, big)


_UNARY = {
    "exp": tf.exp,
    "log": tf.math.log,
    "log1p": tf.math.log1p,
    "expm1": tf.math.expm1,
    "tanh": tf.tanh,
    "logistic": tf.sigmoid,
    "sin": tf.sin,
    "cos": tf.cos,
    "tan": tf.tan,
    "asin": lambda x: tf.atan2(x, _one_minus_square_root(x)),  # no ASIN in TFLite
    "acos": lambda x: tf.atan2(_one_minus_square_root(x), x),  # no ACOS in TFLite
    "atan": lambda x: tf.atan2(x, tf.ones_like(x)),  # TFLite has ATAN2, not ATAN
    "sinh": _sinh,  # no SINH in TFLite
    "cosh": lambda x: (tf.exp(x) + tf.exp(-x)) * tf.constant(0.5, x.dtype),  # no COSH in TFLite
    "asinh": _asinh,  # no ASINH in TFLite
    "acosh": _acosh,  # no ACOSH in TFLite
    "atanh": _atanh,  # no ATANH in TFLite
    "sqrt": tf.sqrt,
    "rsqrt": tf.math.rsqrt,
    "floor": tf.floor,
    "ceil": tf.math.ceil,
    "is_finite": tf.math.is_finite,
    "square": tf.square,
    "neg": tf.negative,
    "sign": tf.sign,
}
for _name, _fn in _UNARY.items():
    register(_name, forms="float operands" if _name not in ("neg", "sign", "square") else "int and float operands", kind=E)(_unary(_fn))


@register("abs", forms="int, float and complex operands (complex: sqrt(re² + im²) of its parts; LiteRT has no ComplexAbs)", kind=E)
def _abs(ctx: Ctx, x: Value, **_: object) -> Value:
    if not _dtype(x).is_complex:
        return tf.abs(x)
    re, im = fft.split(x)
    return tf.sqrt(re * re + im * im) if im is not None else tf.abs(re)


@register("exp2", forms="float operands", kind=E)
def _exp2(ctx: Ctx, x: Value, **_: object) -> Value:
    return tf.exp(x * tf.constant(np.log(2.0), _dtype(x)))


@register("log2", forms="float operands (as log(x) / log(2))", kind=E)
def _log2(ctx: Ctx, x: Value, **_: object) -> Value:
    return tf.math.log(x) * tf.constant(1.0 / np.log(2.0), _dtype(x))


@register("one_minus_square", forms="float operands (as 1 - x*x)", kind=E)
def _one_minus_square(ctx: Ctx, x: Value, **_: object) -> Value:
    return tf.constant(1.0, _dtype(x)) - x * x


@register("polynomial", forms="any number of coefficients, scalar or broadcasting (Horner's rule, unrolled)", kind=E)
def _polynomial(ctx: Ctx, x: Value, *coeffs: Value, **_: object) -> Value:
    """a_0 + a_1 x + ... + a_N x^N for `coeffs` = (a_0, ..., a_N), lowest degree first."""
    result = coeffs[-1]
    for c in reversed(coeffs[:-1]):
        result = result * x + c
    return result


@register("cbrt", forms="float operands", kind=E)
def _cbrt(ctx: Ctx, x: Value, **_: object) -> Value:
    return tf.sign(x) * tf.pow(tf.abs(x), tf.constant(1.0 / 3.0, _dtype(x)))


# Odd numerator and even denominator of the rational approximation of erf on [-4, 4] used by
# Eigen (TF's own Erf kernel on CPU) for float32; highest degree first.
_ERF_ALPHA = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
              -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
_ERF_BETA = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
             -1.42647390514189e-02)


def _erf(x: Value) -> Value:
    """erf from Mul/Add/Div only: TFLite has no Erf builtin. float64 keeps the TF op."""
    dt = _dtype(x)
    if dt == tf.float64:
        return tf.math.erf(x)
    x32 = tf.clip_by_value(tf.cast(x, tf.float32), -4.0, 4.0)
    x2 = x32 * x32
    p = tf.constant(_ERF_ALPHA[0], tf.float32)
    for c in _ERF_ALPHA[1:]:
        p = p * x2 + c
    q = tf.constant(_ERF_BETA[0], tf.float32)
    for c in _ERF_BETA[1:]:
        q = q * x2 + c
    out = x32 * p / q
    return out if dt == tf.float32 else tf.cast(out, dt)


@register("erf", forms="float operands; a rational approximation from basic ops (TFLite has no Erf)", kind=E)
def _erf_rule(ctx: Ctx, x: Value, **_: object) -> Value:
    return _erf(x)


@register("erfc", forms="float operands; emitted as 1 - erf(x) (TF.js has no Erfc, TFLite no Erf)", kind=E)
def _erfc(ctx: Ctx, x: Value, **_: object) -> Value:
    return tf.constant(1.0, _dtype(x)) - _erf(x)


@register("erf_inv", forms="float32/float16 operands; Giles' polynomial (TF.js has no Erfinv)", kind=E)
def _erf_inv(ctx: Ctx, x: Value, **_: object) -> Value:
    dt = _dtype(x)
    if dt not in (tf.float32, tf.float16, tf.bfloat16):
        ctx.refuse("dtype", dt.name, "only 32-bit and narrower floats")
    x32 = tf.cast(x, tf.float32)
    w = -tf.math.log((1.0 - x32) * (1.0 + x32))
    small = w - 2.5
    big = tf.sqrt(tf.maximum(w, 5.0)) - 3.0
    small_c = [2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
               -0.00125372503, -0.00417768164, 0.246640727, 1.50140941]
    big_c = [-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
             -0.0076224613, 0.00943887047, 1.00167406, 2.83297682]
    ps = tf.constant(small_c[0], tf.float32)
    for c in small_c[1:]:
        ps = c + ps * small
    pb = tf.constant(big_c[0], tf.float32)
    for c in big_c[1:]:
        pb = c + pb * big
    p = tf.where(w < 5.0, ps, pb)
    out = tf.where(tf.abs(x32) >= 1.0, tf.sign(x32) * np.float32(np.inf), p * x32)
    return tf.cast(out, dt)


@register("round", forms="rounding_method AWAY_FROM_ZERO (0) and TO_NEAREST_EVEN (1)", kind=E)
def _round(ctx: Ctx, x: Value, rounding_method: object = 0, **_: object) -> Value:
    if int(rounding_method) == 1:
        return tf.round(x)
    if int(rounding_method) == 0:
        return tf.sign(x) * tf.floor(tf.abs(x) + tf.constant(0.5, _dtype(x)))
    ctx.refuse("rounding_method", rounding_method)


@register("add", forms="all dtypes", kind=E)
@register("add_any", forms="all dtypes (the sum of cotangents in jax.grad/jvp programs)", kind=E)
def _add(ctx: Ctx, x: Value, y: Value, **_: object) -> Value:
    return tf.add(x, y)


@register("sub", forms="all dtypes; (x - max) - log(sum(exp(x - max))) -> LogSoftmax", kind=E)
def _sub(ctx: Ctx, x: Value, y: Value, **_: object) -> Value:
    fused = patterns.log_softmax(x, y)
    return tf.subtract(x, y) if fused is None else fused


@register("mul", forms="all dtypes; out_dtype=None", kind=E)
def _mul(ctx: Ctx, x: Value, y: Value, out_dtype: object = None, **_: object) -> Value:
    if out_dtype is not None:
        ctx.refuse("out_dtype", out_dtype)
    if _is_bool(x):
        return tf.logical_and(x, y)
    return tf.multiply(x, y)


@register("div", forms="floats (Sum/n -> Mean, exp(x - max)/sum -> Softmax); integers rounding toward zero as in JAX (FloorDiv + fix-up: TF.js has no TruncateDiv)", kind=E)
def _div(ctx: Ctx, x: Value, y: Value, **_: object) -> Value:
    if not _is_int(x):
        for pattern in (patterns.softmax, patterns.mean):
            fused = pattern(x, y)
            if fused is not None:
                return fused
        return tf.divide(x, y)
    q = tf.math.floordiv(x, y)
    if _dtype(x).is_unsigned:
        return q
    zero = tf.zeros([], _dtype(x))
    inexact = tf.not_equal(x - q * y, zero)
    differ = tf.not_equal(tf.less(x, zero), tf.less(y, zero))
    return tf.where(tf.logical_and(inexact, differ), q + 1, q)


@register("rem", forms="floats and integers, sign of the dividend (C fmod) as in JAX (FloorMod + fix-up: TF.js has no TruncateMod)", kind=E)
def _rem(ctx: Ctx, x: Value, y: Value, **_: object) -> Value:
    r = tf.math.floormod(x, y)
    if _dtype(x).is_unsigned:
        return r
    zero = tf.zeros([], _dtype(x))
    wrong_sign = tf.logical_and(tf.not_equal(r, zero), tf.not_equal(tf.less(r, zero), tf.less(x, zero)))
    return tf.where(wrong_sign, r - y, r)


@register("pow", forms="float base and float exponent", kind=E)
def _pow(ctx: Ctx, x: Value, y: Value, **_: object) -> Value:
    if _dtype(x) != _dtype(y):
        y = tf.cast(y, _dtype(x))
    return tf.pow(x, y)


@register("integer_pow", forms="any integer exponent (by repeated squaring; negative = reciprocal)", kind=E)
def _integer_pow(ctx: Ctx, x: Value, y: int, **_: object) -> Value:
    n = abs(int(y))
    if n == 0:
        return tf.ones_like(x)
    acc = None
    base = x
    while n:
        if n & 1:
            acc = base if acc is None else acc * base
        n >>= 1
        if n:
            base = base * base
    return tf.math.reciprocal(acc) if y < 0 else acc


def _relu_input(x: Value) -> tf.Tensor | None:
    """The input of `x` when `x` is the output of a TF `Relu` op."""
    if op_type(x) == "Relu":
        return x.op.inputs[0]
    return None


def _maximum(x: Value, y: Value) -> Value:
    if _dtype(x).is_floating:
        for a, b in ((x, y), (y, x)):
            if isinstance(a, tf.Tensor) and _is_const(b, -np.inf):  # max(a, -inf) = a, NaN too
                return a
            if isinstance(a, tf.Tensor) and _is_const(b, 0):
                return tf.nn.relu(a)
    if _is_bool(x):
        return tf.logical_or(x, y)
    return tf.maximum(x, y)


def _minimum(x: Value, y: Value) -> Value:
    if _dtype(x).is_floating:
        for a, b in ((x, y), (y, x)):
            if _is_const(b, np.inf) and isinstance(a, tf.Tensor):
                return a
        for a, b in ((x, y), (y, x)):
            inner = _relu_input(a)
            if inner is not None and _is_const(b, 6) and inner.shape.rank >= np.ndim(b):
                return tf.nn.relu6(inner)
    if _is_bool(x):
        return tf.logical_and(x, y)
    return tf.minimum(x, y)


@register("max", forms="all dtypes; max(x, 0) -> Relu, max(x, -inf) -> x", kind=E)
def _max(ctx: Ctx, x: Value, y: Value, **_: object) -> Value:
    return _maximum(x, y)


@register("min", forms="all dtypes; min(Relu(x), 6) -> Relu6, min(x, inf) -> x", kind=E)
def _min(ctx: Ctx, x: Value, y: Value, **_: object) -> Value:
    return _minimum(x, y)


@register("clamp", forms="all dtypes; clamp(0, x, 6) -> Relu6", kind=E)
def _clamp(ctx: Ctx, lo: Value, x: Value, hi: Value, **_: object) -> Value:
    return _minimum(_maximum(x, lo), hi)


@register("atan2", forms="float operands", kind=E)
def _atan2(ctx: Ctx, x: Value, y: Value, **_: object) -> Value:
    return tf.atan2(x, y)


@register("nextafter", forms="float operands (NextAfter: not in TF.js)", kind=E)
def _nextafter(ctx: Ctx, x: Value, y: Value, **_: object) -> Value:
    return tf.math.nextafter(x, y)


def _compare(tf_fn):
    def rule(ctx: Ctx, x: Value, y: Value, **_: object) -> Value:
        return tf_fn(x, y)

    return rule


for _name, _fn in {"eq": tf.equal, "ne": tf.not_equal, "lt": tf.less, "le": tf.less_equal, "gt": tf.greater, "ge": tf.greater_equal}.items():
    register(_name, forms="all dtypes", kind=E)(_compare(_fn))


def _negative_zero(x: Value) -> tf.Tensor:
    """x is -0.0 (1/x is -inf only there; no bitcast, which TF.js lacks)."""
    return tf.logical_and(tf.equal(x, tf.zeros_like(x)), tf.math.reciprocal(x) < 0)


def _total_order(ctx: Ctx, x: Value, y: Value, strict: bool, equal: bool) -> tf.Tensor:
    """x < y (strict), x <= y or x == y (equal, not strict) in IEEE total order for floats:
    -0 < +0 and NaN above +inf, every NaN taken as positive (no runtime of the lowered path can
    read a NaN's sign bit); integers and bools compare as usual."""
    if not _dtype(x).is_floating:
        return (tf.less if strict else tf.equal if equal else tf.less_equal)(x, y)
    x, y = tf.convert_to_tensor(x), tf.convert_to_tensor(y)
    x_nan, y_nan = tf.not_equal(x, x), tf.not_equal(y, y)
    x_neg0, y_neg0 = _negative_zero(x), _negative_zero(y)
    same = tf.logical_or(tf.logical_and(tf.equal(x, y), tf.equal(x_neg0, y_neg0)),
                         tf.logical_and(x_nan, y_nan))
    if equal:
        return same
    below = tf.logical_or(tf.logical_or(tf.less(x, y), tf.logical_and(tf.logical_not(x_nan), y_nan)),
                          tf.logical_and(x_neg0, tf.logical_and(tf.equal(y, tf.zeros_like(y)), tf.logical_not(y_neg0))))
    return below if strict else tf.logical_or(below, same)


_TOTAL = "floats in IEEE total order (-0 < +0, NaN above +inf; a NaN's sign is not read), integers as usual"
register("lt_to", forms=_TOTAL, kind=E)(lambda ctx, x, y, **_: _total_order(ctx, x, y, True, False))
register("le_to", forms=_TOTAL, kind=E)(lambda ctx, x, y, **_: _total_order(ctx, x, y, False, False))
register("eq_to", forms=_TOTAL, kind=E)(lambda ctx, x, y, **_: _total_order(ctx, x, y, False, True))


@register("bitcast_convert_type", forms="any numeric dtypes, same or different widths as in JAX (Bitcast: not in TF.js)")
def _bitcast_convert_type(ctx: Ctx, x: Value, new_dtype: object) -> Value:
    dt = tf.as_dtype(np.dtype(new_dtype))
    if dt == tf.bool or _is_bool(x):
        ctx.refuse("new_dtype", np.dtype(new_dtype).name, "bool has no bit layout to reinterpret")
    return tf.bitcast(tf.convert_to_tensor(x), dt)


@register("select_n", forms="bool predicate with 2 cases, int32 predicate with any number of cases", kind=E)
def _select_n(ctx: Ctx, which: Value, *cases: Value) -> Value:
    if len(cases) == 1:
        return cases[0]
    if _is_bool(which):
        return tf.where(which, cases[1], cases[0])
    out = cases[-1]
    for i in range(len(cases) - 2, -1, -1):
        out = tf.where(tf.equal(which, i), cases[i], out)
    return out


@register("convert_element_type", forms="any numeric/bool dtype to any other; float->bool as x != 0", kind=E)
def _convert_element_type(ctx: Ctx, x: Value, new_dtype: object, **_: object) -> Value:
    dt = tf.as_dtype(np.dtype(new_dtype))
    if dt == _dtype(x):
        return x
    if dt == tf.bool:
        return tf.not_equal(x, tf.zeros([], _dtype(x)))
    return tf.cast(x, dt)


def _identity(ctx: Ctx, x: Value, **_: object) -> Value:
    return x


for _name in ("copy", "stop_gradient", "sharding_constraint"):
    register(_name, forms="identity", kind=E)(_identity)


def _pow2(k: Value, dt: tf.DType) -> tf.Tensor:
    """2**k for an integer-valued float tensor `k` whose powers are normal numbers of `dt`."""
    return tf.pow(tf.constant(2.0, dt), k)


@register("reduce_precision", forms="float operands, any exponent_bits and mantissa_bits, "
          "as XLA: mantissa rounded to nearest even, overflow to ±inf, the reduced format's subnormals "
          "flushed to ±0, NaN kept (float arithmetic only: TF.js and LiteRT have no bitcasts)", kind=E)
def _reduce_precision(ctx: Ctx, x: Value, exponent_bits: int, mantissa_bits: int) -> Value:
    """Round `x` to a float with `exponent_bits` and `mantissa_bits` (XLA's ReducePrecision).

    XLA rounds the operand's bit pattern; this computes the same value with float arithmetic
    every runtime has: the binade exponent e = floor(log2|x|) (corrected by comparing with 2**e),
    then round-half-even(x * 2**(m - e)) * 2**(e - m), the scaling split in two factors so that
    no intermediate over- or underflows. With fewer exponent bits than the operand, results of
    magnitude >= 2**(emax + 1) become ±inf and nonzero ones below 2**emin ±0. float16/bfloat16
    operands are computed in float32 (exact: every intermediate fits). The operand's own
    subnormals are rounded like XLA does where the runtime keeps subnormals (TF.js); runtimes
    that flush them (TF, LiteRT on CPU) give ±0 for them.
    """
    dt = _dtype(x)
    info = ml_dtypes.finfo(dt.as_numpy_dtype)  # JAX allows only float operands, bits >= 1 and >= 0
    e_bits, m_bits = int(exponent_bits), int(mantissa_bits)
    narrow_exponent = e_bits < info.nexp
    if not narrow_exponent and m_bits >= info.nmant:
        return x
    work = tf.float64 if dt == tf.float64 else tf.float32
    v = tf.cast(x, work)
    bias = 2 ** (e_bits - 1) - 1
    # Below the lowest binade that matters the rounding quantum stays fixed: the operand's
    # subnormals', or (narrower exponent) one binade under the reduced format's smallest normal
    # (anything below it flushes anyway).
    lo, hi = (1 - bias - 1, info.maxexp - 1) if narrow_exponent else (info.minexp, info.maxexp - 1)
    a = tf.abs(v)
    y = v
    if m_bits < info.nmant:
        e = tf.clip_by_value(tf.floor(tf.math.log(a) * tf.constant(1 / np.log(2.0), work)), lo, hi)
        p = _pow2(e, work)
        e = tf.clip_by_value(e - tf.cast(a < p, work) + tf.cast(a >= p * 2, work), lo, hi)
        shift = tf.constant(float(m_bits), work) - e
        s1 = tf.floor(shift * 0.5)
        s2 = shift - s1
        t = v * _pow2(s1, work) * _pow2(s2, work)  # |t| in [2**m, 2**(m + 1)) above the floor
        r = tf.round(t)
        if m_bits == 0:
            # No mantissa bit is left: XLA's "even" is then the exponent's, so a tie of the
            # binade 2**e goes down to 2**e when e's biased field is even, up to 2**(e + 1) if odd.
            k = e + tf.constant(float(1 - info.minexp), work)
            even = tf.equal(tf.floor(k * 0.5), k * 0.5)
            r = tf.where(tf.logical_and(tf.equal(tf.abs(t), 1.5), even), tf.sign(t), r)
        y = r * _pow2(-s2, work) * _pow2(-s1, work)
    if narrow_exponent:
        ay = tf.abs(y)
        zero = tf.constant(0.0, work)
        # ±inf by overflowing y itself: the TFLite converter turns an inf constant into ±FLT_MAX
        huge = tf.constant(2.0 ** (ml_dtypes.finfo(work.as_numpy_dtype).maxexp - 1), work)
        y = tf.where(ay >= tf.constant(2.0 ** (bias + 1), work), y * huge, y)
        tiny = tf.logical_and(ay < tf.constant(2.0 ** (1 - bias), work), ay > zero)
        y = tf.where(tiny, y * zero, y)  # ±0 (the TFLite converter drops a -0.0 constant's sign)
    y = tf.where(tf.not_equal(v, v), v, y)  # NaN stays NaN
    return y if work == dt else tf.cast(y, dt)
