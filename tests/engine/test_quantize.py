"""Quantized TFLite (ai-edge-quantizer) and TF.js artifacts: built beside the float ones, run in
their runtimes, measured against the float reference and gated.

The figures are checked independently: the test calls the Keras model itself and runs the
quantized file in `ai_edge_litert` (or TF.js) itself, computes SQNR with numpy, and compares
with report.json.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jaxport.options import ConvertOptions
from jaxport.pipeline import convert_archive
from jaxport.verify.tfjs import shared_runner
from tests import zoo

ROWS = 6
# (TFLite mode, TF.js mode) converted together; every mode of each appears once.
PAIRS = [("int8", "uint8"), ("int8-dynamic", "float16"), ("int8-weight-only", "uint16"),
         ("float16", None)]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """The classifier, its .keras file and samples.npz rows of pixel-range images."""
    keras_model = zoo.small_classifier()
    root = tmp_path_factory.mktemp("quant")
    path = zoo.save(keras_model, root / "classifier.keras")
    rows = np.random.default_rng(5).uniform(0, 255, (ROWS, 16, 16, 3)).astype("float32")
    return keras_model, path, rows


def _convert(path: Path, out: Path, rows: np.ndarray | None, **options) -> dict:
    samples = {"image": rows} if rows is not None else None
    opts = ConvertOptions(targets=["tflite", "tfjs"], batch_sizes=[ROWS], **options)
    return convert_archive(path, out, opts, samples=samples)


@pytest.fixture(scope="module")
def converted(model: tuple, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """{TFLite mode: (report, out dir)}: one conversion per pair, on all samples rows (one case
    of ROWS rows, so the figures cover exactly the rows the test feeds)."""
    _, path, rows = model
    done = {}
    for tflite_mode, tfjs_mode in PAIRS:
        out = tmp_path_factory.mktemp(f"out-{tflite_mode}")
        done[tflite_mode] = (_convert(path, out, rows, quantize=tflite_mode,
                                      tfjs_quantize=tfjs_mode), out)
    return done


def _sqnr(got: np.ndarray, want: np.ndarray) -> float:
    want, got = want.astype(np.float64), got.astype(np.float64)
    return float(10 * np.log10(np.sum(want ** 2) / np.sum((got - want) ** 2)))


def _litert(path: Path, rows: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path), num_threads=1).get_signature_runner("serving_default")
    return runner(image=rows)["logits"]


def _tensor_dtypes(path: Path) -> set[str]:
    from ai_edge_litert.interpreter import Interpreter

    return {np.dtype(t["dtype"]).name for t in Interpreter(model_path=str(path)).get_tensor_details()}


@pytest.mark.parametrize("mode", [p[0] for p in PAIRS])
def test_tflite_mode_runs_in_litert_and_report_matches_numpy(model, converted, mode: str) -> None:
    keras_model, _, rows = model
    report, out = converted[mode]
    result = report["targets"]["tflite"]
    assert result["status"] == "ok", result["error"]
    assert result["path"] == "model.tflite" and result["parity"]["passed"]  # float, float parity
    q = result["quantization"]
    assert q["method"] == "ai-edge-quantizer" and q["path"] == f"model.{mode}.tflite"
    quantized = out / q["path"]
    assert q["bytes"] == quantized.stat().st_size < q["float_bytes"] == (out / "model.tflite").stat().st_size
    assert q["latency_ms"] > 0 and q["float_latency_ms"] > 0 and q["latency"]["threads"] == 1
    dtypes = _tensor_dtypes(quantized)
    assert ("float16" if mode == "float16" else "int8") in dtypes, dtypes

    want = np.asarray(keras_model(rows))
    got = _litert(quantized, rows)
    figures = q["outputs"]["serving_default/logits"]
    assert figures["sqnr_db"] == pytest.approx(_sqnr(got, want), abs=0.5)
    agree = float(np.mean(got.argmax(-1) == want.argmax(-1)))
    assert figures["top1"] == pytest.approx(agree) and figures["rows"] == ROWS
    assert 0 <= figures["top5"] <= 1 and figures["rel_err"] == pytest.approx(
        np.abs(got - want).max() / np.abs(want).max(), rel=0.2)
    assert q["gate"] == {"min_sqnr_db": ConvertOptions().sqnr_floor(mode), "min_top1": None,
                         "passed": True, "failures": []}


def test_static_int8_is_calibrated_on_samples_with_float_io(converted) -> None:
    report, out = converted["int8"]
    q = report["targets"]["tflite"]["quantization"]
    assert q["calibration"] == {"serving_default": {"source": "samples.npz", "rows": ROWS}}
    assert not q["warnings"] and not report["warnings"]
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(out / q["path"])).get_signature_runner("serving_default")
    assert runner.get_input_details()["image"]["dtype"] == np.float32
    assert runner.get_output_details()["logits"]["dtype"] == np.float32


def _input_scale(path: Path) -> float:
    """The scale of the int8 tensor the float image input is quantized into."""
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_path=str(path)).get_tensor_details()
    scales = [t["quantization"][0] for t in details
              if t["dtype"] == np.int8 and t["name"].startswith("serving_default_image")]
    assert len(scales) == 1, [t["name"] for t in details]
    return float(scales[0])


def test_static_int8_calibrates_on_every_row(model, tmp_path: Path) -> None:
    """Two samples files that differ only in their last row: the bright last row widens the
    input's calibrated range to all of [0, 255], so every row counts in full (a moving average
    over the rows would give the first ones most of the say: about 51 here).
    The outlier row costs the dim rows most of their accuracy, so the gate is off here."""
    _, path, _ = model
    dim = np.random.default_rng(7).uniform(0, 40, (5, 16, 16, 3)).astype("float32")
    bright = np.concatenate([dim, np.full((1, 16, 16, 3), 255, np.float32)])
    scales = {}
    for name, rows in (("dim", np.concatenate([dim, dim[:1]])), ("bright", bright)):
        report = convert_archive(path, tmp_path / name, ConvertOptions(
            targets=["tflite"], quantize="int8", min_sqnr=0), samples={"image": rows})
        q = report["targets"]["tflite"]["quantization"]
        assert report["targets"]["tflite"]["status"] == "ok", report["targets"]["tflite"]["error"]
        assert q["calibration"]["serving_default"]["rows"] == 6
        scales[name] = _input_scale(tmp_path / name / q["path"])
    # Input range [0, 40) vs [0, 255] over 256 levels.
    assert scales["dim"] == pytest.approx(40 / 255, rel=0.05)
    assert scales["bright"] == pytest.approx(255 / 255, rel=0.01)


def test_static_int8_without_samples_warns(model, tmp_path: Path) -> None:
    _, path, _ = model
    report = convert_archive(path, tmp_path, ConvertOptions(targets=["tflite"], quantize="int8"))
    q = report["targets"]["tflite"]["quantization"]
    assert q["calibration"] == {"serving_default": {"source": "generated", "rows": 8}}
    assert any("real data calibrates better" in w for w in report["warnings"])
    assert report["inputs"]["serving_default"]["ranges"]["image"]["high"] == 255  # pixels


def test_gate_fails_above_and_passes_below_what_the_model_reaches(model, converted,
                                                                  tmp_path: Path) -> None:
    _, path, rows = model
    reached = converted["int8-dynamic"][0]["targets"]["tflite"]["quantization"]["outputs"][
        "serving_default/logits"]["sqnr_db"]
    above = _convert(path, tmp_path / "above", rows, quantize="int8-dynamic",
                     min_sqnr=reached + 1)["targets"]["tflite"]
    assert above["status"] == "failed" and above["error"]["stage"] == "quantize"
    message = above["error"]["message"]
    assert message.startswith("the int8-dynamic artifact model.int8-dynamic.tflite falls below "
                              "the accuracy gate: serving_default/logits: SQNR "
                              f"{reached:.1f} dB is below the threshold {reached + 1:g} dB")
    assert "int8-weight-only" in above["error"]["hint"] and "samples.npz" in above["error"]["hint"]
    assert above["quantization"]["gate"]["passed"] is False  # the figures are still reported
    assert (tmp_path / "above" / "model.tflite").is_file()
    below = _convert(path, tmp_path / "below", rows, quantize="int8-dynamic",
                     min_sqnr=reached - 1, min_top1=1.0)["targets"]["tflite"]
    assert below["status"] == "ok", below["error"]
    assert below["quantization"]["gate"] == {"min_sqnr_db": reached - 1, "min_top1": 1.0,
                                             "passed": True, "failures": []}


@pytest.mark.parametrize("mode", [p[1] for p in PAIRS if p[1]])
def test_tfjs_quantized_figures(model, converted, mode: str) -> None:
    keras_model, _, rows = model
    report, out = next(converted[t] for t, j in PAIRS if j == mode)
    result = report["targets"]["tfjs"]
    assert result["status"] == "ok", result["error"]
    assert result["path"] == "tfjs" and result["parity"]["atol"] == 1e-4
    q = result["quantization"]
    assert q["mode"] == mode and q["path"] == f"tfjs-{mode}" and q["method"] == "tfjs-converter"
    assert q["bytes"] < q["float_bytes"] and q["latency_ms"] > 0 and q["float_latency_ms"] > 0
    got = shared_runner().run(out / q["path"], {"image": rows})["logits"]
    want = np.asarray(keras_model(rows))
    figures = q["outputs"]["serving_default/logits"]
    assert figures["sqnr_db"] == pytest.approx(_sqnr(got, want), abs=0.5)
    assert figures["top1"] == pytest.approx(float(np.mean(got.argmax(-1) == want.argmax(-1))))
    assert q["gate"]["passed"] and q["gate"]["min_sqnr_db"] == ConvertOptions().sqnr_floor(mode)


def test_library_export_takes_the_gate(tmp_path: Path) -> None:
    """`jaxport.export(..., quantize=..., min_sqnr=...)`: a plain JAX function, gated."""
    import jax.numpy as jnp

    import jaxport

    rng = np.random.default_rng(3)
    params = {"w": rng.standard_normal((16, 32)).astype("float32"),
              "v": rng.standard_normal((32, 5)).astype("float32")}

    def fn(p, x):
        return jnp.tanh(x @ p["w"]) @ p["v"]

    def export(out: str, **gate) -> dict:
        return jaxport.export(fn, params, inputs={"x": "f32[b,16]"}, out_dir=tmp_path / out,
                              targets=["tflite"], quantize="int8-weight-only", **gate)

    ok = export("ok", min_top1=0.0)["targets"]["tflite"]
    assert ok["status"] == "ok", ok["error"]
    reached = ok["quantization"]["outputs"]["serving_default/output_0"]["sqnr_db"]
    assert reached > ConvertOptions().sqnr_floor("int8-weight-only")
    failed = export("failed", min_sqnr=min(reached + 5, 200))["targets"]["tflite"]
    assert failed["status"] == "failed" and failed["error"]["stage"] == "quantize"
    assert "serving_default/output_0: SQNR" in failed["error"]["message"]
