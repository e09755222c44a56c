"""`jaxport inspect`: the archive's functions, models and primitives, and a per-target verdict
that the real lowering then confirms (a keras_hub backbone and the FFT of a mel spectrogram
lower)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from jaxport.archive import extract_archive
from jaxport.cli import main
from jaxport.compose import load_program
from jaxport.lowering import lower_program
from tests import zoo


def _inspect_json(capsys, *argv: str) -> tuple[int, dict]:
    code = main(["inspect", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def _program(path: Path, tmp_path: Path):
    return load_program(extract_archive(path, tmp_path / "src"), trusted=True)


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> tuple[Path, object]:
    model = zoo.bert_backbone()
    return zoo.save(model, tmp_path_factory.mktemp("bert") / "bert.keras"), model


@pytest.fixture(scope="module")
def mel(tmp_path_factory) -> Path:
    return zoo.save(zoo.mel_classifier(), tmp_path_factory.mktemp("mel") / "mel.keras")


def test_keras_hub_backbone(bert, capsys, tmp_path) -> None:
    path, model = bert
    code, report = _inspect_json(capsys, str(path))
    assert code == 0
    variables = [np.asarray(v) for v in model.trainable_variables + model.non_trainable_variables]
    assert report["models"]["model"] == {"parameters": sum(v.size for v in variables),
                                         "bytes": sum(v.nbytes for v in variables),
                                         "variables": len(variables)}
    assert report["models"]["model"]["parameters"] >= model.count_params()
    fn = report["functions"]["serving_default"]
    assert fn["inputs"]["token_ids"] == {"dtype": "int32", "shape": ["b", "d1"]}
    assert fn["outputs"]["sequence_output"]["shape"] == ["b", "d1", 8]
    assert fn["constraints"] == ["d1 <= 16"]
    assert fn["primitives"]["dot_general"]["rule"] == "dot"
    assert fn["primitives"]["dot_general"]["count"] >= 6  # q, k, v, output, two FFN layers
    assert {t: v["message"] for t, v in report["verdict"].items()} == {
        "savedmodel": "will build (orbax: the XLA program as is)",
        "tflite": "lowered path (plain TF ops)", "tfjs": "will lower",
        "onnx": "will convert (jax2onnx; a refused form shows only when converting)"}
    lower_program(_program(path, tmp_path))  # the verdict holds: it lowers

    main(["inspect", str(path)])
    text = capsys.readouterr().out
    assert "token_ids: int32[b,d1]" in text and "constraint d1 <= 16" in text
    assert "tfjs:       will lower" in text


def test_spectrogram_front_end_lowers(mel, capsys, tmp_path) -> None:
    """The FFT inside a MelSpectrogram (`fft`, `real`, `imag`) has rules: every target lowers."""
    code, report = _inspect_json(capsys, str(mel), "--function", "serving_default")
    assert code == 0
    prims = report["functions"]["serving_default"]["primitives"]
    assert {p: prims[p]["rule"] for p in ("fft", "real", "imag")} == {"fft": "fft", "real": "fft", "imag": "fft"}
    assert not [p for p, e in prims.items() if e["rule"] is None]
    assert report["verdict"]["tfjs"]["message"] == "will lower"
    assert report["verdict"]["tflite"]["path"] == "lowered"
    lower_program(_program(mel, tmp_path))  # the verdict holds: it lowers


def test_unknown_function_is_exit_2(mel, capsys) -> None:
    assert main(["inspect", str(mel), "--function", "nope"]) == 2
    err = capsys.readouterr().err
    assert "error: no function 'nope'" in err and "hint: functions: serving_default" in err
