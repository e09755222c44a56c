"""Special functions TF.js (and LiteRT) have no kernel for: lgamma, digamma, the scaled Bessel
functions I0e and I1e, the incomplete gamma and beta functions.

Where JAX itself lowers a primitive through a jnp-level implementation (`bessel_i0e`, `igamma`,
`igammac`, `igamma_grad_a`, `regularized_incomplete_beta`: Chebyshev
series, series and continued fractions in `while_loop`s), that implementation is traced at the
equation's avals and lowered in place, so the artifact computes what XLA computes. `lgamma`,
`digamma` and `bessel_i1e` are XLA (CHLO) ops with no such implementation, so they are written
here in float arithmetic every runtime has:

- lgamma: Stirling's series at x + 6 less Σ log(x + k), reflected for x < 1/2 with
  log(π / |sin(π r)|) (r = x − round(x)); +inf at the poles and at ±inf, as XLA.
- digamma: the recurrence ψ(x) = ψ(x + 6) − Σ 1/(x + k) and the asymptotic series from there,
  reflected for x < 1/2 with π cot(π r) (r = x − round(x), the exact reduction); NaN at the
  poles (0, −1, −2, …), as XLA.
- bessel_i1e: for |x| < 20 the midpoint rule of (1/π)∫₀^π exp(|x|(cos θ − 1)) cos θ dθ with 24
  points (the integrand is periodic and analytic, so the rule converges geometrically: 4e-8
  absolute error in float32), beyond that the asymptotic expansion; odd in x.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np
import tensorflow as tf

from jaxport.lowering.context import Ctx, Value
from jaxport.lowering.registry import register


def _jax_implementations() -> dict[str, Callable[..., Any]]:
    """primitive -> JAX's own jnp-level implementation, for those the installed JAX has (a JAX
    without one leaves that primitive without a rule: refused by name, as before)."""
    from jax._src.lax import special

    impls = {}
    if hasattr(special, "bessel_i0e_impl"):
        impls["bessel_i0e"] = special.bessel_i0e_impl
    up = getattr(special, "_up_and_broadcast", None)
    for name in ("igamma", "igammac", "igamma_grad_a", "regularized_incomplete_beta"):
        impl = getattr(special, f"{name}_impl", None)
        if impl is not None and up is not None:
            impls[name] = up(impl)
    return impls


def _via_jax(impl: Callable[..., Any]) -> Callable[..., Value]:
    def rule(ctx: Ctx, *args: Value, **_: Any) -> Value:
        specs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in ctx.in_avals]
        (out,) = ctx.call(jax.make_jaxpr(impl)(*specs), args)
        return out

    return rule


for _name, _impl in _jax_implementations().items():
    register(_name, forms="float operands, through JAX's own implementation (traced and inlined)",
             kind="full")(_via_jax(_impl))


def _const(value: float, like: tf.Tensor) -> tf.Tensor:
    return tf.constant(value, like.dtype)


def _reflected(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(x < 1/2, 1 − x there and x elsewhere, x − round(x): π r is π x reduced exactly)."""
    reflect = x < _const(0.5, x)
    return reflect, tf.where(reflect, _const(1.0, x) - x, x), x - tf.round(x)


@register("lgamma", forms="float operands (Stirling's series after a shift, reflection)",
          kind="elementwise")
def _lgamma(ctx: Ctx, x: Value, **_: Any) -> Value:
    x = tf.convert_to_tensor(x)
    reflect, xr, r = _reflected(x)
    z = xr + _const(6.0, x)
    logs = tf.add_n([tf.math.log(xr + _const(k, x)) for k in range(6)])
    zi = tf.math.reciprocal(z)
    zi2 = zi * zi
    tail = _const(1 / 1680, x)
    for c in (1 / 1260, 1 / 360, 1 / 12):  # Stirling's terms, Horner in 1/z²
        tail = _const(c, x) - zi2 * tail
    stirling = ((z - _const(0.5, x)) * tf.math.log(z) - z + _const(0.5 * np.log(2 * np.pi), x)
                + zi * tail - logs)
    pi = _const(np.pi, x)
    value = tf.where(reflect, tf.math.log(pi / tf.abs(tf.sin(pi * r))) - stirling, stirling)
    return tf.where(tf.math.is_inf(x), tf.fill(tf.shape(x), _const(np.inf, x)), value)


@register("digamma", forms="float operands (recurrence, asymptotic series, reflection)",
          kind="elementwise")
def _digamma(ctx: Ctx, x: Value, **_: Any) -> Value:
    x = tf.convert_to_tensor(x)
    reflect, xr, r = _reflected(x)
    shift = tf.zeros_like(xr)
    for k in range(6):
        shift -= tf.math.reciprocal(xr + _const(k, x))
    z = xr + _const(6.0, x)
    z2 = tf.math.reciprocal(z * z)
    tail = _const(1 / 132, x)
    for c in (1 / 240, 1 / 252, 1 / 120, 1 / 12):  # Bernoulli terms B2k / 2k, Horner in 1/z²
        tail = _const(c, x) - z2 * tail
    psi = shift + tf.math.log(z) - _const(0.5, x) / z - z2 * tail
    pi = _const(np.pi, x)
    cot = tf.cos(pi * r) / tf.sin(pi * r)  # LiteRT has no TAN
    psi = tf.where(reflect, psi - pi * cot, psi)
    pole = tf.logical_and(x <= _const(0.0, x), tf.equal(x, tf.floor(x)))
    return tf.where(pole, tf.fill(tf.shape(x), _const(np.nan, x)), psi)


_I1E_POINTS = 24
_I1E_ASYMPTOTIC_FROM = 20.0


@register("bessel_i1e", forms="float operands (midpoint rule below |x| = 20, asymptotic beyond)",
          kind="elementwise")
def _bessel_i1e(ctx: Ctx, x: Value, **_: Any) -> Value:
    x = tf.convert_to_tensor(x)
    ax = tf.abs(x)
    theta = (np.arange(_I1E_POINTS) + 0.5) * np.pi / _I1E_POINTS
    cos = tf.constant(np.cos(theta), x.dtype)
    near = tf.minimum(ax, _const(_I1E_ASYMPTOTIC_FROM, x))  # no overflow in the branch not taken
    integral = tf.reduce_mean(tf.exp(tf.expand_dims(near, -1) * (cos - _const(1.0, x))) * cos, -1)
    far = tf.maximum(ax, _const(_I1E_ASYMPTOTIC_FROM, x))
    term, total = tf.ones_like(far), tf.ones_like(far)
    for k in range(1, 8):  # Σ (-1)^k Π (4 - (2j-1)²) / (k! (8x)^k), for I1's μ = 4
        term = term * _const(-(4.0 - (2 * k - 1) ** 2) / (8.0 * k), x) / far
        total = total + term
    asymptotic = total * tf.math.rsqrt(_const(2 * np.pi, x) * far)
    value = tf.where(ax < _const(_I1E_ASYMPTOTIC_FROM, x), integral, asymptotic)
    return tf.sign(x) * value
