"""Inputs for parity checks: rows of `samples.npz`, or seeded random data per input spec.

Each check runs at several batch sizes (DESIGN.md §4: 1 and 3). The batch symbol is the
symbolic leading dim of the first input; other symbols (sequence lengths, set sizes) take
a different size per run so that polymorphism is really exercised.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxport.errors import ManifestError
from jaxport.manifest import SAMPLES_NAME
from jaxport.program import Function
from jaxport.shapes import upper_bounds

OTHER_SYMBOL_SIZES = (8, 5)


def load_samples(path: Path | None) -> dict[str, np.ndarray]:
    """Arrays of `samples.npz` (no pickles), or {} when there is none."""
    if path is None:
        return {}
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except Exception as exc:  # noqa: BLE001 - any failure to read is the user's file
        raise ManifestError(f"{SAMPLES_NAME} cannot be read: {exc}",
                            "write it with numpy.savez(path, name=array, ...)") from None


def batch_symbol(function: Function) -> str | None:
    first = function.inputs[0].shape if function.inputs else ()
    return first[0] if first and isinstance(first[0], str) else None


def make_inputs(function: Function, batch: int, run: int, samples: dict[str, np.ndarray],
                seed: int = 0) -> dict[str, np.ndarray]:
    """Named inputs for `function` at `batch`; run index `run` picks the other symbols' sizes."""
    bsym = batch_symbol(function)
    bounds = upper_bounds(function)
    sizes: dict[str, int] = {bsym: batch} if bsym else {}
    out: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(seed + 1000 * run + batch)
    for spec in function.inputs:
        sample = samples.get(f"{function.name}/{spec.name}", samples.get(spec.name))
        if sample is not None:
            out[spec.name] = _take_rows(_check_sample(spec, sample, function.name), batch,
                                        bsym is not None and spec.shape[:1] == (bsym,))
            for dim, size in zip(spec.shape, out[spec.name].shape):
                if isinstance(dim, str):
                    sizes.setdefault(dim, size)
            continue
        for dim in spec.symbols:
            size = OTHER_SYMBOL_SIZES[run % len(OTHER_SYMBOL_SIZES)]
            sizes.setdefault(dim, min(size, bounds.get(dim, size)))
        out[spec.name] = _random(spec.dtype, spec.concrete(sizes), rng)
    return out


def _check_sample(spec, sample: np.ndarray, fname: str) -> np.ndarray:
    ok = sample.ndim == len(spec.shape) and all(
        isinstance(d, str) or d == n for d, n in zip(spec.shape, sample.shape))
    if not ok:
        raise ManifestError(
            f"{SAMPLES_NAME}: {spec.name!r} has shape {list(sample.shape)}, "
            f"function {fname!r} declares {spec}")
    return sample.astype(spec.dtype)


def _take_rows(sample: np.ndarray, batch: int, batched: bool) -> np.ndarray:
    if not batched:
        return sample
    idx = np.arange(batch) % sample.shape[0]
    return sample[idx]


def _random(dtype: np.dtype, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.integer):
        hi = 256 if dtype == np.uint8 else 8  # small ids: valid for any vocabulary or table
        return rng.integers(0, hi, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)
