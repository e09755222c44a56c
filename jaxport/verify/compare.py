"""Parity: compare a runtime's outputs (or goldens) with the JAX reference.

The rule, per output and per case (one function at one batch size):

- float outputs: NaN and ±Inf must sit in the same places (they are counted); over the finite
  places, `max|got - want| <= atol + rtol * max|want|` (scale-aware: `rtol` is relative to the
  output's largest magnitude, so near-zero entries of a large output do not fail it). With
  `rule="elementwise"` the finite places follow numpy's `allclose` instead
  (`|got - want| <= atol + rtol * |want|` everywhere), an opt-in for outputs whose every entry
  matters on its own scale.
- integer and bool outputs: the dtype kind must match and every value must be equal.

Per output the report carries the largest absolute error, that error divided by the output's
scale (`rel_err`) and the non-finite counts. Quantized artifacts are not held to this rule:
`jaxport.verify.accuracy` measures them (SQNR, top-1) and gates the measures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from jaxport.errors import TargetError

def _kind(dtype: np.dtype) -> str:
    """'bool', 'int' or 'float' (complex counts as float: compared on real and imaginary parts)."""
    if dtype == np.bool_:
        return "bool"
    return "int" if np.issubdtype(dtype, np.integer) else "float"


@dataclass
class OutputParity:
    """The comparison of one output, folded over every case it was checked in."""

    kind: str
    max_abs_err: float = 0.0
    scale: float = 0.0
    rel_err: float = 0.0  # max_abs_err / scale, per case, the largest
    excess: float = 0.0  # max_abs_err / allowed, per case, the largest (> 1 = failed)
    nan: int = 0  # non-finite counts in the reference
    inf: int = 0
    mismatched: int = 0  # elements that fail: misplaced NaN/Inf, unequal ints, or over the tolerance
    passed: bool = True
    failure: str = ""  # the first failing case, in words

    def to_json(self) -> dict:
        out = {"kind": self.kind, "max_abs_err": self.max_abs_err, "scale": self.scale,
               "rel_err": _finite_or_none(self.rel_err), "passed": self.passed}
        if self.nan or self.inf:
            out.update(nan=self.nan, inf=self.inf)
        if self.mismatched:
            out["mismatched"] = self.mismatched
        if self.failure:
            out["failure"] = self.failure
        return out


def _ratio(err: float, scale: float) -> float:
    """err / scale; an error on an all-zero output counts as infinitely large."""
    if scale > 0:
        return err / scale
    return 0.0 if err == 0 else math.inf


def _finite_or_none(value: float) -> float | None:
    """JSON has no Infinity: an infinite figure is reported as null (the failure says why)."""
    return value if math.isfinite(value) else None


@dataclass
class Parity:
    """Parity of one target (or of the goldens) over every case: see the module docstring."""

    atol: float
    rtol: float
    rule: str = "scale"
    batch_sizes: list[int] = field(default_factory=list)
    outputs: dict[str, OutputParity] = field(default_factory=dict)  # keyed function/output

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs.values())

    @property
    def max_abs_err(self) -> float:
        return max((o.max_abs_err for o in self.outputs.values()), default=0.0)

    @property
    def max_rel_err(self) -> float:
        return max((o.rel_err for o in self.outputs.values()), default=0.0)

    @property
    def worst(self) -> str:
        """The output that failed worst, or the one with the largest relative error."""
        if not self.outputs:
            return ""
        failed = {k: o for k, o in self.outputs.items() if not o.passed}
        pool = failed or self.outputs
        key = (lambda k: pool[k].excess) if failed else (lambda k: pool[k].rel_err)
        return max(pool, key=key)

    def failure(self) -> str:
        """One line naming the worst failing output and why; "" when every output passed."""
        worst = self.worst
        return self.outputs[worst].failure if worst and not self.passed else ""

    def add(self, output: str, batch: int, got: np.ndarray, want: np.ndarray) -> None:
        """Fold one case of one output (`function/output`) into the totals.

        A shape mismatch raises `TargetError` (the artifact has another signature); every
        other difference is recorded as a failed output.
        """
        got, want = np.asarray(got), np.asarray(want)
        where = f"{output}@batch{batch}"
        if got.shape != want.shape:
            raise TargetError(f"{where}: output shape {list(got.shape)} differs from JAX's "
                              f"{list(want.shape)}", stage="verify")
        o = self.outputs.setdefault(output, OutputParity(_kind(want.dtype)))
        if _kind(got.dtype) != o.kind:
            self._fail(o, where, got.size, f"{where}: the artifact returns {got.dtype.name}, "
                                            f"JAX returns {want.dtype.name}")
            return
        if o.kind == "float":
            self._add_float(o, where, got, want)
        else:
            self._add_exact(o, where, got, want)

    def _add_exact(self, o: OutputParity, where: str, got: np.ndarray, want: np.ndarray) -> None:
        g, w = got.astype(np.int64), want.astype(np.int64)
        diff = np.abs(g - w)
        err = float(diff.max()) if diff.size else 0.0
        o.max_abs_err = max(o.max_abs_err, err)
        o.scale = max(o.scale, float(np.abs(w).max()) if w.size else 0.0)
        bad = int(np.count_nonzero(diff))
        if bad:
            first = tuple(int(i) for i in np.argwhere(diff)[0])
            self._fail(o, where, bad, f"{where}: {bad} of {w.size} {o.kind} values differ "
                                      f"(at {list(first)}: {g[first]} instead of {w[first]}); "
                                      f"{o.kind} outputs must match exactly")

    def _add_float(self, o: OutputParity, where: str, got: np.ndarray, want: np.ndarray) -> None:
        if np.iscomplexobj(got) or np.iscomplexobj(want):
            g = np.stack([np.real(got), np.imag(got)], -1).astype(np.float64)
            w = np.stack([np.real(want), np.imag(want)], -1).astype(np.float64)
        else:
            g, w = got.astype(np.float64), want.astype(np.float64)
        finite = np.isfinite(w)
        o.nan += int(np.isnan(w).sum())
        o.inf += int(np.isinf(w).sum())
        misplaced = int(((np.isnan(g) != np.isnan(w)) | (np.isinf(w) & (g != w))
                         | (np.isinf(g) & finite)).sum())
        both = finite & np.isfinite(g)
        gf, wf = np.where(both, g, 0.0), np.where(finite, w, 0.0)
        diff = np.abs(gf - wf)
        err = float(diff.max()) if diff.size else 0.0
        scale = float(np.abs(wf).max()) if wf.size else 0.0
        o.max_abs_err = max(o.max_abs_err, err)
        o.scale = max(o.scale, scale)
        o.rel_err = max(o.rel_err, _ratio(err, scale))
        if self.rule == "elementwise":
            allowed = self.atol + self.rtol * np.abs(wf)
            bound = f"atol {self.atol:g} + rtol {self.rtol:g} × |want| elementwise"
        else:
            allowed = np.float64(self.atol + self.rtol * scale)
            bound = f"atol {self.atol:g} + rtol {self.rtol:g} × scale {scale:.3g}"
        over = diff > allowed
        excess = np.where(diff > 0, diff / np.maximum(allowed, 1e-300), 0.0)
        o.excess = max(o.excess, float(excess.max()) if excess.size else 0.0)
        if misplaced:
            self._fail(o, where, misplaced, f"{where}: {misplaced} NaN/Inf value(s) where JAX has "
                                            "others (non-finite values must sit in the same places)")
        elif over.any():
            self._fail(o, where, int(over.sum()),
                       f"{where}: max abs err {err:.3g} exceeds the tolerance ({bound}) at "
                       f"{int(over.sum())} of {w.size} values")

    @staticmethod
    def _fail(o: OutputParity, where: str, count: int, message: str) -> None:
        o.passed = False
        o.mismatched += count
        o.failure = o.failure or message

    def to_json(self) -> dict:
        return {"passed": self.passed, "rule": self.rule, "atol": self.atol, "rtol": self.rtol,
                "batch_sizes": self.batch_sizes, "max_abs_err": self.max_abs_err,
                "max_rel_err": _finite_or_none(self.max_rel_err), "worst": self.worst,
                "outputs": {k: o.to_json() for k, o in self.outputs.items()}}
