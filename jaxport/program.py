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

from jaxport.specs import InputRange, TensorSpec

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
    # What verification feeds each input when samples.npz does not: stated in the manifest, or
    # read off the models (a Rescaling input layer, the Embedding an id input reaches).
    ranges: dict[str, InputRange] = field(default_factory=dict)
    # (key, closed jaxpr, output shapes) of the last symbolic trace (`jaxport.shapes.trace`).
    traced: tuple | None = field(default=None, repr=False, compare=False)

    @property
    def batch_symbol(self) -> str | None:
        """The batch dim: the symbolic leading dim of the first input, if it has one."""
        first = self.inputs[0].shape if self.inputs else ()
        return first[0] if first and isinstance(first[0], str) else None

    @property
    def batched_inputs(self) -> list[TensorSpec]:
        """The inputs whose leading dim is the batch symbol (their first axis holds rows)."""
        b = self.batch_symbol
        return [s for s in self.inputs if b is not None and s.shape[:1] == (b,)]

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
    # Readable names of params by their pytree path as plain keys, e.g.
    # ("embed", "trainable", 3) -> "embed: dense/kernel"; paths not in it are shown as is.
    weight_names: dict[tuple, str] = field(default_factory=dict)

    def weight_name(self, path: tuple) -> str:
        """The readable name of the param at a `jax.tree_util` key path."""
        plain = tuple(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))) for k in path)
        return self.weight_names.get(plain) or jax.tree_util.keystr(path)

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
