"""The CLI and the library entry point, in-process (TensorFlow is imported once per session)."""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import jaxport
from jaxport.cli import main
from tests import zoo

ROOT = Path(__file__).resolve().parents[2]


def test_seed_prod_function_via_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["convert", "--function", str(ROOT / "examples/prod.py") + ":prod",
                 "--params", str(ROOT / "examples/prod_params.npz"), "--input", "xs=f32[b,2]",
                 "-o", str(tmp_path), "--targets", "savedmodel,tflite"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "savedmodel  ok" in out and "tflite      ok" in out
    assert "tflite: building tflite" in err  # progress on stderr
    profile = next(line for line in out.splitlines() if line.startswith("time: "))
    for stage in ("compose", "reference", "savedmodel.build", "savedmodel.verify", "lowering",
                  "tflite.build", "tflite.verify"):
        assert f"{stage} " in profile, profile
    assert " s in all; stages sum to " in profile, profile
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["functions"]["serving_default"]["outputs"]["output_0"]["shape"] == ["b"]


def test_library_export_with_pytree_params(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    params = {"enc": [rng.standard_normal((3, 5)).astype("f4")], "bias": np.float32(0.5)}

    def fn(p, xs, mask):
        h = jnp.tanh(xs @ p["enc"][0] + p["bias"])
        return {"h": h, "masked_sum": jnp.sum(h * mask[..., None], axis=1)}

    report = jaxport.export(fn, params, inputs={"xs": "f32[b,s,3]", "mask": "f32[b,s]"},
                            targets=["savedmodel", "tflite"], out_dir=tmp_path)
    for target in ("savedmodel", "tflite"):
        assert report["targets"][target]["status"] == "ok", report["targets"][target]["error"]
    assert report["functions"]["serving_default"]["outputs"]["h"]["shape"] == ["b", "s", 5]


def test_failed_target_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """int8 cannot reach 200 dB SQNR: the gate fails the target at quantize, exit 1."""
    model = zoo.save(zoo.small_cnn(), tmp_path / "cnn.keras")
    code = main(["convert", str(model), "-o", str(tmp_path / "out"), "--targets",
                 "savedmodel,tflite", "--quantize", "int8", "--min-sqnr", "200"])
    out, _ = capsys.readouterr()
    assert code == 1, out
    assert "savedmodel  ok" in out
    assert "tflite      FAILED  [quantize] the int8 artifact model.int8.tflite falls below" in out
    assert "is below the threshold 200 dB" in out


def test_gate_out_of_range_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = zoo.save(zoo.small_cnn(), tmp_path / "cnn.keras")
    assert main(["convert", str(model), "-o", str(tmp_path), "--min-top1", "1.5"]) == 2
    assert "min_top1 must be a number from 0 to 1" in capsys.readouterr().err


def test_missing_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["convert", str(tmp_path / "nope.keras"), "-o", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err


def test_safe_mode_flag_refuses_function(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["convert", "--safe", "--function", "examples/prod.py:prod", "--input",
                 "xs=f32[b,2]", "-o", str(tmp_path)])
    assert code == 2 and "trusted mode is off" in capsys.readouterr().err


def test_library_tfjs_with_mixed_dtype_outputs(tmp_path: Path) -> None:
    """Float, int and bool outputs of one signature come back from TF.js with their dtypes."""

    def fn(p, x):
        return {"f": x * p["w"], "i": jnp.argmax(x, -1).astype(jnp.int32), "positive": x > 0,
                "total": x.sum(-1), "count": (x > 0).sum(-1).astype(jnp.int32),
                "all": jnp.all(x > -1, -1)}

    report = jaxport.export(fn, {"w": np.float32(2.0)}, inputs={"x": "f32[b,5]"},
                            targets=["tfjs"], out_dir=tmp_path)
    assert report["targets"]["tfjs"]["status"] == "ok", report["targets"]["tfjs"]["error"]
    assert report["functions"]["serving_default"]["outputs"]["positive"]["dtype"] == "bool"


def test_library_tfjs_outputs_that_are_params_or_constants(tmp_path: Path) -> None:
    """A param returned unchanged, constants and the input passed through are tensors the TF.js
    model owns (or the caller does): verifying at several batch sizes reruns the model."""
    w = np.arange(6, dtype=np.float32).reshape(2, 3)

    def fn(p, x):
        return {"w": p["w"], "y": x @ p["w"], "ones": jnp.ones((4,)),
                "iota": jnp.arange(5, dtype=jnp.int32), "x": x}

    report = jaxport.export(fn, {"w": w}, inputs={"x": "f32[b,2]"}, targets=["tfjs"], out_dir=tmp_path)
    assert report["targets"]["tfjs"]["status"] == "ok", report["targets"]["tfjs"]["error"]
    from jaxport.verify.tfjs import shared_runner

    x = np.array([[1.0, -2.0], [0.5, 3.0]], np.float32)
    for _ in range(2):
        got = shared_runner().run(tmp_path / "tfjs", {"x": x})
        np.testing.assert_array_equal(got["w"], w)
        np.testing.assert_allclose(got["y"], x @ w, rtol=1e-6)
        np.testing.assert_array_equal(got["ones"], np.ones(4, np.float32))
        np.testing.assert_array_equal(got["iota"], np.arange(5, dtype=np.int32))
        np.testing.assert_array_equal(got["x"], x)


def test_library_loop_that_never_ends_on_the_inputs_fails_by_name(tmp_path: Path) -> None:
    """A while_loop closing over its input never terminates for negative inputs: the JAX
    reference run is bounded, so the export fails by name within seconds instead of hanging;
    on samples it terminates on, it exports."""
    import time

    import jax

    from jaxport.errors import ReferenceFailed

    def fn(p, x):
        captured = x * 10
        return jax.lax.while_loop(lambda v: v < 30, lambda v: v + captured, x)

    start = time.monotonic()
    with pytest.raises(ReferenceFailed, match="does not finish in JAX within 3 s"):
        jaxport.export(fn, None, inputs={"x": "f32[]"}, ranges={"x": (-2.0, -1.0)}, targets=["tfjs"],
                       out_dir=tmp_path / "never", reference_timeout=3)
    assert time.monotonic() - start < 60
    report = jaxport.export(fn, None, inputs={"x": "f32[]"}, samples={"x": np.float32(1.0)},
                            targets=["tfjs"], out_dir=tmp_path / "ends")
    assert report["targets"]["tfjs"]["status"] == "ok", report["targets"]["tfjs"]["error"]


def test_convert_under_a_file_size_cap_names_the_limit(tmp_path: Path) -> None:
    """A file over --max-file-mb fails its target with the limit named, not an internal error.
    In a child process: the limit is the process's own and would outlive the test here."""
    import subprocess
    import sys

    import keras

    x = keras.Input((512,), name="x")
    path = tmp_path / "wide.keras"
    keras.Model(x, keras.layers.Dense(1024)(x)).save(path)  # 2 MB of weights
    result = subprocess.run([sys.executable, "-m", "jaxport.cli", "convert", str(path), "-o",
                             str(tmp_path / "out"), "--targets", "savedmodel", "--max-file-mb", "1"],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 1, result.stderr[-2000:]
    error = json.loads((tmp_path / "out" / "report.json").read_text())["targets"]["savedmodel"]["error"]
    assert error["code"] == "resource_limit_exceeded" and "--max-file-mb" in error["hint"], error


def test_service_command_without_the_service_is_one_line(monkeypatch, capsys) -> None:
    """An engine-only install (no `jaxport.commands` entry point): `jaxport serve` says why."""
    import jaxport.cli

    monkeypatch.setattr(jaxport.cli.metadata, "entry_points", lambda group: [])
    assert main(["serve", "--port", "8000"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "error: no command 'serve' (no service commands are installed)"
    assert err[1].startswith("hint: `up`, `serve`, `worker`, `submit`") and len(err) == 2
