"""Parity: compare a runtime's outputs with the JAX reference.

`passed` means `|got - want| <= atol + rtol * |want|` elementwise for every output (numpy's
`allclose`). `max_rel_err` is the largest absolute error divided by the output's largest
magnitude, a scale-free figure that does not explode near zeros.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from jaxport.errors import TargetError


@dataclass
class Parity:
    atol: float
    rtol: float
    batch_sizes: list[int] = field(default_factory=list)
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    passed: bool = True
    worst: str = ""

    def add(self, where: str, got: np.ndarray, want: np.ndarray) -> None:
        """Fold one output's comparison into the totals; shape or dtype-kind mismatch raises."""
        got, want = np.asarray(got), np.asarray(want)
        if got.shape != want.shape:
            raise TargetError(f"{where}: output shape {list(got.shape)} differs from JAX's "
                              f"{list(want.shape)}", stage="verify")
        g, w = got.astype(np.float64), want.astype(np.float64)
        err = np.abs(g - w)
        abs_err = float(err.max()) if err.size else 0.0
        scale = float(np.abs(w).max()) if w.size else 0.0
        rel_err = abs_err / scale if scale > 0 else abs_err
        if not np.isfinite(g).all() and not np.array_equal(np.isfinite(g), np.isfinite(w)):
            abs_err = rel_err = float("inf")
        ok = bool(np.allclose(g, w, atol=self.atol, rtol=self.rtol, equal_nan=True))
        if abs_err > self.max_abs_err or not self.worst:
            self.worst = where
        self.max_abs_err = max(self.max_abs_err, abs_err)
        self.max_rel_err = max(self.max_rel_err, rel_err)
        self.passed = self.passed and ok

    def to_json(self) -> dict:
        return {"max_abs_err": self.max_abs_err, "max_rel_err": self.max_rel_err,
                "atol": self.atol, "rtol": self.rtol, "batch_sizes": self.batch_sizes,
                "passed": self.passed, "worst": self.worst}
