"""TFLite (LiteRT) flatbuffer from a SavedModel, with all program functions as signatures.

Contract: `export_tflite(saved_model_dir, out_path, signatures=...)` converts the named
signatures of a SavedModel into one float32 `.tflite` file; symbolic dims stay dynamic
(`shape_signature` -1). The SavedModel is either the lowered plain-TF one (fast, the default)
or the orbax one (its `XlaCallModule` goes through StableHLO; used when the lowering refuses a
primitive) — the pipeline picks and records which.

`quantize_tflite(float_path, out_path, mode, calibration)` quantizes that float model with an
ai-edge-quantizer recipe (`RECIPES`): `float16` (weights cast to float16), `int8-weight-only`
(int8 weights dequantized before float kernels), `int8-dynamic` (int8 weights, activations
quantized at run time), `int8` (static: int8 weights and activations, float inputs and outputs,
activation ranges calibrated on `calibration`). The target writes `model.tflite` (float,
checked by parity) and, with `quantize`, `model.<mode>.tflite` beside it (measured and gated).

Verification runs `model.tflite` in two runtimes on the same cases with the same rule:
LiteRT (`ai_edge_litert`, the target's verdict and `parity`) and, unless `litertjs` is off,
LiteRT.js in headless Chromium (`LitertjsRunner`, WASM CPU backend, one browser per
verification). report.json's `runtimes` has both. LiteRT.js 2.5 runs a model only at the
input shapes its file declares (no resizing, a `-1` dim is refused), so each check runs a copy
of `model.tflite` whose signature input and output shapes are set to the check's
(`with_io_shapes`; every other byte is the artifact's). If LiteRT.js cannot run the model, or
Chromium is missing, the target stands on LiteRT with a warning; if LiteRT.js runs it and
parity fails there, the target fails: the artifact is wrong in one of its runtimes.
"""

from __future__ import annotations

import os
import re
import statistics
import time
from contextlib import AbstractContextManager
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from jaxport.errors import LoweringError, TargetError, first_line
from jaxport.limits import address_space_lifted
from jaxport.manifest import SAMPLES_NAME
from jaxport.targets.base import BuildContext, Case, Target, Verdict, register
from jaxport.targets.tflite_flatbuffer import runnable_everywhere, with_io_shapes
from jaxport.verify.node import JS_DIR, NodeProcess, Timing, decode_array, encode_array

DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_HINT = ("install Chromium (`apt-get install chromium`, which scripts/bootstrap runs) or "
                 "point JAXPORT_CHROMIUM at a Chromium or Chrome binary; `--no-litertjs` (option "
                 "`litertjs: false`) skips the LiteRT.js check")
_LITERTJS_WIRE = {"float32": np.dtype("<f4"), "int32": np.dtype("<i4"), "uint8": np.dtype(np.uint8)}

Calibration = dict[str, list[dict[str, np.ndarray]]]  # signature → single-row named inputs
LATENCY_RUNS = 7  # timed runs per model, alternating float and quantized, after one warm-up
# mode → the ai-edge-quantizer recipe it applies (a name of `ai_edge_quantizer.recipe`, with
# the additions the mode needs).
RECIPES = {
    "float16": "weight_only float16 (FLOAT_CASTING, 16 bits)",
    "int8-weight-only": "weight_only_wi8_afp32",
    "int8-dynamic": "dynamic_wi8_afp32",
    "int8": "static_wi8_ai8 with float inputs and outputs",
}


def export_tflite(saved_model_dir: Path, out_path: Path, *, signatures: list[str]) -> Path:
    """Convert `signatures` of `saved_model_dir` to float32 `out_path`, repaired for every
    runtime (`runnable_everywhere`); `TargetError` on failure."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir),
                                                         signature_keys=signatures)
    try:
        flatbuffer = converter.convert()
    except Exception as exc:  # noqa: BLE001 - the converter raises ConverterError and others
        raise TargetError(
            f"TFLite converter failed: {_summary(exc)}",
            "the model uses an op LiteRT cannot express; report the op", stage="tflite") from None
    Path(out_path).write_bytes(runnable_everywhere(flatbuffer))
    return Path(out_path)


def recipe(mode: str) -> list[dict]:
    """The ai-edge-quantizer recipe of `mode` (see `RECIPES`)."""
    from ai_edge_quantizer import algorithm_manager, qtyping
    from ai_edge_quantizer import recipe as recipes
    from ai_edge_quantizer import recipe_manager

    ops, algorithms = qtyping.TFLOperationName, algorithm_manager.AlgorithmName
    manager = recipe_manager.RecipeManager()
    if mode == "float16":
        manager.add_weight_only_config(".*", ops.ALL_SUPPORTED, num_bits=16,
                                       algorithm_key=algorithms.FLOAT_CASTING)
    elif mode == "int8-weight-only":
        manager.load_quantization_recipe(recipes.weight_only_wi8_afp32())
    elif mode == "int8-dynamic":
        manager.load_quantization_recipe(recipes.dynamic_wi8_afp32())
    elif mode == "int8":
        manager.load_quantization_recipe(recipes.static_wi8_ai8())
        for io in (ops.INPUT, ops.OUTPUT):  # keep the signature float, as the float model's
            manager.add_quantization_config(".*", io, None, algorithms.NO_QUANTIZE)
    else:
        raise ValueError(f"unknown TFLite quantization {mode!r}")
    return manager.get_quantization_recipe()


def quantize_tflite(float_path: Path, out_path: Path, mode: str,
                    calibration: Calibration | None = None) -> Path:
    """Quantize the float model at `float_path` into `out_path` with `mode`'s recipe.

    `calibration` (signature → single-row inputs) is required by `int8` and used whole: each
    activation's range is the min and max over every row. (ai-edge-quantizer's `calibrate`
    folds the steps of one call into a 0.95 moving average, which weights the first rows most
    and lets a later row widen a range by 5 % of its excess only; so each row is calibrated on
    its own and the ranges are merged here.) Raises `TargetError` (stage `quantize`) when
    ai-edge-quantizer refuses the model.
    """
    from ai_edge_quantizer import quantizer

    if mode == "int8" and not calibration:
        raise TargetError("static int8 needs calibration inputs", stage="quantize")
    try:
        q = quantizer.Quantizer(str(float_path), recipe(mode))
        ranges: dict | None = None
        if q.need_calibration:
            ranges = {}
            for signature, rows in (calibration or {}).items():
                for row in rows:
                    _widen(ranges, q.calibrate({signature: [row]}, num_threads=1))
        result = q.quantize(ranges, enable_progress_report=False)
    except Exception as exc:  # noqa: BLE001 - the quantizer raises ValueError, RuntimeError, ...
        raise TargetError(f"ai-edge-quantizer failed ({mode}): {type(exc).__name__}: "
                          f"{first_line(exc)}",
                          "try another --quantize mode (int8-dynamic or int8-weight-only "
                          "quantize fewer tensors), or report the model", stage="quantize") from None
    Path(out_path).write_bytes(result.quantized_model)
    return Path(out_path)


def _widen(ranges: dict, new: dict) -> None:
    """Merge one calibration's {tensor: {"min", "max"}} into `ranges`: the envelope of both."""
    for tensor, qsv in new.items():
        old = ranges.get(tensor)
        if not old:
            ranges[tensor] = qsv
        elif qsv:
            ranges[tensor] = {**old, "min": np.minimum(old["min"], qsv["min"]),
                              "max": np.maximum(old["max"], qsv["max"])}


def _summary(exc: BaseException) -> str:
    """The converter's first `error:` message, without MLIR locations and file paths."""
    for line in str(exc).splitlines():
        if "error:" in line:
            message = line.rsplit("error:", 1)[1].strip()
            return re.sub(r"^loc\(.*\):\s+", "", message)[:400]
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:400]


def _calibration(ctx: BuildContext) -> tuple[Calibration, dict, list[str]]:
    """Single-row inputs per signature (every samples.npz row, else generated ones), what they
    came from per function, and the warnings to report."""
    from jaxport.verify.inputs import calibration_inputs

    data, where, warnings = {}, {}, []
    for name, function in ctx.program.functions.items():
        data[name] = calibration_inputs(function, ctx.samples, ctx.options.seed)
        real = ctx.samples.rows(function) is not None
        where[name] = {"source": SAMPLES_NAME if real else "generated", "rows": len(data[name])}
        if not real:
            warnings.append(f"tflite int8: function {name!r} was calibrated on {len(data[name])} "
                            f"generated inputs; real data calibrates better: give {SAMPLES_NAME} "
                            f"rows of real inputs")
    return data, where, warnings


def _build(ctx: BuildContext) -> tuple[Path, dict]:
    """From the lowered plain-TF graph (fast) when it lowers and converts; else from orbax."""
    def convert(saved_model: Path) -> Path:
        return export_tflite(saved_model, ctx.out_dir / "model.tflite",
                             signatures=list(ctx.program.functions))

    fields: dict = {}
    try:
        path = convert(ctx.lowered_savedmodel())
        fields["source"] = "lowered"
    except (LoweringError, TargetError) as lowered_exc:
        reason = f"lowered graph: {lowered_exc}"
        try:
            path = convert(ctx.orbax_savedmodel())
        except TargetError as exc:
            raise TargetError(f"{exc}; before that, {reason}", exc.hint, stage="tflite") from None
        fields.update(source="orbax", source_reason=reason)
    return path, fields


class LitertjsUnavailable(TargetError):
    """Chromium, playwright-core or LiteRT.js is missing, or the browser did not start."""

    code = "litertjs_runtime_missing"


class LitertjsCannotRun(TargetError):
    """LiteRT.js could not load, compile or run the model (an op it lacks, a dtype it has not)."""

    code = "litertjs_cannot_run"


class LitertjsRunner(NodeProcess):
    """`.tflite` files in headless Chromium through LiteRT.js (WASM, 1 thread): `js/run_litertjs.mjs`.

    One runner is one Node process and one browser (started by `start()`, `info` says which
    versions and `start_ms`); use it as a context manager. Fixed-shape copies of the models
    (`with_io_shapes`) are written to `work_dir`. The browser is `chromium`, else
    `$JAXPORT_CHROMIUM`, else /usr/bin/chromium; it is spawned with the address-space limit
    lifted (`jaxport.limits.address_space_lifted`). Raises `LitertjsUnavailable` when it cannot
    start, `LitertjsCannotRun` when LiteRT.js fails on a model.
    """

    script = "run_litertjs.mjs"
    label = "LiteRT.js"
    needs = ("@litertjs/core", "@litertjs/wasm-utils", "playwright-core")
    unavailable = LitertjsUnavailable
    timeout_hint = "the model may be too slow for LiteRT.js's single-threaded WASM backend"
    kept_env = "JAXPORT_LITERTJS_KEPT"

    def __init__(self, work_dir: Path, *, chromium: str | None = None, js_dir: Path = JS_DIR,
                 timeout_s: float = 600.0) -> None:
        self.chromium = chromium or os.environ.get("JAXPORT_CHROMIUM") or DEFAULT_CHROMIUM
        super().__init__(js_dir, timeout_s=timeout_s, env={"JAXPORT_CHROMIUM": self.chromium})
        self.work_dir = Path(work_dir)
        self._copies: dict[tuple, Path] = {}

    def spawn_guard(self) -> AbstractContextManager[object]:
        return address_space_lifted()

    def _check_installed(self) -> None:
        if not os.access(self.chromium, os.X_OK):
            raise LitertjsUnavailable(f"no Chromium at {self.chromium}: the TFLite model was not "
                                      "checked in LiteRT.js", CHROMIUM_HINT, stage="verify")
        super()._check_installed()

    def _ensure_started(self) -> None:
        super()._ensure_started()
        if not self.info.get("ok"):
            reason = self.info.get("error", "no reason given")
            self._stop()
            raise LitertjsUnavailable(f"Chromium did not start for LiteRT.js: {reason}", CHROMIUM_HINT,
                                      stage="verify")

    def run(self, model: Path, signature: str, inputs: dict[str, np.ndarray],
            output_shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
        """Run `signature` of the `.tflite` file `model` once on named inputs; outputs by name.

        `output_shapes` are the shapes the outputs have at these inputs (the JAX reference's).
        """
        outputs, _ = self._run(model, signature, inputs, output_shapes, None)
        return outputs

    def benchmark(self, model: Path, signature: str, inputs: dict[str, np.ndarray],
                  output_shapes: dict[str, tuple[int, ...]], *, warmup: int = 2,
                  runs: int = 10) -> tuple[dict[str, np.ndarray], Timing]:
        """Like `run`, then time `runs` runs after `warmup` untimed ones, inside the page."""
        if runs < 1 or warmup < 0:
            raise ValueError(f"need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
        outputs, timing = self._run(model, signature, inputs, output_shapes,
                                    {"warmup": warmup, "runs": runs})
        return outputs, Timing(**timing)

    def _run(self, model: Path, signature: str, inputs: dict[str, np.ndarray],
             output_shapes: dict[str, tuple[int, ...]],
             bench: dict[str, int] | None) -> tuple[dict[str, np.ndarray], Any]:
        shapes = {**{k: tuple(np.shape(v)) for k, v in inputs.items()},
                  **{k: tuple(v) for k, v in output_shapes.items()}}
        request = {"op": "run", "model": str(self._fixed_copy(Path(model), signature, shapes)),
                   "signature": signature,
                   "inputs": {k: encode_array(k, v, "LiteRT.js") for k, v in inputs.items()}}
        if bench:
            request["bench"] = bench
        reply = self.request(request)
        if not reply["ok"]:
            if reply["stage"] == "launch":
                raise LitertjsUnavailable(f"Chromium did not start for LiteRT.js: {reply['error']}",
                                          CHROMIUM_HINT, stage="verify")
            action = "load" if reply["stage"] == "load" else "run"
            raise LitertjsCannotRun(f"LiteRT.js could not {action} the model: {reply['error']}",
                                    "when the message names an op, LiteRT.js 2.5 (WASM) lacks it",
                                    stage="verify")
        outputs = {k: decode_array(v, _LITERTJS_WIRE) for k, v in reply["outputs"].items()}
        return outputs, reply.get("timing")

    def _fixed_copy(self, model: Path, signature: str, shapes: dict[str, tuple[int, ...]]) -> Path:
        stat = model.stat()
        key = (str(model.resolve()), stat.st_mtime_ns, stat.st_size, signature,
               tuple(sorted(shapes.items())))
        if key not in self._copies:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            copy = self.work_dir / f"{model.stem}-{len(self._copies)}.tflite"
            copy.write_bytes(with_io_shapes(model.read_bytes(), signature, shapes))
            self._copies[key] = copy
        return self._copies[key]


def _litertjs(ctx: BuildContext, path: Path, verdict: Verdict) -> dict:
    """The `runtimes.litertjs` entry; a failure to run it is a warning, wrong outputs a failure."""
    entry: dict = {"status": "", "runtime": None, "parity": None}
    started = time.monotonic()

    def run(case: Case) -> dict[str, np.ndarray]:
        shapes = {k: np.shape(v) for k, v in case.expected.items()}
        return runner.run(path, case.function, case.inputs, shapes)

    try:
        runner = ctx.runtime("litertjs", lambda: _start_litertjs(ctx))
        info = runner.info
        entry["runtime"] = (f"LiteRT.js {info['litertjs']} ({info['accelerator']}, "
                            f"{info['threads']} thread) in Chromium {info['chromium']}")
        # A kept browser (a worker's, across jobs) was started before this conversion.
        entry["browser"] = "kept" if runner.kept else "started"
        entry["browser_start_seconds"] = 0.0 if runner.kept else round(info["start_ms"] / 1000, 3)
        parity = ctx.parity(run)
    except LitertjsUnavailable as exc:
        entry.update(status="unavailable", error=str(exc), hint=exc.hint, code=exc.code)
        verdict.warnings.append(f"{exc} ({exc.hint})")
    except TargetError as exc:  # LitertjsCannotRun, a timeout, the runner exiting, a missing output
        entry.update(status="cannot_run", error=str(exc), code=exc.code)
        verdict.warnings.append(f"LiteRT.js cannot run model.tflite: {exc}; the target stands on "
                                "LiteRT's check")
    else:
        entry.update(status="ok" if parity.passed else "failed", parity=parity.to_json())
        if not parity.passed:
            verdict.failure = TargetError(
                f"parity failed in LiteRT.js (LiteRT passed): {parity.failure()}",
                "model.tflite computes something else in LiteRT.js (Chromium, WASM) than in JAX "
                "and LiteRT; report this model (runtimes.litertjs.parity shows every output), or "
                "convert with --no-litertjs to ship it for LiteRT only", stage="verify")
    finally:
        ctx.release("litertjs")  # the browser's memory back before the next target
    entry["seconds"] = round(time.monotonic() - started, 3)
    return entry


def _start_litertjs(ctx: BuildContext) -> LitertjsRunner:
    runner = LitertjsRunner(ctx.work_dir / "litertjs")
    runner.start()
    return runner


def _prepare(ctx: BuildContext) -> None:
    """Start the LiteRT.js browser while the job loads and builds (a few seconds otherwise)."""
    if ctx.options.litertjs:
        ctx.prestart("litertjs", lambda: _start_litertjs(ctx))


def _verify(ctx: BuildContext, path: Path) -> Verdict:
    from jaxport.verify.runtimes import TfliteRunner

    runner = TfliteRunner(path)
    parity = ctx.parity(lambda c: runner.run(c.function, c.inputs))
    runtimes: dict = {"litert": {"status": "ok" if parity.passed else "failed",
                                 "runtime": f"ai_edge_litert {version('ai-edge-litert')}",
                                 "parity": parity.to_json()}}
    verdict = Verdict(parity, {"runtimes": runtimes})
    if not parity.passed:
        runtimes["litertjs"] = {"status": "skipped", "reason": "LiteRT's parity failed"}
    elif not ctx.options.litertjs:
        runtimes["litertjs"] = {"status": "skipped", "reason": "turned off (litertjs: false)"}
    else:
        with ctx.timings.stage("tflite.litertjs"):
            runtimes["litertjs"] = _litertjs(ctx, path, verdict)
    return verdict


def _quantize(ctx: BuildContext, path: Path) -> dict:
    """`model.<mode>.tflite` from the float `path`: its figures, size and latency beside the
    float model's (1 thread, median of `LATENCY_RUNS` alternating runs on the first case)."""
    from jaxport.verify.runtimes import TfliteRunner

    mode = ctx.options.quantize
    calibration, where, warnings = _calibration(ctx) if mode == "int8" else (None, None, [])
    out = quantize_tflite(path, ctx.out_dir / f"model.{mode}.tflite", mode, calibration)
    quantized, float_ = TfliteRunner(out, stage="quantize"), TfliteRunner(path)
    accuracy = ctx.accuracy(lambda c: quantized.run(c.function, c.inputs))
    case = ctx.cases[0]
    times: dict[str, list[float]] = {"float": [], "quantized": []}
    for runner in (float_, quantized):  # warm-up
        runner.run(case.function, case.inputs)
    for _ in range(LATENCY_RUNS):
        times["float"].append(float_.timed(case.function, case.inputs))
        times["quantized"].append(quantized.timed(case.function, case.inputs))
    fields = {"method": "ai-edge-quantizer", "recipe": RECIPES[mode],
              "path": out.name, "bytes": out.stat().st_size, "float_bytes": path.stat().st_size,
              "latency_ms": statistics.median(times["quantized"]),
              "float_latency_ms": statistics.median(times["float"]),
              "latency": {"runtime": "LiteRT", "threads": 1, "runs": LATENCY_RUNS,
                          "case": f"{case.function}@batch{case.batch}"}}
    if where is not None:
        fields["calibration"] = where
    return ctx.quantization_report(mode, accuracy, **fields, warnings=warnings)


register(Target("tflite", _build, _verify, _quantize, "quantize", prepare=_prepare))
