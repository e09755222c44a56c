"""Shared helpers for the lowering tests: build a Program around a function, lower it, run the
lowered artifact in a runtime and compare with JAX.

A runtime is a function `run(lowered, function_name, inputs) -> outputs` registered in
`RUNTIMES`; tests parametrize over `runtime_params()` so another runtime plugs in by adding one.
TF runs in the quick suite; TF.js (`run_tfjs`, under Node) and TFLite (`run_tflite`, in LiteRT)
convert every case, so they are marked `slow` and run with `make test-slow`.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
import pytest
import tensorflow as tf

from jaxport.lowering import LoweredProgram, lower_program
from jaxport.program import Function, Program
from jaxport.specs import TensorSpec, parse_spec

Runner = Callable[[LoweredProgram, str, dict[str, np.ndarray]], dict[str, np.ndarray]]


def run_tf(lowered: LoweredProgram, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Call the lowered concrete function in TensorFlow."""
    out = lowered.signatures[name](**{k: tf.constant(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in out.items()}


def run_tfjs(lowered: LoweredProgram, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Save, convert with the TF.js target and run the graph model under Node."""
    from jaxport.targets.tfjs import export_tfjs
    from jaxport.verify.tfjs import shared_runner

    work = Path(tempfile.mkdtemp(prefix="lowering-tfjs-"))
    try:
        lowered.save(work / "savedmodel")
        export_tfjs(work / "savedmodel", work / "tfjs", signature=name)
        return shared_runner().run(work / "tfjs", inputs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_tflite(lowered: LoweredProgram, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Save, convert to builtin-only TFLite and run in LiteRT (inputs resized per call)."""
    from jaxport.verify.runtimes import TfliteRunner

    work = Path(tempfile.mkdtemp(prefix="lowering-tflite-"))
    try:
        lowered.save(work / "savedmodel")
        (work / "model.tflite").write_bytes(tflite_convert(work / "savedmodel", [name]))
        return TfliteRunner(work / "model.tflite").run(name, inputs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


RUNTIMES: dict[str, Runner] = {"tf": run_tf, "tfjs": run_tfjs, "tflite": run_tflite}
QUICK_RUNTIMES = {"tf"}


def runtime_params(gaps: dict[str, str] | None = None) -> list[Any]:
    """pytest params over `RUNTIMES`: the converting runtimes marked slow, and a runtime named
    in `gaps` (runtime -> why) a strict xfail: an op that runtime lacks, recorded so a fix shows."""
    params = []
    for name in sorted(RUNTIMES):
        marks = [] if name in QUICK_RUNTIMES else [pytest.mark.slow]
        if gaps and name in gaps:
            marks.append(pytest.mark.xfail(strict=True, reason=gaps[name]))
        params.append(pytest.param(name, marks=marks, id=name))
    return params


def program(fn: Callable[..., Any], inputs: dict[str, str], params: Any = None, name: str = "serving_default") -> Program:
    """A one-function Program: `fn(params, *inputs) -> dict`, inputs as `{"x": "f32[b,3]"}`."""
    specs = [parse_spec(k, v) for k, v in inputs.items()]
    probe = jax.eval_shape(fn, params, *(jax.ShapeDtypeStruct(tuple(2 if isinstance(d, str) else d for d in s.shape), s.dtype) for s in specs))
    return Program(params, {name: Function(name, specs, sorted(probe), fn)})


def random_inputs(specs: list[TensorSpec], sizes: dict[str, int], seed: int = 0, int_range: tuple[int, int] = (-3, 8)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for s in specs:
        shape = s.concrete(sizes)
        if s.dtype == np.bool_:
            out[s.name] = rng.random(shape) < 0.5
        elif np.issubdtype(s.dtype, np.integer):
            out[s.name] = rng.integers(*int_range, size=shape).astype(s.dtype)
        else:
            out[s.name] = rng.standard_normal(shape).astype(s.dtype)
    return out


def reference(prog: Program, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return prog.functions[name](prog.params, inputs)


def assert_close(got: dict[str, np.ndarray], want: dict[str, np.ndarray], atol: float, rtol: float = 1e-4) -> float:
    """Same keys, shapes, dtypes (kind) and values (NaNs in the same places; complex values on
    both parts, within atol + rtol·|want|); returns max abs err."""
    assert sorted(got) == sorted(want)
    worst = 0.0
    for k in want:
        g, w = np.asarray(got[k]), np.asarray(want[k])
        assert g.shape == w.shape, (k, g.shape, w.shape)
        assert g.dtype.kind == w.dtype.kind, (k, g.dtype, w.dtype)
        if w.dtype.kind in "biu":
            np.testing.assert_array_equal(g, w, err_msg=k)
            continue
        wide = np.complex128 if w.dtype.kind == "c" else np.float64  # complex: both parts count
        g, w = g.astype(wide), w.astype(wide)
        np.testing.assert_allclose(g, w, atol=atol, rtol=rtol, err_msg=k)
        if w.size:
            finite = np.isfinite(w)
            if finite.any():
                worst = max(worst, float(np.max(np.abs(g[finite] - w[finite]))))
    return worst


def check_program(prog: Program, runtime: str, sizes_list: list[dict[str, int]], atol: float = 1e-5, rtol: float = 1e-4, seed: int = 0, int_range: tuple[int, int] = (-3, 8)) -> LoweredProgram:
    """Lower `prog`, run every function at each size assignment in `runtime`, compare with JAX."""
    lowered = lower_program(prog)
    for name, fn in prog.functions.items():
        for sizes in sizes_list:
            inputs = random_inputs(fn.inputs, sizes, seed, int_range)
            assert_close(RUNTIMES[runtime](lowered, name, inputs), reference(prog, name, inputs), atol, rtol)
    return lowered


def op_types(lowered: LoweredProgram, name: str = "serving_default") -> list[str]:
    """The TF op types a lowered function runs: the ops its outputs depend on (ops a pattern
    left unused, which TF and the converters prune, are not counted) and nested function bodies."""
    graph = lowered.signatures[name].graph
    live: dict[str, tf.Operation] = {}
    stack = [t.op for t in graph.outputs]
    while stack:
        op = stack.pop()
        if op.name not in live:
            live[op.name] = op
            stack += [t.op for t in op.inputs] + list(op.control_inputs)
    types = [op.type for op in live.values()]
    for f in graph.as_graph_def().library.function:
        types += [n.op for n in f.node_def]
    return types


def tflite_convert(saved: Path, signature_keys: list[str]) -> bytes:
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved), signature_keys=signature_keys)
    return converter.convert()
