"""TFLite (LiteRT) flatbuffer from a SavedModel, with all program functions as signatures.

Contract: `export_tflite(saved_model_dir, out_path, signatures=..., quantize=..., calibration=...)`
converts the named signatures of a SavedModel into one `.tflite` file; symbolic dims stay
dynamic (`shape_signature` -1). The SavedModel is either the lowered plain-TF one (fast, the
default) or the orbax one (its `XlaCallModule` goes through StableHLO; used when the lowering
refuses a primitive) — the pipeline picks and records which.

`quantize`: None (float32), `float16` (weights), `int8-dynamic` (dynamic-range weights), or
`int8` (full integer kernels, float I/O, calibrated on `calibration` inputs).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

import numpy as np

from jaxport.errors import LoweringError, TargetError
from jaxport.targets.base import BuildContext, Target, register
from jaxport.verify.compare import Parity

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


def _verify(ctx: BuildContext, path: Path) -> Parity:
    from jaxport.verify.runtimes import TfliteRunner

    runner = TfliteRunner(path)
    return ctx.parity(lambda c: runner.run(c.function, c.inputs), quantized=bool(ctx.options.quantize))


register(Target("tflite", _build, _verify))
