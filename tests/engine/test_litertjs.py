"""The TFLite model checked in LiteRT.js: real headless Chromium (/usr/bin/chromium), real
LiteRT.js 2.5.3 (WASM, 1 thread) from js/node_modules, no mocks.

A CNN (keras.applications MobileNetV2), a keras_hub transformer with a symbolic sequence
length and the vmapped composite are converted once each; their LiteRT.js parity is in
report.json and is checked again here against the Keras models called directly. Then: a
perturbed .tflite fails LiteRT.js parity and fails the target; a model LiteRT.js cannot load
is a warning; a missing Chromium is a warning with the install hint; the option turns the
check off; and the browser starts under the conversion's address-space limit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import jax.numpy as jnp
import keras
import numpy as np
import pytest
from jax import lax

import jaxport
from jaxport.cli import main
from jaxport.options import ConvertOptions, OptionsError
from jaxport.pipeline import convert_archive
from jaxport.targets.tflite import LitertjsRunner
from jaxport.verify.runtimes import TfliteRunner
from tests import zoo

REPO = Path(__file__).resolve().parents[2]


def _close(got: np.ndarray, want: np.ndarray, atol: float = 1e-4, rtol: float = 1e-3) -> None:
    """The scale rule of docs/verification.md, against a reference computed here."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= atol + rtol * np.abs(want).max()


def _tflite(report: dict) -> dict:
    return report["targets"]["tflite"]


class Converted(NamedTuple):
    model: Any  # what computes the reference: a Keras model, or the composite in numpy
    source: Path  # the .keras file or archive converted
    out: Path  # the conversion's out dir
    report: dict


def _convert(model: Any, source: Path, out: Path) -> Converted:
    options = ConvertOptions(targets=["tflite"], litertjs=True)
    return Converted(model, source, out, convert_archive(source, out, options))


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LitertjsRunner]:
    """One browser for this module's own (independent) runs."""
    with LitertjsRunner(tmp_path_factory.mktemp("litertjs")) as own:
        yield own


@pytest.fixture(scope="module")
def cnn(tmp_path_factory: pytest.TempPathFactory) -> Converted:
    tmp = tmp_path_factory.mktemp("cnn")
    model = zoo.mobilenet_v2(32)
    return _convert(model, zoo.save(model, tmp / "mobilenet.keras"), tmp / "out")


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> Converted:
    tmp = tmp_path_factory.mktemp("bert")
    model = zoo.bert_backbone()
    return _convert(model, zoo.save(model, tmp / "bert.keras"), tmp / "out")


@pytest.fixture(scope="module")
def composite(set_archive: Path, models_dir: Path,
              tmp_path_factory: pytest.TempPathFactory) -> Converted:
    """The vmapped set composite, and the same function in numpy over the Keras models."""
    embed = keras.saving.load_model(models_dir / "embed.keras")
    head = keras.saving.load_model(models_dir / "head.keras")

    def reference(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        images = inputs["images"]
        emb = np.stack([np.asarray(embed(images[:, i])) for i in range(images.shape[1])], 1)
        return {"score": np.asarray(head(emb.mean(1)))}

    return _convert(reference, set_archive, tmp_path_factory.mktemp("set") / "out")


def _input_name(model: object) -> str:
    """A one-input functional model's input name: its InputLayer's, which the saved model's
    input carries (Keras numbers them per process: input_layer_5)."""
    return model.layers[0].name


def _inputs(name: str, model: object, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Inputs none of the verification cases used (batch 2, sequence length 7)."""
    if name == "cnn":
        return {_input_name(model): rng.uniform(-1, 1, (batch, 32, 32, 3)).astype("float32")}
    if name == "bert":
        mask = (np.arange(7) < np.array([[7], [4]])[:batch]).astype("int32")
        return {"token_ids": rng.integers(0, 50, (batch, 7)).astype("int32"),
                "segment_ids": np.zeros((batch, 7), "int32"), "padding_mask": mask}
    return {"images": rng.standard_normal((batch, 4, 16, 16, 3)).astype("float32")}


def _keras_reference(name: str, model: object, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if name == "composite":
        return model(inputs)
    out = model(inputs if name == "bert" else inputs[_input_name(model)])
    return {k: np.asarray(v) for k, v in out.items()} if isinstance(out, dict) else {"_": np.asarray(out)}


@pytest.mark.parametrize("name", ["cnn", "bert", "composite"])
def test_litertjs_parity_beside_litert(name: str, request: pytest.FixtureRequest,
                                       runner: LitertjsRunner) -> None:
    model, _, out, report = request.getfixturevalue(name)
    result = _tflite(report)
    assert result["status"] == "ok", result["error"]
    litert, litertjs = result["runtimes"]["litert"], result["runtimes"]["litertjs"]
    assert litert["status"] == "ok" and litert["parity"] == result["parity"]
    assert litertjs["status"] == "ok", litertjs
    assert litertjs["parity"]["passed"] and litertjs["parity"]["batch_sizes"] == [1, 3]
    assert set(litertjs["parity"]["outputs"]) == set(result["parity"]["outputs"])
    assert litertjs["runtime"].startswith("LiteRT.js 2.5.3 (wasm, 1 thread) in Chromium ")
    # the browser started in the background as the conversion began; the check came after
    assert litertjs["browser_start_seconds"] > 0 and litertjs["seconds"] > 0
    assert "tflite.litertjs" in report["timings"]
    signature = report["functions"]["serving_default"]
    if name == "bert":  # the symbolic length survives into model.tflite
        assert signature["inputs"]["token_ids"]["shape"][1] not in (None, 8, 5)
        assert isinstance(signature["inputs"]["token_ids"]["shape"][1], str)

    # Independent of the engine's JAX path: new inputs, the Keras models called directly.
    inputs = _inputs(name, model, 2, np.random.default_rng(7))
    assert set(inputs) == set(signature["inputs"])
    want = _keras_reference(name, model, inputs)
    if "_" in want:
        want = {next(iter(signature["outputs"])): want.pop("_")}
    got = runner.run(out / "model.tflite", "serving_default", inputs,
                     {k: v.shape for k, v in want.items()})
    assert got.keys() == want.keys()
    for key in want:
        _close(got[key], want[key])


def _perturbed(src: Path, dst: Path) -> Path:
    """`src` with every float32 weight buffer scaled by 1.5: a real, wrong .tflite file."""
    from ai_edge_litert import schema_py_generated as schema

    data = bytearray(src.read_bytes())
    model = schema.Model.GetRootAs(data, 0)
    subgraph = model.Subgraphs(0)
    scaled = 0
    for i in range(subgraph.TensorsLength()):
        tensor = subgraph.Tensors(i)
        if tensor.Type() != schema.TensorType.FLOAT32 or tensor.Buffer() == 0:
            continue
        raw = model.Buffers(tensor.Buffer()).DataAsNumpy()
        if isinstance(raw, np.ndarray) and raw.size >= 32:
            weights = raw.view("<f4")  # a view into `data`
            weights *= np.float32(1.5)
            scaled += 1
    assert scaled > 3
    dst.write_bytes(bytes(data))
    return dst


def test_perturbed_tflite_fails_litertjs_parity_and_the_target(cnn: Converted, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    good = cnn.out / "model.tflite"
    bad = _perturbed(good, tmp_path / "perturbed.tflite")
    x = np.random.default_rng(3).uniform(-1, 1, (1, 32, 32, 3)).astype("float32")
    feed = {_input_name(cnn.model): x}
    ok, wrong = (TfliteRunner(p).run("serving_default", feed) for p in (good, bad))
    key = next(iter(ok))
    assert np.abs(ok[key] - wrong[key]).max() > 0.1 * np.abs(ok[key]).max()  # really perturbed

    # LiteRT checks the built file; LiteRT.js is handed the perturbed one.
    real_run = LitertjsRunner.run
    monkeypatch.setattr(LitertjsRunner, "run", lambda self, path, *a: real_run(self, bad, *a))
    result = _tflite(convert_archive(cnn.source, tmp_path / "out",
                                     ConvertOptions(targets=["tflite"], litertjs=True)))
    assert result["status"] == "failed"
    assert result["error"]["stage"] == "verify"
    assert result["error"]["message"].startswith("parity failed in LiteRT.js (LiteRT passed):")
    assert result["runtimes"]["litert"]["status"] == "ok" and result["parity"]["passed"]
    litertjs = result["runtimes"]["litertjs"]
    assert litertjs["status"] == "failed" and not litertjs["parity"]["passed"]
    assert litertjs["parity"]["max_rel_err"] > 0.1


def _max_pool_1d(params: dict, x: jnp.ndarray) -> dict:
    return {"v": lax.reduce_window(x * params["s"], -jnp.inf, lax.max, (1, 2), (1, 2), "VALID")}


def test_known_wrong_result_in_litertjs_fails_the_target(tmp_path: Path) -> None:
    """LiteRT.js 2.5.3 returns garbage for a max pool over a 2-D input (MAX_POOL_2D, then the
    RESHAPE back) while LiteRT is right: the target fails, naming LiteRT.js. If LiteRT.js
    fixes it, this test tells us to drop the note in docs/targets.md."""
    report = jaxport.export(_max_pool_1d, {"s": np.float32(1.0)}, inputs={"x": "f32[b,6]"},
                            out_dir=tmp_path / "out", targets=["tflite"], litertjs=True)
    result = _tflite(report)
    x = np.random.default_rng(0).standard_normal((1, 6)).astype("float32")
    want = x.reshape(1, 3, 2).max(-1)  # numpy, not the engine
    _close(TfliteRunner(tmp_path / "out" / "model.tflite").run("serving_default", {"x": x})["v"], want)
    assert result["runtimes"]["litert"]["status"] == "ok"
    assert result["runtimes"]["litertjs"]["status"] == "failed"
    assert result["status"] == "failed" and "LiteRT.js" in result["error"]["message"]


def _aliases(params: dict, x: jnp.ndarray) -> dict:
    twice = x * params["s"]
    return {"same": x, "twice": twice, "again": twice, "w": params["s"]}


def test_outputs_that_alias_an_input_or_each_other_run_in_litertjs(tmp_path: Path,
                                                                  runner: LitertjsRunner) -> None:
    """The converter makes an output that returns an input the input's own tensor, and merges
    equal outputs into one: LiteRT runs that, LiteRT.js read the first from an unwritten buffer
    (garbage, "parity failed in LiteRT.js") and dropped one name of the second ("cannot run").
    The artifact gets a copy per aliased output, so both runtimes pass."""
    from ai_edge_litert import schema_py_generated as schema

    s = np.float32(2)
    report = jaxport.export(_aliases, {"s": s}, inputs={"x": "f32[b,3]"},
                            out_dir=tmp_path / "out", targets=["tflite"], litertjs=True)
    result = _tflite(report)
    assert result["status"] == "ok", result.get("error")
    assert result["runtimes"]["litertjs"]["status"] == "ok", result["runtimes"]["litertjs"]
    assert set(result["runtimes"]["litertjs"]["parity"]["outputs"]) == {
        f"serving_default/{k}" for k in ("same", "twice", "again", "w")}
    path = tmp_path / "out" / "model.tflite"
    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    sig = model.SignatureDefs(0)
    tensors = [sig.Outputs(i).TensorIndex() for i in range(sig.OutputsLength())]
    assert len(set(tensors)) == len(tensors)
    assert not set(tensors) & set(model.Subgraphs(0).InputsAsNumpy().tolist())
    x = np.random.default_rng(1).standard_normal((2, 3)).astype("float32")
    got = runner.run(path, "serving_default", {"x": x},
                     {"same": (2, 3), "twice": (2, 3), "again": (2, 3), "w": ()})
    want = {"same": x, "twice": x * s, "again": x * s, "w": s}  # numpy, not the engine
    for k, v in want.items():
        _close(got[k], np.asarray(v))


def test_an_empty_constant_output_runs_in_litert(tmp_path: Path) -> None:
    """`jnp.arange(0)` becomes a constant with an empty buffer, which LiteRT refused ("Invalid
    tensor size": the right artifact failed); it gets a few padding bytes and runs. LiteRT.js
    has no empty tensors at all: a warning, not a failure."""
    report = jaxport.export(lambda p, x: {"none": jnp.arange(0, dtype=jnp.float32), "y": x * p["s"]},
                            {"s": np.float32(2)}, inputs={"x": "f32[b,3]"},
                            out_dir=tmp_path / "out", targets=["tflite"], litertjs=True)
    result = _tflite(report)
    assert result["status"] == "ok", result.get("error")
    assert result["runtimes"]["litertjs"]["status"] == "cannot_run"
    x = np.random.default_rng(2).standard_normal((2, 3)).astype("float32")
    got = TfliteRunner(tmp_path / "out" / "model.tflite").run("serving_default", {"x": x})
    assert got["none"].shape == (0,) and got["none"].dtype == np.float32
    _close(got["y"], x * 2)


def test_model_litertjs_cannot_load_is_a_warning(tmp_path: Path) -> None:
    """A bool output: LiteRT runs it, LiteRT.js 2.5 has no bool tensors and refuses the model."""
    report = jaxport.export(lambda p, x: {"positive": x > p["t"], "y": x * 2.0}, {"t": np.float32(0)},
                            inputs={"x": "f32[b,3]"}, out_dir=tmp_path / "out", targets=["tflite"],
                            litertjs=True)
    result = _tflite(report)
    assert result["status"] == "ok" and result["runtimes"]["litert"]["status"] == "ok"
    litertjs = result["runtimes"]["litertjs"]
    assert litertjs["status"] == "cannot_run" and litertjs["parity"] is None
    assert litertjs["code"] == "litertjs_cannot_run"
    assert "LiteRT.js could not load the model" in litertjs["error"] and "BOOL" in litertjs["error"]
    assert "INFO:" not in litertjs["error"]  # the page's log chatter is left out
    warning = [w for w in report["warnings"] if w.startswith("tflite: LiteRT.js cannot run")]
    assert len(warning) == 1 and "BOOL" in warning[0] and result["warnings"] == [warning[0][8:]]


def _double(params: dict, x: jnp.ndarray) -> dict:
    return {"y": x * params["s"]}


def test_missing_chromium_is_a_warning_with_the_install_hint(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "no-chromium"
    monkeypatch.setenv("JAXPORT_CHROMIUM", str(missing))
    report = jaxport.export(_double, {"s": np.float32(2)}, inputs={"x": "f32[b,3]"},
                            out_dir=tmp_path / "out", targets=["tflite"], litertjs=True)
    result = _tflite(report)
    assert result["status"] == "ok" and result["parity"]["passed"]
    litertjs = result["runtimes"]["litertjs"]
    assert litertjs["status"] == "unavailable" and str(missing) in litertjs["error"]
    assert litertjs["code"] == "litertjs_runtime_missing"
    assert "apt-get install chromium" in litertjs["hint"] and "JAXPORT_CHROMIUM" in litertjs["hint"]
    assert any(str(missing) in w and "apt-get install chromium" in w for w in report["warnings"])


def test_the_check_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ConvertOptions.from_json({"litertjs": False}).litertjs is False
    for raw, default in (("", True), ("1", True), ("off", False), ("0", False)):
        monkeypatch.setenv("JAXPORT_LITERTJS", raw)
        assert ConvertOptions().litertjs is default and ConvertOptions.from_json({}).litertjs is default
    assert ConvertOptions(litertjs=True).litertjs is True  # a job's own choice wins
    monkeypatch.setenv("JAXPORT_LITERTJS", "maybe")
    with pytest.raises(OptionsError, match="JAXPORT_LITERTJS must be 1 or 0"):
        ConvertOptions()
    monkeypatch.setenv("JAXPORT_LITERTJS", "1")
    with pytest.raises(OptionsError, match="litertjs must be true or false"):
        ConvertOptions.from_json({"litertjs": "no"})
    code = main(["convert", "--function", f"{REPO}/examples/prod.py:prod", "--params",
                 f"{REPO}/examples/prod_params.npz", "--input", "xs=f32[b,2]", "-o", str(tmp_path),
                 "--targets", "tflite", "--no-litertjs"])
    report = json.loads((tmp_path / "report.json").read_text())
    assert code == 0 and _tflite(report)["status"] == "ok"
    assert _tflite(report)["runtimes"]["litertjs"] == {"status": "skipped",
                                                      "reason": "turned off (litertjs: false)"}
    assert "tflite.litertjs" not in report["timings"]


def test_browser_starts_under_the_address_space_limit(tmp_path: Path) -> None:
    """The conversion child's RLIMIT_AS: Chromium fails under it, and starts with it lifted."""
    script = textwrap.dedent(f"""
        import contextlib, sys
        from jaxport.limits import apply_limits
        from jaxport.targets.tflite import LitertjsRunner, LitertjsUnavailable
        apply_limits(1024, None)
        if sys.argv[1] == "unlifted":
            LitertjsRunner.spawn_guard = lambda self: contextlib.nullcontext()
        try:
            with LitertjsRunner({str(tmp_path)!r}) as runner:
                print("started", runner.info["litertjs"])
        except LitertjsUnavailable as exc:
            print("unavailable", exc)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = {how: subprocess.run([sys.executable, "-c", script, how], capture_output=True, text=True,
                               env=env, timeout=300).stdout.strip().splitlines()[-1]
           for how in ("lifted", "unlifted")}
    assert out["lifted"] == "started 2.5.3"
    assert out["unlifted"].startswith("unavailable Chromium did not start for LiteRT.js")
