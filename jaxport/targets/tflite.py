"""TFLite (LiteRT) flatbuffer from a SavedModel, with all program functions as signatures.

Contract: `export_tflite(saved_model_dir, out_path, signatures=..., quantize=..., calibration=...)`
converts the named signatures of a SavedModel into one `.tflite` file; symbolic dims stay
dynamic (`shape_signature` -1). The SavedModel is either the lowered plain-TF one (fast, the
default) or the orbax one (its `XlaCallModule` goes through StableHLO; used when the lowering
refuses a primitive) — the pipeline picks and records which.

`quantize`: None (float32), `float16` (weights), `int8-dynamic` (dynamic-range weights), or
`int8` (full integer kernels, float I/O, calibrated on `calibration` inputs).

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
import time
from contextlib import AbstractContextManager
from importlib.metadata import version
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from jaxport.errors import LoweringError, TargetError
from jaxport.limits import address_space_lifted
from jaxport.targets.base import BuildContext, Case, Target, Verdict, register
from jaxport.verify.node import JS_DIR, NodeProcess, Timing, decode_array, encode_array

DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_HINT = ("install Chromium (`apt-get install chromium`, which scripts/bootstrap runs) or "
                 "point JAXPORT_CHROMIUM at a Chromium or Chrome binary; `--no-litertjs` (option "
                 "`litertjs: false`) skips the LiteRT.js check")
_LITERTJS_WIRE = {"float32": np.dtype("<f4"), "int32": np.dtype("<i4"), "uint8": np.dtype(np.uint8)}

Calibration = Iterable[tuple[str, dict[str, np.ndarray]]]  # (signature, named inputs)


def export_tflite(saved_model_dir: Path, out_path: Path, *, signatures: list[str],
                  quantize: str | None = None, calibration: Calibration | None = None) -> Path:
    """Convert `signatures` of `saved_model_dir` to `out_path`; raise `TargetError` on failure."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir),
                                                         signature_keys=signatures)
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        if calibration is None:
            raise TargetError("full int8 needs calibration inputs", stage="tflite")
        samples = list(calibration)
        converter.representative_dataset = lambda: iter(samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                               tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        flatbuffer = converter.convert()
    except Exception as exc:  # noqa: BLE001 - the converter raises ConverterError and others
        raise TargetError(
            f"TFLite converter failed: {_summary(exc)}",
            "the model uses an op LiteRT cannot express; try another quantize option or report "
            "the op", stage="tflite") from None
    Path(out_path).write_bytes(flatbuffer)
    return Path(out_path)


def _summary(exc: BaseException) -> str:
    """The converter's first `error:` message, without MLIR locations and file paths."""
    for line in str(exc).splitlines():
        if "error:" in line:
            message = line.rsplit("error:", 1)[1].strip()
            return re.sub(r"^loc\(.*\):\s+", "", message)[:400]
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:400]


def _calibration(ctx: BuildContext) -> Calibration:
    """Single-row calibration inputs per signature: every samples.npz row, else generated ones."""
    from jaxport.verify.inputs import calibration_inputs

    for name, function in ctx.program.functions.items():
        for inputs in calibration_inputs(function, ctx.samples, ctx.options.seed):
            yield name, inputs


def _build(ctx: BuildContext) -> tuple[Path, dict]:
    """From the lowered plain-TF graph (fast) when it lowers and converts; else from orbax."""
    def convert(saved_model: Path) -> Path:
        return export_tflite(
            saved_model, ctx.out_dir / "model.tflite",
            signatures=list(ctx.program.functions), quantize=ctx.options.quantize,
            calibration=_calibration(ctx) if ctx.options.quantize == "int8" else None)

    fields: dict = {"quantize": ctx.options.quantize}
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


def with_io_shapes(flatbuffer: bytes, signature: str, shapes: dict[str, tuple[int, ...]]) -> bytes:
    """`flatbuffer` with the `shape` and `shape_signature` of `signature`'s inputs and outputs
    set to `shapes` (by signature name); every other byte is unchanged.

    Raises `TargetError` when the signature, a name, or a shape of the tensor's rank is missing.
    """
    from ai_edge_litert import schema_py_generated as schema

    data = bytearray(flatbuffer)  # the views below write into it
    model = schema.Model.GetRootAs(data, 0)
    for s in range(model.SignatureDefsLength()):
        sig = model.SignatureDefs(s)
        if sig.SignatureKey().decode() != signature:
            continue
        subgraph = model.Subgraphs(sig.SubgraphIndex())
        maps = [sig.Inputs(i) for i in range(sig.InputsLength())]
        maps += [sig.Outputs(i) for i in range(sig.OutputsLength())]
        for tensor_map in maps:
            name = tensor_map.Name().decode()
            tensor = subgraph.Tensors(tensor_map.TensorIndex())
            shape = shapes.get(name)
            if shape is None or len(shape) != tensor.ShapeLength():
                raise TargetError(f"signature {signature!r}: no shape of rank {tensor.ShapeLength()} "
                                  f"for {name!r} (got {shape})", stage="verify")
            for view in (tensor.ShapeAsNumpy(), tensor.ShapeSignatureAsNumpy()):
                if isinstance(view, np.ndarray):  # an absent shape_signature reads as 0
                    view[:] = shape
        return bytes(data)
    raise TargetError(f"the TFLite model has no signature {signature!r}", stage="verify")


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

    def __init__(self, work_dir: Path, *, chromium: str | None = None, js_dir: Path = JS_DIR,
                 timeout_s: float = 600.0) -> None:
        self.chromium = chromium or os.environ.get("JAXPORT_CHROMIUM") or DEFAULT_CHROMIUM
        super().__init__(js_dir, timeout_s=timeout_s, env={"JAXPORT_CHROMIUM": self.chromium})
        self.work_dir = Path(work_dir)
        self._copies: dict[tuple, Path] = {}

    def spawn_guard(self) -> AbstractContextManager[object]:
        return address_space_lifted()

    def _ensure_started(self) -> None:
        if not os.access(self.chromium, os.X_OK):
            raise LitertjsUnavailable(f"no Chromium at {self.chromium}: the TFLite model was not "
                                      "checked in LiteRT.js", CHROMIUM_HINT, stage="verify")
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


def _litertjs(ctx: BuildContext, path: Path, quantized: bool, verdict: Verdict) -> dict:
    """The `runtimes.litertjs` entry; a failure to run it is a warning, wrong outputs a failure."""
    entry: dict = {"status": "", "runtime": None, "parity": None}
    started = time.monotonic()

    def run(case: Case) -> dict[str, np.ndarray]:
        shapes = {k: np.shape(v) for k, v in case.expected.items()}
        return runner.run(path, case.function, case.inputs, shapes)

    try:
        with LitertjsRunner(ctx.work_dir / "litertjs") as runner:
            info = runner.info
            entry["runtime"] = (f"LiteRT.js {info['litertjs']} ({info['accelerator']}, "
                                f"{info['threads']} thread) in Chromium {info['chromium']}")
            entry["browser_start_seconds"] = round(info["start_ms"] / 1000, 3)
            parity = ctx.parity(run, quantized=quantized)
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
    entry["seconds"] = round(time.monotonic() - started, 3)
    return entry


def _verify(ctx: BuildContext, path: Path) -> Verdict:
    from jaxport.verify.runtimes import TfliteRunner

    quantized = bool(ctx.options.quantize)
    runner = TfliteRunner(path)
    parity = ctx.parity(lambda c: runner.run(c.function, c.inputs), quantized=quantized)
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
            runtimes["litertjs"] = _litertjs(ctx, path, quantized, verdict)
    return verdict


register(Target("tflite", _build, _verify))
