"""Turn a conversion's OUT directory into the downloadable artifacts of the HTTP API."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

from jaxport.options import TFJS_QUANTIZATIONS, TFLITE_QUANTIZATIONS

SAMPLE_BYTES = 256 * 1024
STORE_ABOVE_RATIO = 0.9
"""A member whose first `SAMPLE_BYTES` deflate to more than this fraction is stored as is:
float weights (SavedModel variables, TF.js shards, .tflite buffers) deflate by ~7% at a cost of
~0.3 s per 10 MB, paid again for the bundle; graphs and JSON deflate well and are deflated."""


def _compression(path: Path) -> int:
    """ZIP_STORED for a file that barely deflates (judged on its first bytes), else DEFLATED."""
    with open(path, "rb") as fh:
        head = fh.read(SAMPLE_BYTES)
    if len(head) < SAMPLE_BYTES:
        return zipfile.ZIP_DEFLATED
    ratio = len(zlib.compress(head, 1)) / len(head)
    return zipfile.ZIP_STORED if ratio > STORE_ABOVE_RATIO else zipfile.ZIP_DEFLATED


def _zip_files(dest: Path, members: list[tuple[Path, str]]) -> None:
    """Write `dest` holding each (file, name in the archive), each compressed or stored."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        for path, name in members:
            zf.write(path, name, compress_type=_compression(path))


def _zip_tree(root: Path, dest: Path) -> None:
    _zip_files(dest, [(p, p.relative_to(root).as_posix()) for p in sorted(root.rglob("*"))
                      if p.is_file()])


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
        _zip_files(artifacts["onnx.zip"], [(out_dir / "model.onnx", "model.onnx")])
    for name in ("model.tflite", "report.json",
                 *(f"model.{m}.tflite" for m in TFLITE_QUANTIZATIONS)):
        if (out_dir / name).is_file():
            artifacts[name] = out_dir / name
    artifacts["bundle.zip"] = work_dir / "bundle.zip"
    _zip_tree(out_dir, artifacts["bundle.zip"])
    return artifacts
