"""Turn a conversion's OUT directory into the downloadable artifacts of the HTTP API."""

from __future__ import annotations

import zipfile
from pathlib import Path

from jaxport.options import TFJS_QUANTIZATIONS, TFLITE_QUANTIZATIONS


def _zip_tree(root: Path, dest: Path, arc_prefix: str = "") -> None:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                zf.write(path, f"{arc_prefix}{path.relative_to(root).as_posix()}")


def build_artifacts(out_dir: Path, work_dir: Path) -> dict[str, Path]:
    """{artifact name: local file}: `savedmodel.zip` and `tfjs.zip` (directory contents),
    `onnx.zip` (`model.onnx`, or one `<function>.onnx` per function), `model.tflite`,
    `report.json`, the quantized `model.<mode>.tflite` and `tfjs-<mode>.zip` when asked for,
    and `bundle.zip` holding the whole OUT layout."""
    artifacts: dict[str, Path] = {}
    quantized_tfjs = [f"tfjs-{m}" for m in TFJS_QUANTIZATIONS]
    for name in ("savedmodel", "tfjs", "onnx", *quantized_tfjs):
        if (out_dir / name).is_dir():
            artifacts[f"{name}.zip"] = work_dir / f"{name}.zip"
            _zip_tree(out_dir / name, artifacts[f"{name}.zip"])
    if (out_dir / "model.onnx").is_file():
        artifacts["onnx.zip"] = work_dir / "onnx.zip"
        with zipfile.ZipFile(artifacts["onnx.zip"], "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            zf.write(out_dir / "model.onnx", "model.onnx")
    for name in ("model.tflite", "report.json",
                 *(f"model.{m}.tflite" for m in TFLITE_QUANTIZATIONS)):
        if (out_dir / name).is_file():
            artifacts[name] = out_dir / name
    artifacts["bundle.zip"] = work_dir / "bundle.zip"
    _zip_tree(out_dir, artifacts["bundle.zip"])
    return artifacts
