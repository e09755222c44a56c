"""The downloadable artifacts a worker makes of a conversion's OUT directory."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from workers.packaging import build_artifacts


def test_weights_are_stored_and_text_deflated_and_every_byte_comes_back(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "savedmodel" / "variables").mkdir(parents=True)
    weights = (np.random.default_rng(0).normal(size=400_000) * 0.05).astype("float32").tobytes()
    (out / "savedmodel" / "variables" / "variables.data-00000-of-00001").write_bytes(weights)
    graph = json.dumps({"nodes": [{"op": "Conv2D", "name": f"conv_{i}"} for i in range(20_000)]})
    (out / "savedmodel" / "saved_model.json").write_text(graph)
    (out / "model.tflite").write_bytes(weights[:1000])
    (out / "report.json").write_text("{}")

    artifacts = build_artifacts(out, tmp_path)

    assert set(artifacts) == {"savedmodel.zip", "model.tflite", "report.json", "bundle.zip"}
    for name, prefix in (("savedmodel.zip", ""), ("bundle.zip", "savedmodel/")):
        with zipfile.ZipFile(artifacts[name]) as zf:
            data = zf.getinfo(f"{prefix}variables/variables.data-00000-of-00001")
            text = zf.getinfo(f"{prefix}saved_model.json")
            assert data.compress_type == zipfile.ZIP_STORED  # random floats: deflate gains ~7%
            assert text.compress_type == zipfile.ZIP_DEFLATED and text.compress_size < text.file_size / 5
            assert zf.read(data) == weights and zf.read(text).decode() == graph
    with zipfile.ZipFile(artifacts["bundle.zip"]) as zf:
        assert sorted(zf.namelist()) == ["model.tflite", "report.json", "savedmodel/saved_model.json",
                                         "savedmodel/variables/variables.data-00000-of-00001"]
