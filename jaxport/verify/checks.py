"""Checks of the reference itself: goldens from samples.npz, and cases a parity check cannot judge.

`check_goldens` runs the composed JAX function on the sample inputs and compares it with the
expected outputs the user computed in their own environment: the one check that sees a wrong
composition (argument order, manifest) or a Keras version drift, which every artifact would
otherwise share with its reference.

`reference_warnings` says when a passing parity check would mean little: an output that
barely changes across the batch rows (within `atol`) or is constant, or a reference holding
NaN/Inf, whose places are compared by position only.
"""

from __future__ import annotations

import numpy as np

from jaxport.program import Program
from jaxport.samples import Samples
from jaxport.targets.base import Case
from jaxport.verify.compare import Parity


def check_goldens(program: Program, samples: Samples, atol: float, rtol: float,
                  rule: str) -> dict[str, Parity]:
    """Parity of each function that has goldens, on all its sample rows at once."""
    results = {}
    for name, expected in samples.expected.items():
        function = program.functions[name]
        got = function(program.params, samples.inputs[name])
        parity = Parity(atol=atol, rtol=rtol, rule=rule)
        rows = samples.rows(function)
        for output, want in expected.items():
            parity.add(f"{name}/{output}", rows or 1, got[output], want)
        parity.batch_sizes = [rows] if rows else []
        results[name] = parity
    return results


def reference_warnings(program: Program, cases: list[Case], atol: float) -> list[str]:
    """Warnings about outputs a parity check cannot tell apart (see the module docstring)."""
    warnings: list[str] = []
    for fname, function in program.functions.items():
        mine = [c for c in cases if c.function == fname]
        batched = {s.name for s in function.output_specs
                   if function.batch_symbol and s.shape[:1] == (function.batch_symbol,)}
        for output in function.outputs:
            where = f"{fname}/{output}"
            values = [np.asarray(c.expected[output]) for c in mine]
            bad = sum(int((~np.isfinite(v)).sum()) for v in values if v.dtype.kind in "fc")
            if bad:
                warnings.append(f"{where}: the JAX reference holds {bad} NaN/Inf value(s); those "
                                "places are compared by position only, not by value")
            if values and all(v.size and np.all(v == v.flat[0]) for v in values):
                warnings.append(f"{where}: the output is constant ({values[0].flat[0]!r}) on every "
                                "input checked, so parity shows only that the constant is right")
                continue
            for case, value in zip(mine, values):
                if output in batched and case.batch >= 2 and value.dtype.kind == "f":
                    finite = np.where(np.isfinite(value), value, 0.0)
                    spread = float((finite.max(0) - finite.min(0)).max())
                    if spread <= atol:
                        warnings.append(
                            f"{where}: its {case.batch} batch rows differ by at most "
                            f"{spread:.3g} (atol {atol:g}): the output barely depends on its "
                            "input, so parity cannot tell a wrong artifact from a right one; "
                            "check with real inputs (samples.npz) or look at the model")
                        break
    return warnings


def nonfinite_weights(program: Program) -> list[str]:
    """Names of the params holding NaN or Inf (as `Program.weight_name` gives them)."""
    import jax

    leaves = jax.tree_util.tree_flatten_with_path(program.params)[0]
    return [program.weight_name(path) for path, leaf in leaves
            if np.asarray(leaf).dtype.kind in "fc" and not np.isfinite(np.asarray(leaf)).all()]
