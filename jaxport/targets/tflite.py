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
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path

import numpy as np

from jaxport.errors import LoweringError, TargetError, first_line
from jaxport.manifest import SAMPLES_NAME
from jaxport.targets.base import BuildContext, Target, register
from jaxport.verify.compare import Parity

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
    """Convert `signatures` of `saved_model_dir` to float32 `out_path`; `TargetError` on failure."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir),
                                                         signature_keys=signatures)
    try:
        flatbuffer = converter.convert()
    except Exception as exc:  # noqa: BLE001 - the converter raises ConverterError and others
        raise TargetError(
            f"TFLite converter failed: {_summary(exc)}",
            "the model uses an op LiteRT cannot express; report the op", stage="tflite") from None
    Path(out_path).write_bytes(flatbuffer)
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


def _verify(ctx: BuildContext, path: Path) -> Parity:
    from jaxport.verify.runtimes import TfliteRunner

    runner = TfliteRunner(path)
    return ctx.parity(lambda c: runner.run(c.function, c.inputs))


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


register(Target("tflite", _build, _verify, _quantize, "quantize"))
