"""TF.js target end to end: plain-TF SavedModels -> tensorflowjs converter -> TF.js in Node.

Real converter, real runtime (`@tensorflow/tfjs` 4.22 cpu backend via `TfjsRunner`); the
reference is the same SavedModel run in TensorFlow. Needs `scripts/install-js` to have run.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import tensorflow as tf

from jaxport.errors import TargetError
from jaxport.targets.tfjs import export_tfjs, runtime_problems, unfuse_activations
from jaxport.verify.tfjs import TfjsRunner, TfjsUnavailable, shared_runner

BATCHES = (1, 3)


@pytest.fixture(scope="session")
def runner() -> TfjsRunner:
    """The process-wide runner the engine uses too: one Node process per test session."""
    return shared_runner()


def _save(tmp: Path, name: str, module: tf.Module) -> Path:
    path = tmp / f"{name}_savedmodel"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.__call__})
    return path


def _var(rng: np.random.Generator, *shape: int) -> tf.Variable:
    return tf.Variable(rng.normal(scale=0.5, size=shape).astype(np.float32))


class DenseNet(tf.Module):
    """Dense -> relu -> dense, batch dim None; 3.3 KB of weights (several 1 KB shards)."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.w1, self.b1 = _var(rng, 4, 64), _var(rng, 64)
        self.w2, self.b2 = _var(rng, 64, 8), _var(rng, 8)

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def __call__(self, x):
        return {"y": tf.nn.relu(x @ self.w1 + self.b1) @ self.w2 + self.b2}


class ConvNet(tf.Module):
    def __init__(self) -> None:
        rng = np.random.default_rng(1)
        self.k, self.kb = _var(rng, 3, 3, 3, 8), _var(rng, 8)
        self.d = _var(rng, 8, 5)

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32, name="image")])
    def __call__(self, image):
        h = tf.nn.relu(tf.nn.conv2d(image, self.k, strides=1, padding="SAME") + self.kb)
        h = tf.nn.max_pool2d(h, 2, 2, "VALID")
        return {"logits": tf.reduce_mean(h, axis=[1, 2]) @ self.d}


class TwoInTwoOut(tf.Module):
    """Alike inputs and alike outputs: tensorflowjs alone would name them `a:0`, `Identity_1:0`."""

    def __init__(self) -> None:
        self.w = _var(np.random.default_rng(2), 4, 4)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, 4], tf.float32, name="a"),
            tf.TensorSpec([None, 4], tf.float32, name="b"),
        ]
    )
    def __call__(self, a, b):
        return {"mixed": tf.sigmoid(a @ self.w + b), "diff": a - 2.0 * b}


class DTypes(tf.Module):
    """int64/bool inputs and bool/uint8/int64 outputs: TF.js computes in int32/bool."""

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, 3], tf.int64, name="i"),
            tf.TensorSpec([None, 3], tf.bool, name="m"),
            tf.TensorSpec([None, 3], tf.float32, name="x"),
        ]
    )
    def __call__(self, i, m, x):
        return {"pos": x > 0, "sel": tf.where(m, x, -x), "i3": i * 3, "u": tf.cast(tf.abs(i), tf.uint8)}


class WhileLoop(tf.Module):
    """A data-dependent `tf.while_loop`: TF.js runs it only under `executeAsync`."""

    @tf.function(
        input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x"), tf.TensorSpec([], tf.int32, name="n")]
    )
    def __call__(self, x, n):
        _, y = tf.while_loop(lambda i, y: i < n, lambda i, y: (i + 1, 0.9 * y + tf.sin(y)), (0, x))
        return {"y": y}


class DenseTanh(tf.Module):
    """Grappler fuses MatMul+BiasAdd+Tanh into _FusedMatMul; TF.js 4.22 cpu has no fused tanh."""

    def __init__(self) -> None:
        rng = np.random.default_rng(3)
        self.w, self.b = _var(rng, 4, 4), _var(rng, 4)

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def __call__(self, x):
        return {"y": tf.tanh(x @ self.w + self.b)}


class ConvHardSwish(tf.Module):
    """Conv2D and depthwise conv, each + bias + hard swish as jax.nn.hard_swish lowers: grappler
    (oneDNN) fuses each into one node with `_FusedHardSwish`, which TF.js 4.22 has no kernel for."""

    def __init__(self) -> None:
        rng = np.random.default_rng(6)
        self.k, self.kb = _var(rng, 3, 3, 3, 8), _var(rng, 8)
        self.d, self.db = _var(rng, 3, 3, 8, 1), _var(rng, 8)

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32, name="image")])
    def __call__(self, image):
        def hard_swish(y):
            return y * (tf.nn.relu6(y + 3.0) / 6.0)

        h = hard_swish(tf.nn.conv2d(image, self.k, strides=1, padding="SAME") + self.kb)
        return {"y": hard_swish(tf.nn.depthwise_conv2d(h, self.d, [1, 1, 1, 1], "SAME") + self.db)}


class GroupedConv(tf.Module):
    """Input depth 4, filter depth 2: a grouped convolution the converter passes, TF.js cannot run."""

    def __init__(self) -> None:
        self.k = _var(np.random.default_rng(4), 3, 3, 2, 4)

    @tf.function(input_signature=[tf.TensorSpec([None, 6, 6, 4], tf.float32, name="x")])
    def __call__(self, x):
        return {"y": tf.nn.conv2d(x, self.k, strides=1, padding="SAME")}


class Erfc(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def __call__(self, x):
        return {"y": tf.math.erfc(x)}


def _inputs(module: tf.Module, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random inputs for the module's signature; `None` dims become `batch`, `n` (loop count) 5."""
    out = {}
    for spec in module.__call__.input_signature:
        shape = [batch if d is None else d for d in spec.shape.as_list()]
        if spec.name == "n":
            out[spec.name] = np.array(5, np.int32)
        elif spec.dtype == tf.bool:
            out[spec.name] = rng.random(size=shape) > 0.5
        elif spec.dtype.is_integer:
            out[spec.name] = rng.integers(-5, 5, size=shape).astype(spec.dtype.as_numpy_dtype)
        else:
            out[spec.name] = rng.normal(size=shape).astype(np.float32)
    return out


def _reference(saved_model: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    fn = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    return {k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in inputs.items()}).items()}


def _check_parity(
    runner: TfjsRunner, module: tf.Module, saved_model: Path, model_dir: Path, *, atol: float, rtol: float
) -> None:
    rng = np.random.default_rng(7)
    for batch in BATCHES:
        inputs = _inputs(module, batch, rng)
        want = _reference(saved_model, inputs)
        got = runner.run(model_dir, inputs)
        assert got.keys() == want.keys()
        for name in want:
            assert got[name].dtype == want[name].dtype, name
            assert got[name].shape == want[name].shape, name
            np.testing.assert_allclose(got[name], want[name], atol=atol, rtol=rtol, err_msg=f"{name} batch {batch}")


@pytest.mark.parametrize("make", [DenseNet, ConvNet, TwoInTwoOut, DTypes, WhileLoop], ids=lambda m: m.__name__)
def test_parity_in_node(runner: TfjsRunner, tmp_path: Path, make: Callable[[], tf.Module]) -> None:
    module = make()
    saved_model = _save(tmp_path, make.__name__, module)
    model_dir = export_tfjs(saved_model, tmp_path / "tfjs")
    assert runtime_problems(model_dir / "model.json") == []
    _check_parity(runner, module, saved_model, model_dir, atol=1e-5, rtol=1e-5)


def test_shards_and_timing(runner: TfjsRunner, tmp_path: Path) -> None:
    module = DenseNet()
    saved_model = _save(tmp_path, "dense", module)
    model_dir = export_tfjs(saved_model, tmp_path / "tfjs", shard_bytes=1024)
    manifest = json.loads((model_dir / "model.json").read_text())["weightsManifest"]
    shards = [model_dir / p for group in manifest for p in group["paths"]]
    assert len(shards) == 4 and all(p.stat().st_size <= 1024 for p in shards)
    inputs = _inputs(module, 3, np.random.default_rng(0))
    outputs, timing = runner.benchmark(model_dir, inputs, warmup=1, runs=3)
    np.testing.assert_allclose(outputs["y"], _reference(saved_model, inputs)["y"], atol=1e-5, rtol=1e-5)
    assert timing.runs == 3 and 0 < timing.min_ms <= timing.median_ms <= timing.max_ms
    held = runner.ping()["tensors"]  # the weights of the loaded models
    runner.run(model_dir, inputs)
    assert runner.ping()["tensors"] == held  # runs leak no tensors


class WeightOut(tf.Module):
    """Outputs that are the graph's own tensors: a weight, a constant, the input passed through
    (TF.js hands back the cached model's weight tensors and the caller's input themselves)."""

    def __init__(self) -> None:
        self.w = _var(np.random.default_rng(8), 4, 3)

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def __call__(self, x):
        return {"w": tf.identity(self.w), "ones": tf.ones([5]), "x": tf.identity(x), "y": x @ self.w}


def test_outputs_that_are_weights_survive_reruns(runner: TfjsRunner, tmp_path: Path) -> None:
    module = WeightOut()
    saved_model = _save(tmp_path, "weight_out", module)
    model_dir = export_tfjs(saved_model, tmp_path / "tfjs")
    inputs = _inputs(module, 3, np.random.default_rng(0))
    _check_parity(runner, module, saved_model, model_dir, atol=1e-6, rtol=1e-6)  # loads, runs twice
    held = runner.ping()["tensors"]
    for _ in range(3):
        got = runner.run(model_dir, inputs)
        np.testing.assert_array_equal(got["w"], module.w.numpy())
        np.testing.assert_array_equal(got["x"], inputs["x"])
    outputs, _ = runner.benchmark(model_dir, inputs, warmup=1, runs=2)
    np.testing.assert_array_equal(outputs["ones"], np.ones(5, np.float32))
    assert runner.ping()["tensors"] == held  # the computed output `y` is still disposed


@pytest.mark.parametrize("quantization, bytes_per_weight, tol", [("float16", 2, 1e-2), ("uint16", 2, 1e-3), ("uint8", 1, 5e-2)])
def test_weight_quantization(
    runner: TfjsRunner, tmp_path: Path, quantization: str, bytes_per_weight: int, tol: float
) -> None:
    module = DenseNet()
    saved_model = _save(tmp_path, "dense", module)
    model_dir = export_tfjs(saved_model, tmp_path / "tfjs", quantization=quantization)
    weights = sum(p.stat().st_size for p in model_dir.glob("*.bin"))
    assert weights <= 840 * bytes_per_weight + 64  # 840 float weights; uint8 adds min/scale
    _check_parity(runner, module, saved_model, model_dir, atol=tol, rtol=tol)


def test_refuses_xla_call_module(tmp_path: Path) -> None:
    import jax.numpy as jnp
    from jax.experimental import jax2tf

    module = tf.Module()
    module.__call__ = tf.function(
        jax2tf.convert(lambda x: {"y": jnp.sin(x) * 2}, polymorphic_shapes=["(b, 4)"]),
        input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")],
        autograph=False,
    )
    saved_model = _save(tmp_path, "jax2tf", module)
    with pytest.raises(TargetError, match="XlaCallModule") as info:
        export_tfjs(saved_model, tmp_path / "tfjs")
    assert "lowering" in info.value.hint
    assert not (tmp_path / "tfjs").exists()


def test_converter_rejects_unsupported_op(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="Erfc"):
        export_tfjs(_save(tmp_path, "erfc", Erfc()), tmp_path / "tfjs")
    assert not (tmp_path / "tfjs").exists()


def test_unfuses_activation_tfjs_lacks(runner: TfjsRunner, tmp_path: Path) -> None:
    module = DenseTanh()
    saved_model = _save(tmp_path, "tanh", module)
    model_dir = export_tfjs(saved_model, tmp_path / "tfjs")
    ops = [n["op"] for n in json.loads((model_dir / "model.json").read_text())["modelTopology"]["node"]]
    assert "_FusedMatMul" in ops and "Tanh" in ops  # still fused with its BiasAdd
    _check_parity(runner, module, saved_model, model_dir, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("quantization, tol", [(None, 1e-5), ("uint8", 5e-2)])
def test_expands_fused_hard_swish(
    runner: TfjsRunner, tmp_path: Path, quantization: str | None, tol: float
) -> None:
    module = ConvHardSwish()
    saved_model = _save(tmp_path, "hard_swish", module)
    model_dir = export_tfjs(saved_model, tmp_path / "tfjs", quantization=quantization)
    data = json.loads((model_dir / "model.json").read_text())
    ops = [n["op"] for n in data["modelTopology"]["node"]]
    assert {"_FusedConv2D", "FusedDepthwiseConv2dNative"} <= set(ops) and ops.count("Relu6") == 2
    constants = data["weightsManifest"][-1]["weights"]  # 3 and 6, shared, never quantized
    assert constants == [{"name": w["name"], "shape": [], "dtype": "float32"} for w in constants[:2]]
    _check_parity(runner, module, saved_model, model_dir, atol=tol, rtol=tol)


def test_runtime_failure_names_the_op(runner: TfjsRunner, tmp_path: Path) -> None:
    module = GroupedConv()
    model_dir = export_tfjs(_save(tmp_path, "grouped", module), tmp_path / "tfjs")
    with pytest.raises(TargetError, match="(?i)conv2d") as info:
        runner.run(model_dir, _inputs(module, 1, np.random.default_rng(0)))
    assert info.value.message.startswith("TF.js could not run the model")
    assert runner.info["tfjs"] == "4.22.0"  # still alive and usable after the failure
    assert runner.ping()["ok"]


def test_missing_runtime_has_install_hint(tmp_path: Path) -> None:
    with pytest.raises(TfjsUnavailable, match="not installed") as info:
        TfjsRunner(tmp_path).start()
    assert "scripts/install-js" in info.value.hint


def test_reconverted_model_is_reloaded(runner: TfjsRunner, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for module in (DenseNet(), TwoInTwoOut()):  # same directory, different signatures
        saved_model = _save(tmp_path, type(module).__name__, module)
        model_dir = export_tfjs(saved_model, tmp_path / "tfjs")
        inputs = _inputs(module, 2, rng)
        got, want = runner.run(model_dir, inputs), _reference(saved_model, inputs)
        assert got.keys() == want.keys()
        for name in want:
            np.testing.assert_allclose(got[name], want[name], atol=1e-5, rtol=1e-5)


class TwoTowers(tf.Module):
    """One SavedModel, two signatures sharing a weight: one TF.js model per signature."""

    def __init__(self) -> None:
        self.w = _var(np.random.default_rng(5), 3, 4)

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="image")])
    def image(self, image):
        return {"emb": image @ self.w}

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="text")])
    def text(self, text):
        return {"emb": text @ tf.transpose(self.w)}


def test_one_model_per_signature(runner: TfjsRunner, tmp_path: Path) -> None:
    module = TwoTowers()
    saved_model = tmp_path / "towers_savedmodel"
    tf.saved_model.save(module, str(saved_model), signatures={"image": module.image, "text": module.text})
    loaded = tf.saved_model.load(str(saved_model))
    rng = np.random.default_rng(0)
    for name, width in (("image", 3), ("text", 4)):
        model_dir = export_tfjs(saved_model, tmp_path / "tfjs" / name, signature=name)
        x = rng.normal(size=(3, width)).astype(np.float32)
        want = loaded.signatures[name](**{name: tf.constant(x)})["emb"].numpy()
        np.testing.assert_allclose(runner.run(model_dir, {name: x})["emb"], want, atol=1e-5, rtol=1e-5)


def test_timeout_stops_node_and_next_request_restarts_it(tmp_path: Path) -> None:
    module = DenseNet()
    saved_model = _save(tmp_path, "dense", module)
    model_dir = export_tfjs(saved_model, tmp_path / "tfjs")
    inputs = _inputs(module, 1, np.random.default_rng(0))
    with TfjsRunner(timeout_s=60) as own:
        own.timeout_s = 1e-4
        with pytest.raises(TargetError, match="did not answer"):
            own.run(model_dir, inputs)
        own.timeout_s = 60
        np.testing.assert_allclose(own.run(model_dir, inputs)["y"], _reference(saved_model, inputs)["y"], atol=1e-5)


def test_runtime_problems_names_what_tfjs_lacks(tmp_path: Path) -> None:
    def fused(name: str, *ops: str) -> dict:
        encoded = [base64.b64encode(op.encode()).decode() for op in ops]
        return {"name": name, "op": "_FusedMatMul", "input": ["x", "w", "b"],
                "attr": {"T": {"type": "DT_FLOAT"}, "fused_ops": {"list": {"s": encoded}}}}

    model_json = tmp_path / "model.json"
    nodes = [{"name": "x", "op": "Placeholder"}, {"name": "e", "op": "Erfc", "input": ["x"]},
             fused("g", "BiasAdd", "GeluExact"), fused("t", "BiasAdd", "Tanh"), fused("r", "BiasAdd", "Relu"),
             fused("h", "BiasAdd", "_FusedHardSwish")]
    model_json.write_text(json.dumps({"modelTopology": {"node": nodes}}))
    # Tanh is an op TF.js has, hard swish a chain of its ops; GeluExact neither
    assert unfuse_activations(model_json) == ["t", "h"]
    assert runtime_problems(model_json) == ["_FusedMatMul fused with GeluExact", "op Erfc"]
    rewritten = {n["name"]: n for n in json.loads(model_json.read_text())["modelTopology"]["node"]}
    assert rewritten["t"]["op"] == "Tanh" and rewritten["t"]["input"] == ["t/_FusedMatMul"]
    assert rewritten["h"]["op"] == "Mul" and rewritten["h"]["input"][0] == "h/_FusedMatMul"
    assert (tmp_path / "group1-shard1of1.bin").read_bytes() == np.array([3, 6], "<f4").tobytes()
