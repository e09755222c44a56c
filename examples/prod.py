"""The seed blog's first example: a JAX function of params and a batch of inputs."""

import jax.numpy as jnp


def prod(params, xs):
    """xs: (b, 2) → (b,): a tiny two-layer net with a polymorphic batch."""
    h = jnp.tanh(xs @ params["w1"] + params["b1"])
    return jnp.sum(h * params["w2"], axis=-1)
