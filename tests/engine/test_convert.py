"""End to end: real models and manifest composites → SavedModel, TFLite and TF.js, each run in
its runtime (TF, LiteRT, TF.js under Node) at batch 1 and 3; TFLite from the lowered graph."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from jaxport.options import ConvertOptions
from jaxport.pipeline import convert_archive
from tests import zoo

TARGETS = ["savedmodel", "tflite", "tfjs"]


def _assert_ok(report: dict, out: Path, targets=TARGETS) -> None:
    for target in targets:
        result = report["targets"][target]
        assert result["status"] == "ok", (target, result["error"])
        assert result["parity"]["passed"] and result["parity"]["batch_sizes"] == [1, 3]
        assert (out / result["path"]).exists() and result["bytes"] > 0
    if "tflite" in targets:
        assert report["targets"]["tflite"]["source"] == "lowered", report["targets"]["tflite"].get("source_reason")
    _assert_profiled(report, targets)
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report))


def _assert_profiled(report: dict, targets) -> None:
    """Every stage of an archive conversion is in `timings`, listed from its start: the loading
    stages first, then the builds in target order, each target's verify after its build (the
    reference and the verifications run beside the builds), and the wall time beside them."""
    timings = report["timings"]
    stages = [s for s in timings if s not in ("lowering", "orbax")]
    assert stages[:5] == ["extract", "import", "load", "compose", "reference"]
    expected = set(stages[:5])
    for t in targets:
        expected |= {f"{t}.build", f"{t}.verify"}
        litertjs = report["targets"][t].get("runtimes", {}).get("litertjs", {})
        if litertjs and litertjs["status"] != "skipped":  # the LiteRT.js check, inside tflite.verify
            expected.add("tflite.litertjs")
            assert stages.index("tflite.verify") < stages.index("tflite.litertjs")
        assert stages.index(f"{t}.build") < stages.index(f"{t}.verify")
    assert set(stages) == expected and len(stages) == len(expected)
    assert [s for s in stages if s.endswith(".build")] == [f"{t}.build" for t in targets]
    assert [s for s in stages if s.endswith(".verify")] == [f"{t}.verify" for t in targets]
    assert report["seconds"] >= max(timings.values())
    assert ("lowering" in timings) == bool({"tflite", "tfjs"} & set(targets))
    assert all(seconds >= 0 for seconds in timings.values())
    for t in targets:
        result = report["targets"][t]
        assert (result["seconds"], result["verify_seconds"]) == (timings[f"{t}.build"],
                                                                 timings[f"{t}.verify"])


def _convert(archive: Path, out: Path, **options) -> dict:
    return convert_archive(archive, out, ConvertOptions(targets=TARGETS, **options))


MODELS = {
    "mobilenet_v2": zoo.mobilenet_v2,
    "transformer": lambda: zoo.transformer_block(seq=None),
    "lstm_gru": zoo.lstm_model,
    "multi_io": zoo.multi_io_model,
    "bert_backbone": zoo.bert_backbone,
}


@pytest.mark.parametrize("name", list(MODELS))
def test_bare_keras_model(name: str, tmp_path: Path) -> None:
    path = zoo.save(MODELS[name](), tmp_path / f"{name}.keras")
    report = _convert(path, tmp_path / "out")
    _assert_ok(report, tmp_path / "out")
    assert report["processes"] == 1  # JAX has run in this process: it converts without a fork
    fn = report["functions"]["serving_default"]
    first = next(iter(fn["inputs"].values()))
    assert first["shape"][0] == "b"


def test_bert_keeps_batch_and_sequence_symbols(tmp_path: Path) -> None:
    path = zoo.save(zoo.bert_backbone(), tmp_path / "bert.keras")
    from jaxport.archive import extract_archive
    from jaxport.compose import load_program

    program = load_program(extract_archive(path, tmp_path / "x"), trusted=False)
    fn = program.functions["serving_default"]
    assert {s.name: s.shape for s in fn.inputs}["token_ids"] == ("b", "d1")
    assert {s.name: s.shape for s in fn.output_specs}["sequence_output"] == ("b", "d1", 8)


def test_vmapped_set_composite_with_samples(set_archive: Path, tmp_path: Path) -> None:
    report = _convert(set_archive, tmp_path)
    _assert_ok(report, tmp_path)
    assert report["functions"]["serving_default"]["outputs"]["score"]["shape"] == ["b", 4]
    import tensorflow as tf

    loaded = tf.saved_model.load(str(tmp_path / "savedmodel"))
    # Weights are variables, not constants baked into the graph.
    assert len(loaded.signatures["serving_default"].variables) > 0


def test_two_function_tar_archive(two_tower_archive: Path, tmp_path: Path) -> None:
    report = _convert(two_tower_archive, tmp_path)
    _assert_ok(report, tmp_path)
    assert set(report["functions"]) == {"embed_image", "embed_text"}
    from jaxport.verify.runtimes import TfliteRunner

    sigs = TfliteRunner(tmp_path / "model.tflite").signatures()
    assert set(sigs) == {"embed_image", "embed_text"}
    assert sorted(sigs["embed_text"]["outputs"]) == ["embedding", "logits"]


def test_nested_vmap_in_a_folder(nested_archive: Path, tmp_path: Path) -> None:
    report = _convert(nested_archive, tmp_path)
    _assert_ok(report, tmp_path)
    assert report["functions"]["serving_default"]["inputs"]["grid"]["shape"] == ["b", "n", 2, 16, 16, 3]


@pytest.mark.parametrize("quantize", ["float16", "int8"])
def test_tflite_quantization_of_a_composite(quantize: str, set_archive: Path, tmp_path: Path) -> None:
    """The vmapped composite: the float model keeps its float parity, the quantized one beside
    it is measured (static int8 calibrated on the archive's 3 samples.npz rows)."""
    report = convert_archive(set_archive, tmp_path, ConvertOptions(targets=["tflite"],
                                                                   quantize=quantize))
    result = report["targets"]["tflite"]
    assert result["status"] == "ok", result["error"]
    assert result["path"] == "model.tflite" and result["parity"]["atol"] == 1e-4
    q = result["quantization"]
    assert q["mode"] == quantize and q["method"] == "ai-edge-quantizer"
    assert (tmp_path / q["path"]).is_file() and q["path"] == f"model.{quantize}.tflite"
    assert q["gate"]["passed"] and q["outputs"]["serving_default/score"]["sqnr_db"] > 15
    if quantize == "int8":
        assert q["calibration"] == {"serving_default": {"source": "samples.npz", "rows": 3}}


def test_one_failing_target_does_not_stop_the_others(tmp_path: Path) -> None:
    path = zoo.save(zoo.small_cnn(), tmp_path / "m.keras")
    report = convert_archive(path, tmp_path / "out", ConvertOptions(
        targets=["savedmodel", "tflite"], quantize="int8", min_sqnr=200))
    assert report["targets"]["savedmodel"]["status"] == "ok"
    tfl = report["targets"]["tflite"]
    assert tfl["status"] == "failed" and tfl["error"]["stage"] == "quantize"
    assert "below the accuracy gate" in tfl["error"]["message"]


@pytest.mark.slow  # ~25 s of CPU: three targets and four runtimes
def test_audio_front_ends_match_keras_in_every_runtime(tmp_path: Path) -> None:
    """MelSpectrogram and STFTSpectrogram convert to every target from the lowered graph, and
    each artifact, run again here in its runtime, matches the Keras model called directly."""
    from jaxport.verify.runtimes import SavedModelRunner, TfliteRunner
    from jaxport.verify.tfjs import shared_runner

    model = zoo.audio_front_ends()
    report = _convert(zoo.save(model, tmp_path / "audio.keras"), tmp_path / "out")
    _assert_ok(report, tmp_path / "out")
    out = tmp_path / "out"
    audio = np.random.default_rng(1).uniform(-1, 1, (2, 1024)).astype("float32")
    want = {k: np.asarray(v) for k, v in model(audio).items()}
    (name,) = report["functions"]["serving_default"]["inputs"]
    runs = {"savedmodel": SavedModelRunner(out / "savedmodel").run("serving_default", {name: audio}),
            "tflite": TfliteRunner(out / "model.tflite").run("serving_default", {name: audio}),
            "tfjs": shared_runner().run(out / "tfjs", {name: audio})}
    for target, got in runs.items():
        for key, w in want.items():
            scale = float(np.abs(w).max())
            np.testing.assert_allclose(got[key], w, atol=1e-3 * scale, err_msg=f"{target}/{key}")


def test_savedmodel_falls_back_to_the_lowered_graph_when_tf_cannot_run_orbax(tmp_path: Path) -> None:
    """top_k's composite makes the orbax SavedModel unrunnable in TF: the target ships the
    lowered plain-TF SavedModel, says so, and it matches the Keras model called directly."""
    from jaxport.verify.runtimes import SavedModelRunner

    model = zoo.top_k_head()
    report = convert_archive(zoo.save(model, tmp_path / "top_k.keras"), tmp_path / "out",
                             ConvertOptions(targets=["savedmodel"]))
    result = report["targets"]["savedmodel"]
    assert result["status"] == "ok" and result["parity"]["passed"], result["error"]
    assert result["source"] == "lowered" and "orbax SavedModel: TensorFlow failed" in result["source_reason"]
    assert any(w.startswith("savedmodel: TensorFlow cannot run the orbax SavedModel") for w in report["warnings"])
    x = np.random.default_rng(2).standard_normal((3, 8)).astype("float32")
    want = {k: np.asarray(v) for k, v in model(x).items()}
    (name,) = report["functions"]["serving_default"]["inputs"]
    got = SavedModelRunner(tmp_path / "out" / result["path"]).run("serving_default", {name: x})
    np.testing.assert_allclose(got["values"], want["values"], atol=1e-5)
    np.testing.assert_array_equal(got["indices"], want["indices"])
