"""`samples.npz`: real inputs for the checks and int8 calibration, and golden outputs.

Keys (numpy arrays, no pickles):

| key | holds |
|---|---|
| `<input>` | an input of every function that declares it |
| `<function>/<input>` | an input of one function (wins over the bare key) |
| `expected/<output>` | the output every function naming it must reproduce on these inputs |
| `<function>/expected/<output>` | the same, for one function |

A batched input's first axis holds the rows (one example each); golden outputs have one row
per input row. Goldens are computed where the model was made (`model(inputs)` in the user's
own environment) and written with `save`; jaxport checks its composed JAX function against
them before it builds anything, which catches a wrong manifest, wrong argument order or a
Keras version drift that every runtime check would share.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from jaxport.errors import ManifestError
from jaxport.manifest import SAMPLES_NAME
from jaxport.program import Function, Program
from jaxport.specs import TensorSpec

EXPECTED = "expected"
_HINT = ("write it with jaxport.samples.save(path, inputs={...}, expected={...}); keys are "
         "<input>, <function>/<input>, expected/<output> or <function>/expected/<output>")


def save(path: str | Path, inputs: Mapping[str, object],
         expected: Mapping[str, object] | None = None, function: str | None = None) -> Path:
    """Write `inputs` (and golden `expected` outputs) as a `samples.npz` at `path`.

    Names are the function's input and output names; with `function`, the keys are scoped to
    that function (`<function>/<input>`), as archives with several functions need. Arrays are
    stored as given (anything `numpy.asarray` takes); rows are their first axis.
    """
    prefix = f"{function}/" if function else ""
    arrays = {f"{prefix}{k}": np.asarray(v) for k, v in inputs.items()}
    arrays.update({f"{prefix}{EXPECTED}/{k}": np.asarray(v) for k, v in (expected or {}).items()})
    for key, value in arrays.items():
        if value.dtype.kind not in "biuf":
            raise ManifestError(f"samples: {key!r} has dtype {value.dtype}",
                                "inputs and outputs are numeric or bool arrays")
    path = Path(path)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())
    return path


def read(path: Path | None) -> dict[str, np.ndarray]:
    """The arrays of a `samples.npz` (bounded like archive members, no pickles); {} for None."""
    if path is None:
        return {}
    from jaxport.archive import check_zip_file

    check_zip_file(Path(path), SAMPLES_NAME)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except Exception as exc:  # noqa: BLE001 - any failure to read is the user's file
        raise ManifestError(f"{SAMPLES_NAME} cannot be read: {type(exc).__name__}: {exc}",
                            _HINT) from None


@dataclass
class Samples:
    """Sample inputs and goldens resolved per function, checked against the program."""

    inputs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # function → input → array
    expected: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # function → output → array

    def rows(self, function: Function) -> int | None:
        """Rows of the function's batched sample inputs (None: no batched sample input)."""
        arrays = self.inputs.get(function.name, {})
        return next((int(arrays[s.name].shape[0]) for s in function.batched_inputs
                     if s.name in arrays), None)


def resolve(arrays: Mapping[str, np.ndarray], program: Program) -> Samples:
    """Assign every key of `arrays` to the functions it belongs to; check dtypes and shapes.

    Raises `ManifestError` for a key that names no input or output, an array that is empty,
    not numeric, or does not fit the declared spec, and for goldens without all their inputs.
    """
    functions = program.functions
    samples = Samples()
    scoped: dict[tuple[str, str, str], np.ndarray] = {}  # (function, "in"|"out", name) → array
    for key, array in arrays.items():
        targets = _key_targets(key, functions)
        if not targets:
            raise ManifestError(f"{SAMPLES_NAME}: key {key!r} names no input or output",
                                _known_keys(functions))
        specific = key.count("/") == (2 if f"/{EXPECTED}/" in f"/{key}" else 1)
        for target in targets:
            if specific or target not in scoped:
                scoped[target] = array
    for (fname, role, name), array in scoped.items():
        function = functions[fname]
        spec = _spec(function, role, name)
        key = f"{fname}/{EXPECTED + '/' if role == 'out' else ''}{name}"
        value = _check_array(key, array, spec)
        table = samples.inputs if role == "in" else samples.expected
        table.setdefault(fname, {})[name] = value
    for fname in set(samples.inputs) | set(samples.expected):
        _check_function(functions[fname], samples.inputs.get(fname, {}),
                        samples.expected.get(fname, {}))
    return samples


def _key_targets(key: str, functions: dict[str, Function]) -> list[tuple[str, str, str]]:
    parts = key.split("/")
    if len(parts) == 1:
        return [(f, "in", key) for f, fn in functions.items() if key in _names(fn.inputs)]
    if len(parts) == 2 and parts[0] == EXPECTED:
        return [(f, "out", parts[1]) for f, fn in functions.items() if parts[1] in fn.outputs]
    if len(parts) == 2 and parts[0] in functions and parts[1] in _names(functions[parts[0]].inputs):
        return [(parts[0], "in", parts[1])]
    if (len(parts) == 3 and parts[0] in functions and parts[1] == EXPECTED
            and parts[2] in functions[parts[0]].outputs):
        return [(parts[0], "out", parts[2])]
    return []


def _names(specs: list[TensorSpec]) -> list[str]:
    return [s.name for s in specs]


def _known_keys(functions: dict[str, Function]) -> str:
    if len(functions) == 1:
        fn = next(iter(functions.values()))
        return (f"inputs: {_names(fn.inputs)}; goldens: "
                f"{[f'{EXPECTED}/{o}' for o in fn.outputs]}")
    return "; ".join(f"{name}/<input> for {_names(fn.inputs)}, {name}/{EXPECTED}/<output> for "
                     f"{fn.outputs}" for name, fn in functions.items())


def _spec(function: Function, role: str, name: str) -> TensorSpec:
    specs = function.inputs if role == "in" else function.output_specs
    return next(s for s in specs if s.name == name)


def _check_array(key: str, array: np.ndarray, spec: TensorSpec) -> np.ndarray:
    if array.dtype.kind not in "biuf":
        raise ManifestError(f"{SAMPLES_NAME}: {key!r} has dtype {array.dtype}, "
                            f"{spec.name!r} is {spec.dtype.name}", _HINT)
    if array.dtype.kind == "f" and spec.dtype.kind in "biu":
        raise ManifestError(f"{SAMPLES_NAME}: {key!r} holds floats, {spec.name!r} is "
                            f"{spec.dtype.name}", "store integer ids as an integer array")
    fits = array.ndim == len(spec.shape) and all(
        isinstance(d, str) or d == n for d, n in zip(spec.shape, array.shape))
    if not fits:
        raise ManifestError(f"{SAMPLES_NAME}: {key!r} has shape {list(array.shape)}, the function "
                            f"declares {spec.name!r} as {list(spec.shape)}", _HINT)
    if array.size == 0:
        raise ManifestError(f"{SAMPLES_NAME}: {key!r} is empty (shape {list(array.shape)})",
                            "give at least one row")
    return array.astype(spec.dtype) if array.dtype != spec.dtype else array


def _check_function(function: Function, inputs: dict[str, np.ndarray],
                    expected: dict[str, np.ndarray]) -> None:
    where = f"{SAMPLES_NAME}: function {function.name!r}"
    sizes: dict[str, tuple[int, str]] = {}
    for spec in function.inputs:
        if spec.name not in inputs:
            continue
        for dim, size in zip(spec.shape, inputs[spec.name].shape):
            if isinstance(dim, str):
                seen = sizes.setdefault(dim, (size, spec.name))
                if seen[0] != size:
                    raise ManifestError(
                        f"{where}: {spec.name!r} has {dim} = {size}, {seen[1]!r} has {seen[0]}",
                        f"inputs that share the symbol {dim!r} must have equal sizes there")
    if expected:
        missing = [s.name for s in function.inputs if s.name not in inputs]
        if missing:
            raise ManifestError(f"{where}: expected outputs are given but input(s) {missing} "
                                "are not", "goldens need every input they were computed from")
        batched = {s.name for s in function.output_specs if s.shape[:1] == (function.batch_symbol,)}
        rows = Samples({function.name: inputs}).rows(function)
        for name, array in expected.items():
            if name in batched and rows is not None and array.shape[0] != rows:
                raise ManifestError(f"{where}: expected/{name} has {array.shape[0]} row(s), "
                                    f"the inputs have {rows}", "compute one golden row per input row")
