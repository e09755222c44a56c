"""The engine's central object: a `Program` = a params pytree + named pure JAX functions.

Every source (a `.keras` file, a manifest composite, a user's JAX function) becomes a
`Program`; every target (SavedModel, TFLite, TF.js) and the verifier consume one.

Contract of `Function.fn`: `fn(params, *inputs) -> dict[str, jax.Array]`, pure and
traceable by `jax.jit`/`jax.export` with symbolic dims, inputs positional in `inputs` order,
the returned dict keyed by exactly `outputs`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import jax
import numpy as np

from jaxport.specs import TensorSpec

Params = Any  # a pytree of arrays


@dataclass
class Function:
    name: str
    inputs: list[TensorSpec]
    outputs: list[str]
    fn: Callable[..., dict[str, jax.Array]]
    output_specs: list[TensorSpec] = field(default_factory=list)  # filled by `infer_outputs`
    # jax.export constraints on the symbols, e.g. "s <= 512": declared, or learned by
    # `infer_outputs` from comparisons the models make (a position table of 512 rows).
    constraints: list[str] = field(default_factory=list)

    @property
    def symbols(self) -> list[str]:
        """Symbolic dim names in first-seen order."""
        seen: dict[str, None] = {}
        for spec in self.inputs:
            for s in spec.symbols:
                seen.setdefault(s, None)
        return list(seen)

    def __call__(self, params: Params, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run in JAX on concrete named inputs; the reference output for parity checks."""
        out = jax.jit(self.fn)(params, *(inputs[s.name] for s in self.inputs))
        return {k: np.asarray(out[k]) for k in self.outputs}


@dataclass
class Program:
    params: Params
    functions: dict[str, Function]

    def signature_json(self) -> dict:
        """The `functions` block of report.json."""
        return {
            name: {
                "inputs": {s.name: s.to_json() for s in f.inputs},
                "outputs": {s.name: s.to_json() for s in f.output_specs},
                **({"constraints": f.constraints} if f.constraints else {}),
            }
            for name, f in self.functions.items()
        }
