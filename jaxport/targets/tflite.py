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

from jaxport.errors import TargetError

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
