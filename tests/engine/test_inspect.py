"""`jaxport inspect`: the archive's functions, models and primitives, and a per-target verdict
that the real lowering then confirms (a keras_hub backbone lowers; the FFT of a mel
spectrogram does not, and the lowering names one of the primitives inspect named)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from jaxport.archive import extract_archive
from jaxport.cli import main
from jaxport.compose import load_program
from jaxport.errors import LoweringError
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


def test_unsupported_primitive_blocks_tfjs(mel, capsys, tmp_path) -> None:
    code, report = _inspect_json(capsys, str(mel), "--function", "serving_default")
    assert code == 1
    prims = report["functions"]["serving_default"]["primitives"]
    missing = {p for p, e in prims.items() if e["rule"] is None}
    assert missing == {"fft", "real", "imag"}
    tfjs, tflite = report["verdict"]["tfjs"], report["verdict"]["tflite"]
    assert not tfjs["ok"] and tfjs["blocking"]["primitive"] in missing
    assert re.fullmatch(r"mel_spectrogram(_\d+)?", tfjs["blocking"]["layer"])  # Keras's name counter
    assert tfjs["blocking"]["at"].endswith(".py:" + tfjs["blocking"]["at"].rsplit(":", 1)[1])
    assert tflite["ok"] and tflite["path"] == "orbax"
    with pytest.raises(LoweringError) as info:  # the real lowering agrees
        lower_program(_program(mel, tmp_path))
    assert str(info.value).split()[1] in missing

    main(["inspect", str(mel)])
    text = capsys.readouterr().out
    assert f"tfjs:       blocked: {tfjs['blocking']['primitive']} at keras/src/" in text
    assert re.search(r"\(in mel_spectrogram(_\d+)?\) has no lowering rule", text), text


def test_unknown_function_is_exit_2(mel, capsys) -> None:
    assert main(["inspect", str(mel), "--function", "nope"]) == 2
    err = capsys.readouterr().err
    assert "error: no function 'nope'" in err and "hint: functions: serving_default" in err
