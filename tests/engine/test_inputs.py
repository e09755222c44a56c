"""Verification inputs (jaxport.verify.inputs) and samples.npz (jaxport.samples): ranges read off
real models, prefix masks, stated ranges, distinct sample rows, calibration on every row, and
refusals of keys and arrays that fit nothing."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from jaxport import samples as jsamples
from jaxport.archive import extract_archive
from jaxport.compose import load_function_program, load_program
from jaxport.errors import ManifestError
from jaxport.samples import Samples, resolve
from jaxport.verify.inputs import calibration_inputs, feed, make_inputs
from tests import zoo


def _program(path: Path, tmp: Path):
    return load_program(extract_archive(path, tmp / "x"), trusted=False)


@pytest.fixture(scope="module")
def bert_program(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bert")
    return _program(zoo.save(zoo.bert_backbone(), tmp / "bert.keras"), tmp)


def test_pixel_range_behind_rescaling(tmp_path: Path) -> None:
    x = keras.Input((8, 8, 3), name="image")
    h = keras.layers.Rescaling(1 / 255.0)(x)
    model = keras.Model(x, keras.layers.Conv2D(2, 3)(h))
    fn = _program(zoo.save(model, tmp_path / "m.keras"), tmp_path).functions["serving_default"]
    assert fn.ranges["image"].low == 0 and fn.ranges["image"].high == 255
    inputs = make_inputs(fn, 3, 1, Samples())
    assert inputs["image"].min() >= 0 and inputs["image"].max() <= 255
    assert inputs["image"].max() > 200  # pixel range, not N(0, 1)


def test_ids_follow_the_vocabulary_and_masks_are_prefixes(bert_program) -> None:
    fn = bert_program.functions["serving_default"]
    assert [s.name for s in fn.inputs] == ["padding_mask", "segment_ids", "token_ids"]
    big = make_inputs(fn, 64, 0, Samples())
    tokens, segments, mask = big["token_ids"], big["segment_ids"], big["padding_mask"]
    assert tokens.min() >= 0 and tokens.max() == 49  # vocabulary_size=50, top id reached
    assert set(np.unique(segments)) == {0, 1}
    assert mask[:, 0].all()  # every row keeps its first token
    assert (np.diff(mask.astype(int), axis=1) <= 0).all()  # 1s then 0s
    assert len({int(r.sum()) for r in mask}) > 1  # lengths vary
    described = feed(fn, Samples()).to_json()
    assert described["source"] == "generated"
    assert described["ranges"]["token_ids"]["high"] == 49
    assert described["ranges"]["padding_mask"]["kind"] == "mask"


def test_stated_range_wins_and_is_checked() -> None:
    program = load_function_program(lambda p, x, i: {"y": x * 2 + i}, {},
                                    {"x": "f32[b,3]", "i": "i32[b,3]"},
                                    ranges={"x": (10, 11), "i": (100, 200)})
    fn = program.functions["serving_default"]
    inputs = make_inputs(fn, 3, 0, Samples())
    assert 10 <= inputs["x"].min() and inputs["x"].max() <= 11
    assert 100 <= inputs["i"].min() and inputs["i"].max() <= 200
    with pytest.raises(ManifestError, match="integer bounds"):
        load_function_program(lambda p, i: {"y": i}, {}, {"i": "i32[b]"}, ranges={"i": (0.5, 2)})
    with pytest.raises(ManifestError, match="unknown input"):
        load_function_program(lambda p, i: {"y": i}, {}, {"i": "i32[b]"}, ranges={"j": (0, 2)})


def test_manifest_range(tmp_path: Path) -> None:
    manifest = zoo.SET_MANIFEST.replace('inputs  = { images = "f32[b,4,16,16,3]" }',
                                        'inputs  = { images = { spec = "f32[b,4,16,16,3]", range = [-3, -2] } }')
    archive = zoo.make_zip(tmp_path / "set.zip", {
        "jaxport.toml": manifest.encode(),
        "embed.keras": zoo.save(zoo.small_cnn(), tmp_path / "embed.keras"),
        "head.keras": zoo.save(zoo.dense_head(), tmp_path / "head.keras")})
    fn = _program(archive, tmp_path).functions["serving_default"]
    images = make_inputs(fn, 1, 0, Samples())["images"]
    assert images.min() >= -3 and images.max() <= -2
    bad = manifest.replace("range = [-3, -2]", "range = [2, 1]")
    zoo.make_zip(tmp_path / "bad.zip", {"jaxport.toml": bad.encode(),
                                        "embed.keras": tmp_path / "embed.keras",
                                        "head.keras": tmp_path / "head.keras"})
    with pytest.raises(ManifestError, match="low <= high"):
        _program(tmp_path / "bad.zip", tmp_path / "b")


def _mlp_program():
    w = np.arange(6, dtype=np.float32).reshape(3, 2)
    return load_function_program(lambda p, x: {"y": x @ p["w"]}, {"w": w}, {"x": "f32[b,3]"})


def test_sample_rows_are_used_distinctly() -> None:
    program = _mlp_program()
    fn = program.functions["serving_default"]
    rows = np.arange(12, dtype=np.float32).reshape(4, 3)
    samples = resolve({"x": rows}, program)
    first = make_inputs(fn, 1, 0, samples)["x"]
    second = make_inputs(fn, 3, 1, samples)["x"]
    assert len({r.tobytes() for r in second}) == 3  # three different rows
    np.testing.assert_array_equal(first, rows[:1])
    np.testing.assert_array_equal(second, rows[[3, 0, 1]])  # goes on where batch 1 stopped
    assert feed(fn, samples).warnings == []
    one = resolve({"x": rows[:1]}, program)
    assert "1 row(s)" in feed(fn, one).warnings[0]


def test_calibration_uses_every_row() -> None:
    program = _mlp_program()
    fn = program.functions["serving_default"]
    rows = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    calib = calibration_inputs(fn, resolve({"x": rows}, program), seed=0)
    assert len(calib) == 5
    np.testing.assert_array_equal(np.concatenate([c["x"] for c in calib]), rows)
    assert len(calibration_inputs(fn, Samples(), seed=0)) == 8


def test_unknown_or_misfit_sample_keys_are_refused() -> None:
    program = _mlp_program()
    with pytest.raises(ManifestError, match="'z' names no input or output"):
        resolve({"z": np.zeros((1, 3), np.float32)}, program)
    with pytest.raises(ManifestError, match="is empty"):
        resolve({"x": np.zeros((0, 3), np.float32)}, program)
    with pytest.raises(ManifestError, match="dtype <U"):
        resolve({"x": np.array([["a", "b", "c"]])}, program)
    with pytest.raises(ManifestError, match="shape"):
        resolve({"x": np.zeros((2, 4), np.float32)}, program)
    with pytest.raises(ManifestError, match="1 row"):
        resolve({"x": np.zeros((2, 3), np.float32), "expected/y": np.zeros((1, 2), np.float32)},
                program)
    with pytest.raises(ManifestError, match="names no input or output"):
        resolve({"expected/nope": np.zeros((1, 2), np.float32)}, program)


def test_save_round_trips_through_resolve(tmp_path: Path) -> None:
    program = _mlp_program()
    x = np.ones((2, 3), np.float32)
    path = jsamples.save(tmp_path / "samples.npz", inputs={"x": x}, expected={"y": x @ np.ones((3, 2))},
                         function="serving_default")
    resolved = resolve(jsamples.read(path), program)
    assert set(resolved.inputs["serving_default"]) == {"x"}
    assert resolved.expected["serving_default"]["y"].shape == (2, 2)
