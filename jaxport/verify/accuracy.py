"""Accuracy of a quantized artifact against the float JAX reference, and the gate on it.

A quantized artifact is not held to the float tolerance (it cannot meet it, by design); it is
measured, and the measures are gated. Per output, over every case it was run on:

- `sqnr_db`: signal-to-quantization-noise ratio, `10·log10(Σ want² / Σ (got - want)²)` over
  the finite places of the reference (None when the artifact matches exactly);
- `max_abs_err`, `scale` (`max|want|`) and `rel_err` = max error ÷ scale (largest per case);
- where the output looks like class scores, `top1` (fraction of rows whose arg-max agrees
  with the reference's) and, with more than 5 classes, `top5` (fraction of rows whose
  reference arg-max is among the artifact's 5 largest scores).

Class scores, the rule: a float reference of rank 2, `[rows, classes]` with classes ≥ 2 and
every value finite. Softmax probabilities and logits both count; an embedding of rank 2 also
counts (its "top-1" is then reported but only gated when asked, see `gate`).

`gate(accuracy, min_sqnr, min_top1)` lists the outputs that fall below a threshold, each in
words naming the output, the figure and the threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from jaxport.errors import TargetError

TOP_K = 5


def sqnr_db(signal: float, noise: float) -> float | None:
    """10·log10(signal / noise) in dB; None when there is no noise (an exact match), -inf
    when the noise is infinite or the signal zero."""
    if noise == 0.0:
        return None
    if signal <= 0 or not math.isfinite(noise):
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def is_class_scores(want: np.ndarray) -> bool:
    """The rule of the module docstring: finite float `[rows, classes]`, classes ≥ 2."""
    return (want.ndim == 2 and want.shape[1] >= 2 and want.dtype.kind == "f"
            and bool(np.isfinite(want).all()))


def _finite_or_none(value: float) -> float | None:
    """JSON has no Infinity: an infinite error (a NaN/Inf where JAX has a value) is null."""
    return value if math.isfinite(value) else None


@dataclass
class OutputAccuracy:
    """One output's figures, folded over the cases it was measured on."""

    signal: float = 0.0  # Σ want² over finite places
    noise: float = 0.0  # Σ (got - want)² over the same places
    max_abs_err: float = 0.0
    scale: float = 0.0
    rel_err: float = 0.0
    rows: int = 0  # class-score rows seen
    top1: int = 0  # rows whose arg-max agrees
    top5_rows: int = 0
    top5: int = 0  # rows whose reference arg-max is in the artifact's top 5

    @property
    def sqnr_db(self) -> float | None:
        return sqnr_db(self.signal, self.noise)

    @property
    def top1_fraction(self) -> float | None:
        return self.top1 / self.rows if self.rows else None

    def to_json(self) -> dict:
        sqnr = self.sqnr_db
        out = {"sqnr_db": sqnr if sqnr is None or math.isfinite(sqnr) else -999.0,
               "max_abs_err": _finite_or_none(self.max_abs_err), "scale": self.scale,
               "rel_err": _finite_or_none(self.rel_err)}
        if self.rows:
            out["top1"] = self.top1_fraction
            out["rows"] = self.rows
        if self.top5_rows:
            out["top5"] = self.top5 / self.top5_rows
        return out


@dataclass
class Accuracy:
    """Per-output accuracy (keyed `function/output`) of one quantized artifact."""

    outputs: dict[str, OutputAccuracy] = field(default_factory=dict)

    def add(self, output: str, got: np.ndarray, want: np.ndarray) -> None:
        """Fold one case of a float output in; non-float outputs are not measured here.

        A shape mismatch raises `TargetError` (the artifact has another signature).
        """
        got, want = np.asarray(got), np.asarray(want)
        if got.shape != want.shape:
            raise TargetError(f"{output}: the quantized artifact returns shape {list(got.shape)}, "
                              f"JAX returns {list(want.shape)}", stage="quantize")
        if want.dtype.kind != "f" or got.dtype.kind != "f":
            return
        o = self.outputs.setdefault(output, OutputAccuracy())
        w = want.astype(np.float64)
        finite = np.isfinite(w)
        g = np.where(finite, got.astype(np.float64), 0.0)
        w = np.where(finite, w, 0.0)
        diff = np.abs(g - w)
        diff = np.where(np.isnan(diff), np.inf, diff)  # NaN where JAX has a value: infinite noise
        err = float(diff.max()) if diff.size else 0.0
        scale = float(np.abs(w).max()) if w.size else 0.0
        o.signal += float(np.square(w).sum())
        o.noise += float(np.square(diff).sum())
        o.max_abs_err = max(o.max_abs_err, err)
        o.scale = max(o.scale, scale)
        o.rel_err = max(o.rel_err, err / scale if scale > 0 else (0.0 if err == 0 else math.inf))
        if is_class_scores(want) and np.isfinite(got).all():
            ref = want.argmax(-1)
            o.rows += want.shape[0]
            o.top1 += int((got.argmax(-1) == ref).sum())
            if want.shape[1] > TOP_K:
                top = np.argsort(-got, axis=-1)[:, :TOP_K]
                o.top5_rows += want.shape[0]
                o.top5 += int((top == ref[:, None]).any(-1).sum())

    def to_json(self) -> dict:
        return {k: o.to_json() for k, o in self.outputs.items()}


def gate(accuracy: Accuracy, min_sqnr: float | None, min_top1: float | None) -> list[str]:
    """The outputs below `min_sqnr` (dB) or `min_top1` (fraction), one sentence each.

    An exact match (SQNR None) passes any SQNR threshold; `min_top1` applies to outputs that
    look like class scores only. None thresholds are not checked.
    """
    failures = []
    for name, o in accuracy.outputs.items():
        sqnr = o.sqnr_db
        if min_sqnr is not None and sqnr is not None and sqnr < min_sqnr:
            failures.append(f"{name}: SQNR {sqnr:.1f} dB is below the threshold {min_sqnr:g} dB")
        top1 = o.top1_fraction
        if min_top1 is not None and top1 is not None and top1 < min_top1:
            failures.append(f"{name}: top-1 agreement {top1:.3f} ({o.top1} of {o.rows} rows) is "
                            f"below the threshold {min_top1:g}")
    return failures
