"""What differs between the supported JAX versions in a jaxpr: the one place that maps it.

The rule table (`registry.RULES`) is keyed by primitive name, and names change between JAX
releases. Supported: the range pyproject.toml gives (the lowest is what uv.lock pins, the
newest what `scripts/lane-newest` installs).

- `RENAMED`: a primitive the older JAX binds under one name and the newer under another (the
  same operation, the same params or a superset). `register` files a rule under every
  spelling, so a jaxpr of either version finds it.
- `INTRODUCED`: primitives only the newer JAX has; the older one emits other primitives for the
  same code (e.g. `jnp.log2` was `log` and `div`), which have rules of their own.

- `scan_counts`: how many of a `scan`'s operands are consts and carry (JAX 0.12 replaced the
  `num_consts`/`num_carry` params with the flat-tree `ft_in`).

`tests/lowering/test_versions.py` checks the tables against the installed JAX: every name the
registry holds exists there or is listed here, and every listed name JAX has is one it binds.
"""

from __future__ import annotations

from typing import Any

RENAMED: dict[str, str] = {
    # JAX 0.12 merged `closed_call` and `call` into `eval_jaxpr` (params: `call_jaxpr`).
    "closed_call": "eval_jaxpr",
    "call": "eval_jaxpr",
}
"""Name in older JAX -> name in newer JAX."""

INTRODUCED: dict[str, str] = {
    "log2": "0.12",  # jnp.log2 (older JAX: log, then a multiply)
    "one_minus_square": "0.12",  # the derivative of tanh, 1 - x²
    "polynomial": "0.12",  # lax.polynomial, Horner's rule (older JAX: muls and adds)
}
"""Primitive name -> the JAX release that introduced it."""


def spellings(name: str) -> tuple[str, ...]:
    """`name` and every other name the same primitive has in a supported JAX version."""
    new = RENAMED.get(name)
    olds = tuple(old for old, n in RENAMED.items() if n == name or (new is not None and n == new))
    return tuple(dict.fromkeys((name, *((new,) if new else ()), *olds)))


def scan_counts(params: dict[str, Any]) -> tuple[int, int]:
    """(num_consts, num_carry) of a `scan` equation's params, in either JAX's form."""
    if "num_consts" in params:
        return params["num_consts"], params["num_carry"]
    consts, carry, _ = params["ft_in"].unpack()  # JAX 0.12: flat trees of consts, carry, xs
    return len(consts), len(carry)
