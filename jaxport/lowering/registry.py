"""The rule table: one lowering rule per JAX primitive, with the forms it supports.

A rule is `rule(ctx, *operands, **params) -> value | list[value]`. Operands are numpy arrays
(constants) or `tf.Tensor`s. The rule's `kind` says what shapes it gets and gives:
- "full": operands materialized to their exact aval shapes; results of the out avals' shapes.
- "elementwise": elementwise in all operands; operands may be *compact* (their shape
  broadcasts numpy-style to the aval shape) and so may the result.
- "raw": operands passed as they are, compact or not (calls into nested jaxprs, which
  materialize what they need); results may be compact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from jax.extend.core import Primitive

from jaxport.lowering.versions import spellings

RuleFn = Callable[..., Any]


@dataclass(frozen=True)
class Rule:
    """A registered lowering: the function, a one-line description of supported forms."""

    primitive: str
    fn: RuleFn
    forms: str
    kind: str
    family: str


RULES: dict[str, Rule] = {}
"""Primitive name -> rule. Keyed by name so that equal primitives from any jax module match."""


@dataclass(frozen=True)
class Refusal:
    """A primitive deliberately left without a rule: why the targets cannot run it, what to do."""

    primitive: str
    why: str
    hint: str
    family: str


REFUSALS: dict[str, Refusal] = {}
"""Primitive name -> refusal: its lowering error says `why` and gives `hint` instead of the
generic "rewrite with supported operations"."""


def refuse(*primitives: str, why: str, hint: str, family: str) -> None:
    """Record `primitives` as refused (no rule, a precise error); a name cannot be both."""
    for name in primitives:
        if name in RULES or name in REFUSALS:
            raise ValueError(f"primitive {name} registered twice")
        REFUSALS[name] = Refusal(name, why, hint, family)


def register(*primitives: Primitive | str, forms: str = "all forms", kind: str = "full") -> Callable[[RuleFn], RuleFn]:
    """Decorator: register `fn` as the lowering of each of `primitives`.

    `forms` is the coverage-table text (what parameter forms the rule accepts); anything
    else must be refused in the rule with `ctx.refuse`. A primitive is filed under each of its
    names across the supported JAX versions (`versions.spellings`); primitive objects that are one
    and the same in the installed JAX (JAX 0.12's `closed_call_p is call_p`) count once.
    """

    if kind not in ("full", "elementwise", "raw"):
        raise ValueError(f"unknown rule kind {kind!r}")

    def deco(fn: RuleFn) -> RuleFn:
        family = fn.__module__.rsplit(".", 1)[-1]
        names = dict.fromkeys(n for p in primitives
                              for n in spellings(p if isinstance(p, str) else p.name))
        for name in names:
            if name in RULES or name in REFUSALS:
                raise ValueError(f"primitive {name} registered twice")
            RULES[name] = Rule(name, fn, forms, kind, family)
        return fn

    return deco
