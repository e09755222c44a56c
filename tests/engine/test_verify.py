"""Verdicts you can trust, end to end: dict-input models composed by their contract and checked
against the Keras model called directly, goldens that catch a wrong composition, artifacts
perturbed after conversion that must fail in every runtime, and warnings where a check
cannot tell."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from jaxport import samples as jsamples
from jaxport.archive import extract_archive
from jaxport.cli import main
from jaxport.compose import load_program
from jaxport.errors import ManifestError
from jaxport.options import ConvertOptions
from jaxport.pipeline import convert_archive, reference_cases
from jaxport.samples import Samples
from jaxport.targets import TARGETS, BuildContext
from jaxport.targets.base import Verdict
from jaxport.verify.runtimes import SavedModelRunner, TfliteRunner
from jaxport.verify.tfjs import shared_runner
from tests import zoo

ALL = ["savedmodel", "tflite", "tfjs"]

BERT_MANIFEST = """
format = 1
[models]
bert = "bert.keras"
[functions.serving_default]
inputs = {{ {inputs} }}
outputs = {{ sequence = "seq", pooled = "pooled" }}
[[functions.serving_default.steps]]
bind = ["pooled", "seq"]
call = "bert"
args = {args}
"""


def _bert_inputs(rows: int = 3, length: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    mask = (np.arange(length) < rng.integers(2, length + 1, size=(rows, 1))).astype("int32")
    return {"token_ids": rng.integers(0, 50, (rows, length)).astype("int32"),
            "segment_ids": rng.integers(0, 2, (rows, length)).astype("int32"),
            "padding_mask": mask}


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> tuple[keras.Model, Path]:
    tmp = tmp_path_factory.mktemp("bert")
    model = zoo.bert_backbone()
    return model, zoo.save(model, tmp / "bert.keras")


def _bert_archive(path: Path, bert_file: Path, inputs: str, args: str,
                  samples: bytes | None = None) -> Path:
    files = {"jaxport.toml": BERT_MANIFEST.format(inputs=inputs, args=args).encode(),
             "bert.keras": bert_file}
    if samples is not None:
        files["samples.npz"] = samples
    return zoo.make_zip(path, files)


FLAT_INPUTS = 'padding_mask = "i32[b,s]", segment_ids = "i32[b,s]", token_ids = "i32[b,s]"'


def test_positional_args_follow_model_inputs_order(bert, tmp_path: Path) -> None:
    """The archive from the issue: args in model.inputs order, every artifact right."""
    model, bert_file = bert
    assert list(model._inputs_struct) != [t.name for t in model.inputs]  # dict order ≠ flat order
    archive = _bert_archive(tmp_path / "bert.zip", bert_file, FLAT_INPUTS,
                            '["padding_mask", "segment_ids", "token_ids"]')
    out = tmp_path / "out"
    report = convert_archive(archive, out, ConvertOptions(targets=ALL))
    for target in ALL:
        assert report["targets"][target]["status"] == "ok", report["targets"][target]["error"]
    x = _bert_inputs()
    want = {k: np.asarray(v) for k, v in model(x).items()}  # Keras itself, called with a dict
    outputs = {"sequence": "sequence_output", "pooled": "pooled_output"}
    runs = {"savedmodel": SavedModelRunner(out / "savedmodel").run("serving_default", x),
            "tflite": TfliteRunner(out / "model.tflite").run("serving_default", x),
            "tfjs": shared_runner().run(out / "tfjs", x)}
    for target, got in runs.items():
        for ours, theirs in outputs.items():
            err = float(np.abs(got[ours] - want[theirs]).max())
            assert err <= 1e-4, (target, ours, err)


def test_args_named_as_model_inputs_bind_by_name_and_ambiguity_is_refused(bert, tmp_path: Path) -> None:
    model, bert_file = bert
    shuffled = _bert_archive(tmp_path / "named.zip", bert_file, FLAT_INPUTS,
                             '["token_ids", "padding_mask", "segment_ids"]')
    program = load_program(extract_archive(shuffled, tmp_path / "n"), trusted=False)
    x = _bert_inputs()
    got = program.functions["serving_default"](program.params, x)
    want = np.asarray(model(x)["sequence_output"])
    assert float(np.abs(got["sequence"] - want).max()) <= 1e-5
    ambiguous = _bert_archive(tmp_path / "ambiguous.zip", bert_file,
                              'token_ids = "i32[b,s]", seg = "i32[b,s]", mask = "i32[b,s]"',
                              '["token_ids", "seg", "mask"]')
    with pytest.raises(ManifestError, match="unclear which input each arg feeds") as info:
        load_program(extract_archive(ambiguous, tmp_path / "a"), trusted=False)
    assert "['token_ids']" in str(info.value) and "steps[0]" in str(info.value)
    assert info.value.hint.startswith("use the table form, args = { padding_mask")


def _goldens(model: keras.Model, names: dict[str, str]) -> bytes:
    """samples.npz with inputs under the archive's names and Keras's own outputs as goldens."""
    x = _bert_inputs()
    out = model(x)
    path_inputs = {ours: x[theirs] for ours, theirs in names.items()}
    expected = {"sequence": np.asarray(out["sequence_output"]), "pooled": np.asarray(out["pooled_output"])}
    import io

    buf = io.BytesIO()
    np.savez(buf, **path_inputs, **{f"expected/{k}": v for k, v in expected.items()})
    return buf.getvalue()


def test_goldens_pass_a_right_composition_and_fail_a_swapped_one(bert, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    model, bert_file = bert
    names = {"ids": "token_ids", "segments": "segment_ids", "mask": "padding_mask"}
    inputs = 'ids = "i32[b,s]", segments = "i32[b,s]", mask = "i32[b,s]"'
    right = _bert_archive(tmp_path / "right.zip", bert_file, inputs,
                          '{ token_ids = "ids", segment_ids = "segments", padding_mask = "mask" }',
                          _goldens(model, names))
    report = convert_archive(right, tmp_path / "right", ConvertOptions(targets=["savedmodel"]))
    assert report["reference"]["serving_default"]["passed"]
    assert report["inputs"]["serving_default"]["source"] == "samples.npz"
    assert report["targets"]["savedmodel"]["status"] == "ok"
    # Positional args feed model.inputs order (padding_mask, segment_ids, token_ids): ids go to
    # the padding mask. Every artifact would match this wrong reference; the goldens do not.
    swapped = _bert_archive(tmp_path / "swapped.zip", bert_file, inputs,
                            '["ids", "segments", "mask"]', _goldens(model, names))
    code = main(["convert", str(swapped), "-o", str(tmp_path / "swapped"),
                 "--targets", "savedmodel,tflite"])
    out = capsys.readouterr().out
    assert code == 1
    assert "DOES NOT match samples.npz's expected outputs" in out
    report = json.loads((tmp_path / "swapped" / "report.json").read_text())
    assert not report["reference"]["serving_default"]["passed"]
    for target in ("savedmodel", "tflite"):
        error = report["targets"][target]["error"]
        assert report["targets"][target]["status"] == "failed"
        assert error["code"] == "reference_mismatch" and error["stage"] == "reference"
        assert "serving_default/" in error["message"] and "order of `args`" in error["hint"]


def test_sequential_model_converts(tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="relu"),
                              keras.layers.Dense(2)])
    report = convert_archive(zoo.save(model, tmp_path / "seq.keras"), tmp_path / "out",
                             ConvertOptions(targets=["savedmodel", "tflite"]))
    assert report["targets"]["tflite"]["status"] == "ok", report["targets"]["tflite"]["error"]
    x = np.random.default_rng(0).standard_normal((3, 5)).astype("float32")
    name = next(iter(report["functions"]["serving_default"]["inputs"]))
    got = TfliteRunner(tmp_path / "out" / "model.tflite").run("serving_default", {name: x})
    np.testing.assert_allclose(next(iter(got.values())), np.asarray(model(x)), atol=1e-5)


# --- a check that can fail: artifacts perturbed after conversion --------------------------------

def _perturb_savedmodel(src: Path, dst: Path) -> None:
    """Copy the SavedModel and add 5 to one element of its largest float variable."""
    import tensorflow as tf

    shutil.copytree(src, dst)
    prefix = str(dst / "variables" / "variables")
    reader = tf.train.load_checkpoint(prefix)
    names = sorted(reader.get_variable_to_shape_map())
    tensors = {n: reader.get_tensor(n) for n in names}
    target = max((n for n in names if getattr(tensors[n], "dtype", None) == np.float32),
                 key=lambda n: tensors[n].size)
    tensors[target] = tensors[target].copy()
    tensors[target].flat[0] += 5.0
    for f in (dst / "variables").iterdir():
        f.unlink()
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(tensors[n]) for n in names])


def _perturb_tflite(src: Path, dst: Path) -> None:
    """Add 5 to one element of the model's largest float32 constant, found by its bytes."""
    from ai_edge_litert.interpreter import Interpreter

    data = bytearray(src.read_bytes())
    interpreter = Interpreter(model_path=str(src))
    interpreter.allocate_tensors()
    consts = []
    for detail in interpreter.get_tensor_details():
        if detail["dtype"] != np.float32 or int(np.prod(detail["shape"])) < 8:
            continue
        try:
            value = interpreter.get_tensor(detail["index"])
        except ValueError:
            continue
        if data.count(value.tobytes()) == 1:
            consts.append(value)
    value = max(consts, key=lambda v: v.size)
    at = data.index(value.tobytes())
    changed = value.copy()
    changed.flat[0] += 5.0
    data[at:at + value.nbytes] = changed.tobytes()
    dst.write_bytes(bytes(data))


def _perturb_tfjs(src: Path, dst: Path) -> None:
    """Add 5 to one element of the first float32 weight of the first shard group."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "model.json").read_text())["weightsManifest"][0]
    shard = dst / manifest["paths"][0]
    offset = 0
    for weight in manifest["weights"]:
        count = int(np.prod(weight["shape"])) if weight["shape"] else 1
        if weight["dtype"] == "float32" and count >= 8:
            break
        offset += count * 4  # every weight of this model's first group is 4 bytes wide
    data = bytearray(shard.read_bytes())
    value = np.frombuffer(data, np.float32, count=1, offset=offset).copy() + 5.0
    data[offset:offset + 4] = value.tobytes()
    shard.write_bytes(bytes(data))


def _perturb_onnx(src: Path, dst: Path) -> None:
    """Add 5 to one element of the model's largest float32 initializer."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(src)
    tensor = max((t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT),
                 key=lambda t: numpy_helper.to_array(t).size)
    value = numpy_helper.to_array(tensor).copy()
    value.flat[0] += 5.0
    tensor.CopyFrom(numpy_helper.from_array(value, tensor.name))
    onnx.save(model, dst)


def test_perturbed_artifacts_fail_parity_in_every_runtime(tmp_path: Path) -> None:
    path = zoo.save(zoo.dense_head(), tmp_path / "head.keras")
    out = tmp_path / "out"
    targets = [*ALL, "onnx"]
    options = ConvertOptions(targets=targets)
    report = convert_archive(path, out, options)
    assert all(report["targets"][t]["status"] == "ok" for t in targets)
    program = load_program(extract_archive(path, tmp_path / "x"), trusted=False)
    cases = reference_cases(program, options, Samples())
    ctx = BuildContext(program, out, tmp_path / "work", options, cases)
    perturb = {"savedmodel": (_perturb_savedmodel, "savedmodel"),
               "tflite": (_perturb_tflite, "model.tflite"), "tfjs": (_perturb_tfjs, "tfjs"),
               "onnx": (_perturb_onnx, "model.onnx")}
    def verify(target: str, path: Path):  # a target's parity (TFLite's comes in a Verdict)
        verdict = TARGETS[target].verify(ctx, path)
        return verdict.parity if isinstance(verdict, Verdict) else verdict

    for target, (change, name) in perturb.items():
        assert verify(target, out / name).passed  # the untouched artifact passes
        bad = tmp_path / "bad" / target / name
        bad.parent.mkdir(parents=True)
        change(out / name, bad)
        parity = verify(target, bad)
        assert not parity.passed, target
        assert "exceeds the tolerance" in parity.failure(), (target, parity.failure())


# --- say when a check cannot tell ------------------------------------------------------------------

def test_warnings_for_checks_that_cannot_tell(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    x = keras.Input((4,), name="x")
    flat = keras.layers.Dense(3, kernel_initializer="zeros", bias_initializer="ones")(x)
    scaled = keras.layers.Dense(2, name="tiny")(x)
    model = keras.Model(x, {"constant": flat, "tiny": scaled})
    tiny = model.get_layer("tiny")
    tiny.kernel.assign(np.full((4, 2), 1e-7, np.float32))
    model.layers[1].bias.assign(np.array([1.0, np.nan, 1.0], np.float32))
    code = main(["convert", str(zoo.save(model, tmp_path / "m.keras")), "-o", str(tmp_path / "out"),
                 "--targets", "savedmodel"])
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    text = "\n".join(report["warnings"])
    assert "serving_default/tiny: its 3 batch rows differ by at most" in text
    assert "serving_default/constant: the JAX reference holds 4 NaN/Inf" in text
    assert "holds NaN or Inf" in text and "dense" in text  # the weight is named
    assert out.count("warning: ") == len(report["warnings"]) >= 3
    assert code == 0  # warnings do not fail a target


def test_samples_save_helper_makes_goldens_the_cli_checks(tmp_path: Path) -> None:
    model = zoo.dense_head()
    keras_file = zoo.save(model, tmp_path / "head.keras")
    output = load_program(extract_archive(keras_file, tmp_path / "x"), trusted=False) \
        .functions["serving_default"].outputs[0]
    x = np.random.default_rng(2).standard_normal((4, 8)).astype("float32")
    good = jsamples.save(tmp_path / "good.npz", inputs={"features": x},
                         expected={output: np.asarray(model(x))})
    bad = jsamples.save(tmp_path / "bad.npz", inputs={"features": x},
                        expected={output: np.asarray(model(x)) + 0.1})
    assert main(["convert", str(keras_file), "-o", str(tmp_path / "g"), "--targets", "savedmodel",
                 "--samples", str(good)]) == 0
    assert main(["convert", str(keras_file), "-o", str(tmp_path / "b"), "--targets", "savedmodel",
                 "--samples", str(bad)]) == 1
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["targets"]["savedmodel"]["error"]["code"] == "reference_mismatch"
