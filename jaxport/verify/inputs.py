"""Inputs for parity checks: rows of `samples.npz`, or seeded data shaped like real inputs.

Each check runs at several batch sizes (1 and 3 by default). The batch symbol is the symbolic
leading dim of the first input; other symbols (sequence lengths, set sizes) take a different
size per run so that polymorphism is really exercised.

Generated values follow, in order of precedence:
1. the input's `InputRange` (`Function.ranges`: stated in the manifest, or read off the model:
   pixel values behind `Rescaling`, ids below the vocabulary of the `Embedding` it reaches);
2. an input named like a mask (`*mask*`): prefix masks, 1s then 0s along the last axis;
3. its dtype: bool fair coins, uint8 0..255, other integers 0..7, floats N(0, 1).

Sample rows are used distinctly: case `run` at batch `n` takes `n` rows starting where the
previous case stopped, wrapping around; a file with fewer rows than a batch repeats rows, and
`Feed.warnings` says so (rows that are equal cannot reveal a mix-up across the batch).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from jaxport.manifest import SAMPLES_NAME
from jaxport.program import Function
from jaxport.samples import Samples
from jaxport.shapes import upper_bounds
from jaxport.specs import InputRange, TensorSpec

OTHER_SYMBOL_SIZES = (8, 5)
DEFAULT_ID_HIGH = 7  # valid for any table of 8 or more rows


@dataclass
class Feed:
    """How a function's inputs are made: where they come from and the range of each."""

    source: str  # "samples.npz", "generated", or "samples.npz + generated"
    ranges: dict[str, InputRange]
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"source": self.source, "ranges": {k: r.to_json() for k, r in self.ranges.items()}}


def feed(function: Function, samples: Samples) -> Feed:
    """Describe (for report.json) what `make_inputs` feeds `function`."""
    given = samples.inputs.get(function.name, {})
    ranges = {s.name: input_range(function, s) for s in function.inputs if s.name not in given}
    if not given:
        source = "generated"
    else:
        source = SAMPLES_NAME if not ranges else f"{SAMPLES_NAME} + generated"
    warnings = []
    rows = samples.rows(function)
    if rows is not None and rows < 3:
        warnings.append(f"function {function.name!r}: {SAMPLES_NAME} has {rows} row(s), so the "
                        f"batch-3 check repeats rows and cannot reveal rows mixed up across the "
                        f"batch; give 3 or more rows")
    return Feed(source, ranges, warnings)


def input_range(function: Function, spec: TensorSpec) -> InputRange:
    """The range generated values of `spec` are drawn from (see the module docstring)."""
    if spec.name in function.ranges:
        return function.ranges[spec.name]
    if "mask" in spec.name.lower():
        return InputRange(0, 1, "named like a mask: prefix masks (1s, then 0s)", "mask")
    if spec.dtype == np.bool_:
        return InputRange(0, 1, "bool: fair coin flips", "ids")
    if spec.dtype == np.uint8:
        return InputRange(0, 255, "uint8: every byte value", "ids")
    if spec.dtype.kind in "iu":
        return InputRange(0, DEFAULT_ID_HIGH, "integer: no Embedding reached, small ids", "ids")
    return InputRange(-np.inf, np.inf, "float: standard normal, no range known", "normal")


def make_inputs(function: Function, batch: int, run: int, samples: Samples,
                seed: int = 0) -> dict[str, np.ndarray]:
    """Named inputs for `function` at `batch`; run index `run` picks the other symbols' sizes."""
    bsym = function.batch_symbol
    bounds = upper_bounds(function)
    sizes: dict[str, int] = {bsym: batch} if bsym else {}
    given = samples.inputs.get(function.name, {})
    out: dict[str, np.ndarray] = {}
    batched = {s.name for s in function.batched_inputs}
    for spec in function.inputs:
        if spec.name in given:
            out[spec.name] = _take_rows(given[spec.name], batch, run) if spec.name in batched \
                else given[spec.name]
            for dim, size in zip(spec.shape, out[spec.name].shape):
                if isinstance(dim, str):
                    sizes.setdefault(dim, size)
    rng = np.random.default_rng(seed + 1000 * run + batch)
    for spec in function.inputs:
        if spec.name in out:
            continue
        for dim in spec.symbols:
            size = OTHER_SYMBOL_SIZES[run % len(OTHER_SYMBOL_SIZES)]
            sizes.setdefault(dim, min(size, bounds.get(dim, size)))
        out[spec.name] = generate(spec.dtype, spec.concrete(sizes), input_range(function, spec), rng)
    return {s.name: out[s.name] for s in function.inputs}


def _take_rows(sample: np.ndarray, batch: int, run: int) -> np.ndarray:
    """`batch` rows of `sample`, starting at row `run * batch` and wrapping around."""
    idx = (np.arange(batch) + run * batch) % sample.shape[0]
    return sample[idx]


def generate(dtype: np.dtype, shape: tuple[int, ...], stated: InputRange,
             rng: np.random.Generator) -> np.ndarray:
    """Seeded values of `shape` and `dtype` drawn as `stated` says."""
    if stated.kind == "mask":
        return _prefix_mask(shape, rng).astype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if dtype.kind in "iu" or stated.kind == "ids":
        info = np.iinfo(dtype) if dtype.kind in "iu" else None
        lo = max(int(stated.low), info.min) if info else int(stated.low)
        hi = min(int(stated.high), info.max) if info else int(stated.high)
        return rng.integers(lo, hi, size=shape, endpoint=True).astype(dtype)
    if stated.kind == "normal":
        return rng.standard_normal(shape).astype(dtype)
    return rng.uniform(stated.low, stated.high, size=shape).astype(dtype)


def _prefix_mask(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """1s then 0s along the last axis, a random length (at least 1) per leading index."""
    if not shape:
        return np.ones((), np.int8)
    length = shape[-1]
    keep = rng.integers(1, max(length, 1), size=shape[:-1], endpoint=True)
    return (np.arange(length) < keep[..., None]).astype(np.int8)


def calibration_inputs(function: Function, samples: Samples, seed: int,
                       generated: int = 8) -> list[dict[str, np.ndarray]]:
    """Single-row inputs for int8 calibration: every sample row, else `generated` seeded ones."""
    rows = samples.rows(function)
    if rows is None:
        return [make_inputs(function, 1, i, Samples(), seed + 7 + i) for i in range(generated)]
    return [make_inputs(function, 1, i, samples, seed) for i in range(rows)]
