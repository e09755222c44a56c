"""The ONNX target end to end: jax2onnx per function, every model run in onnxruntime at batch 1
and 3 against JAX; names, symbolic dims and weights in the file; layouts; refusals; and the
two jax2onnx outputs we repair (NHWC MaxPool, reshape with `dimensions`) checked in ORT."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest
from jax import lax
from onnx import numpy_helper

from jaxport.cli import main
from jaxport.errors import LoweringError
from jaxport.options import ConvertOptions, OptionsError
from jaxport.pipeline import convert_archive
from jaxport.targets.onnx import OnnxRunner, export_onnx
from tests import zoo
from tests.lowering.harness import program

MODELS = {
    "small_cnn": zoo.small_cnn,  # MaxPooling2D: the rewritten MaxPool
    "bert_backbone": zoo.bert_backbone,  # a sequence symbol with a learned constraint
    "transformer": lambda: zoo.transformer_block(seq=None),
}


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def _assert_ok(report: dict, out: Path) -> dict:
    result = report["targets"]["onnx"]
    assert result["status"] == "ok", result["error"]
    assert result["parity"]["passed"] and result["parity"]["batch_sizes"] == [1, 3]
    assert (out / result["path"]).exists() and result["bytes"] > 0
    assert result["opset"] == 23 and result["converter"].startswith("jax2onnx ")
    return result


def _assert_signature(model: onnx.ModelProto, signature: dict) -> None:
    """Graph inputs/outputs named, ordered and shaped as report.json's function."""
    assert [(v.name, _dims(v)) for v in model.graph.input] == [
        (k, s["shape"]) for k, s in signature["inputs"].items()]
    assert {v.name: _dims(v) for v in model.graph.output} == {
        k: s["shape"] for k, s in signature["outputs"].items()}


@pytest.mark.parametrize("name", list(MODELS))
def test_bare_keras_model(name: str, tmp_path: Path) -> None:
    keras_model = MODELS[name]()
    path = zoo.save(keras_model, tmp_path / f"{name}.keras")
    report = convert_archive(path, tmp_path / "out", ConvertOptions(targets=["onnx"]))
    result = _assert_ok(report, tmp_path / "out")
    assert result["path"] == "model.onnx"
    model = onnx.load(tmp_path / "out" / "model.onnx")
    signature = report["functions"]["serving_default"]
    _assert_signature(model, signature)
    assert any(isinstance(d, str) and d != "b" for s in signature["inputs"].values() for d in s["shape"]) \
        == (name != "small_cnn")  # the sequence models keep their length symbol
    # Every kernel is an initializer (possibly transposed), none a Constant node.
    inits = [numpy_helper.to_array(t) for t in model.graph.initializer]
    kernels = [np.asarray(w) for w in keras_model.weights if w.path.endswith("kernel") or
               w.path.endswith("embeddings")]
    assert kernels
    for kernel in kernels:
        assert any(t.size == kernel.size and np.array_equal(np.sort(t, axis=None), np.sort(kernel, axis=None))
                   for t in inits), kernel.shape
    assert not any(n.op_type == "Constant" and n.attribute[0].t.dims and
                   np.prod(n.attribute[0].t.dims) > 16 for n in model.graph.node)
    if name == "small_cnn":
        assert result["rewrites"] == {"maxpool_window_axes": 1}


def test_vmapped_and_nested_composites(set_archive: Path, nested_archive: Path, tmp_path: Path) -> None:
    """A CNN vmapped over axis 1 (reshape with `dimensions`, 3-D pooling) and a nested vmap."""
    for archive, name in ((set_archive, "set"), (nested_archive, "nested")):
        report = convert_archive(archive, tmp_path / name, ConvertOptions(targets=["onnx"]))
        _assert_ok(report, tmp_path / name)
        model = onnx.load(tmp_path / name / "model.onnx")
        _assert_signature(model, report["functions"]["serving_default"])


def test_two_function_archive_has_one_file_per_function(two_tower_archive: Path, tmp_path: Path) -> None:
    report = convert_archive(two_tower_archive, tmp_path, ConvertOptions(targets=["onnx"]))
    result = _assert_ok(report, tmp_path)
    assert result["path"] == "onnx"
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == ["embed_image.onnx", "embed_text.onnx"]
    for function, signature in report["functions"].items():
        _assert_signature(onnx.load(tmp_path / "onnx" / f"{function}.onnx"), signature)
    assert sorted(report["functions"]["embed_text"]["outputs"]) == ["embedding", "logits"]


def test_cli_builds_four_verified_targets_and_the_opset_option(tmp_path: Path, capsys) -> None:
    path = zoo.save(zoo.small_cnn(), tmp_path / "cnn.keras")
    out = tmp_path / "out"
    assert main(["convert", str(path), "-o", str(out), "--targets",
                 "savedmodel,tflite,tfjs,onnx", "--onnx-opset", "18"]) == 0
    report = json.loads((out / "report.json").read_text())
    for target in ("savedmodel", "tflite", "tfjs", "onnx"):
        assert report["targets"][target]["status"] == "ok", report["targets"][target]["error"]
    assert report["targets"]["onnx"]["opset"] == 18
    assert [o.version for o in onnx.load(out / "model.onnx").opset_import if o.domain == ""] == [18]
    assert "onnx        ok" in capsys.readouterr().out


def test_onnx_is_on_request_and_its_options_are_checked(tmp_path: Path) -> None:
    assert "onnx" not in ConvertOptions().targets
    for bad in (16, 99, "23", True):
        with pytest.raises(OptionsError, match="onnx_opset"):
            ConvertOptions(targets=["onnx"], onnx_opset=bad)
    with pytest.raises(OptionsError, match="onnx_opset"):
        ConvertOptions.from_json({"targets": "onnx", "onnx_opset": 12})
    path = zoo.save(zoo.dense_head(), tmp_path / "head.keras")
    assert main(["convert", str(path), "-o", str(tmp_path / "o"), "--targets", "onnx",
                 "--onnx-opset", "12"]) == 2


def _min_pool(p, x):
    y = jnp.tanh(x) * p["w"]
    return {"y": lax.reduce_window(y, jnp.inf, lax.min, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")}  # marker


def test_refusal_names_the_primitive_and_the_user_line(tmp_path: Path) -> None:
    """jax2onnx 0.17 has no plugin for reduce_window_min: a LoweringError, recorded per target."""
    import inspect

    lines, first = inspect.getsourcelines(_min_pool)
    line = first + next(i for i, text in enumerate(lines) if "# marker" in text)
    prog = program(_min_pool, {"x": "f32[b,4,4,3]"}, {"w": np.ones((3,), np.float32)})
    function = prog.functions["serving_default"]
    with pytest.raises(LoweringError) as info:
        export_onnx(function, prog.params, tmp_path / "m.onnx", opset=23)
    assert str(info.value).startswith(
        f"primitive reduce_window_min (window_dimensions=(1, 2, 2, 1), ")
    assert f"at {__file__}:{line} has no ONNX conversion in jax2onnx 0.17.1" in str(info.value)
    assert info.value.code == "lowering_unsupported" and "jax2onnx" in info.value.hint
    assert not (tmp_path / "m.onnx").exists()

    import jaxport

    report = jaxport.export(_min_pool, {"w": np.ones((3,), np.float32)}, inputs={"x": "f32[b,4,4,3]"},
                            targets=["savedmodel", "onnx"], out_dir=tmp_path / "out")
    assert report["targets"]["savedmodel"]["status"] == "ok"  # the other target goes on
    error = report["targets"]["onnx"]["error"]
    assert report["targets"]["onnx"]["status"] == "failed" and error["stage"] == "onnx"
    assert error["code"] == "lowering_unsupported" and "reduce_window_min" in error["message"]


W = np.random.default_rng(3).standard_normal((3, 3, 3, 4)).astype(np.float32)
_CONV = lambda x: lax.conv_general_dilated(x, W, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))  # noqa: E731
_POOL = lambda x: lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "SAME")  # noqa: E731
REPAIRED = {  # name: (fn(p, x), input spec); each is wrong or refused by ORT without our repair
    "maxpool_2d_same": (lambda p, x: {"y": _POOL(x)}, "f32[b,7,7,3]"),
    "maxpool_1d_keras": (lambda p, x: {"y": lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 1), (1, 2, 1), "VALID")},
                         "f32[b,8,3]"),  # rank 3: ORT runs it as is, left alone
    "maxpool_3d": (lambda p, x: {"y": lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 2, 1), (1, 2, 2, 2, 1),
                                                        "VALID")}, "f32[b,4,4,4,2]"),
    "maxpool_vmapped": (lambda p, x: {"y": jax.vmap(_POOL, in_axes=1, out_axes=1)(x)}, "f32[b,2,6,6,3]"),
    "conv_vmapped_axis1": (lambda p, x: {"y": jax.vmap(_CONV, in_axes=1, out_axes=1)(x)}, "f32[b,2,5,5,3]"),
    "conv_vmapped_nested": (lambda p, x: {"y": jax.vmap(jax.vmap(_CONV, in_axes=1), in_axes=1)(x)},
                            "f32[b,2,2,5,5,3]"),
}


@pytest.mark.parametrize("name", list(REPAIRED))
def test_repaired_jax2onnx_forms_match_jax_in_onnxruntime(name: str, tmp_path: Path) -> None:
    fn, spec = REPAIRED[name]
    prog = program(fn, {"x": spec})
    function = prog.functions["serving_default"]
    from jaxport.shapes import infer_outputs

    infer_outputs(prog)
    _, rewritten = export_onnx(function, prog.params, tmp_path / "m.onnx", opset=23)
    assert rewritten == (0 if name.startswith(("conv", "maxpool_1d")) else 1)
    runner = OnnxRunner(tmp_path / "m.onnx")
    for batch in (1, 3):
        shape = tuple(batch if d == "b" else int(d) for d in spec[4:-1].split(","))
        x = np.random.default_rng(batch).standard_normal(shape).astype(np.float32)
        want = np.asarray(fn(None, x)["y"])
        got = runner.run({"x": x})["y"]
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_derived_dims_are_labelled_as_in_report_json(tmp_path: Path) -> None:
    """jax2onnx labels the `2*s` of a concatenation `s`; the file says `2*s`, as report.json."""
    prog = program(lambda p, x: {"y": jnp.concatenate([x, x], axis=1)}, {"x": "f32[b,s,3]"})
    from jaxport.shapes import infer_outputs

    infer_outputs(prog)
    export_onnx(prog.functions["serving_default"], None, tmp_path / "m.onnx", opset=23)
    model = onnx.load(tmp_path / "m.onnx")
    assert _dims(model.graph.output[0]) == ["b", "2*s", 3] == list(prog.signature_json()["serving_default"]["outputs"]["y"]["shape"])


def test_loading_jax2onnx_leaves_jax_as_it_was() -> None:
    """jax2onnx's plugins replace jnp.cumsum process-wide with a function binding their own
    primitive; after the onnx target loads them, jnp.cumsum still traces to JAX's `cumsum`."""
    import jax
    import jax.numpy as jnp

    from jaxport.targets.onnx import converts

    assert converts("cumsum")
    text = str(jax.make_jaxpr(lambda x: jnp.cumsum(x, axis=0))(jnp.ones(3)))
    assert "cumsum[" in text and "jax.numpy.cumsum" not in text, text
