"""Real Keras models (on JAX) and a vmapped composite: lowered to plain TF, compared with JAX at
batch 1 and 3; the lowered SavedModel converted to TFLite and run in LiteRT with a resized batch.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxport.program import Function, Program  # noqa: E402
from jaxport.specs import parse_spec  # noqa: E402
from jaxport.verify.runtimes import SavedModelRunner, TfliteRunner  # noqa: E402
from tests.lowering.harness import assert_close, check_program, op_types, random_inputs, reference, runtime_params, tflite_convert  # noqa: E402
from tests import zoo  # noqa: E402
from tests.zoo import with_real_bn  # noqa: E402

B13 = [{"b": 1}, {"b": 3}]


def keras_program(model: keras.Model, spec: str) -> Program:
    """`model.stateless_call(trainable, non_trainable, x, training=False)` as a Program."""
    params = {
        "t": [np.asarray(v.value) for v in model.trainable_variables],
        "n": [np.asarray(v.value) for v in model.non_trainable_variables],
    }

    def fn(p, x):
        y, _ = model.stateless_call(p["t"], p["n"], x, training=False)
        return {"y": y}

    return Program(params, {"serving_default": Function("serving_default", [parse_spec("x", spec)], ["y"], fn)})


def _mobilenet_v2() -> keras.Model:
    return zoo.mobilenet_v2(64)


def _efficientnet_b0() -> keras.Model:
    return with_real_bn(keras.applications.EfficientNetB0(input_shape=(32, 32, 3), weights=None, classes=10, classifier_activation=None))


def _transformer() -> keras.Model:
    x = keras.Input((None, 16))
    y = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8)(x, x)
    y = keras.layers.LayerNormalization()(x + y)
    z = keras.layers.Dense(32, activation="gelu")(y)
    z = keras.layers.Dense(16)(z)
    return keras.Model(x, keras.layers.LayerNormalization()(y + z))


def _rnn() -> keras.Model:
    x = keras.Input((6, 4))
    y = keras.layers.LSTM(8, return_sequences=True)(x)
    y = keras.layers.Bidirectional(keras.layers.GRU(5, return_sequences=True))(y)
    return keras.Model(x, keras.layers.SimpleRNN(3)(y))


def _convs() -> keras.Model:
    x = keras.Input((12, 12, 3))
    y = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same")(x)
    y = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="valid")(y)
    y = keras.layers.UpSampling2D()(keras.layers.MaxPooling2D()(y))
    y = keras.layers.SeparableConv2D(6, 3, padding="same", activation="relu")(y)
    y = keras.layers.DepthwiseConv2D(3, strides=2, depth_multiplier=2)(y)
    y = keras.layers.Conv2D(4, 3, groups=2, dilation_rate=2)(y)
    y = keras.layers.AveragePooling2D(2, padding="same")(y)
    return keras.Model(x, keras.layers.GlobalAveragePooling2D()(y))


def _sequence() -> keras.Model:
    x = keras.Input((9,), dtype="int32")
    y = keras.layers.Embedding(20, 6)(x)
    y = keras.layers.Conv1D(5, 3, padding="causal", activation="swish")(y)
    y = keras.layers.Conv1D(5, 3, strides=2, dilation_rate=1)(y)
    y = keras.layers.MaxPooling1D()(y)
    return keras.Model(x, keras.layers.GlobalMaxPooling1D()(y))


MODELS = {
    "mobilenet_v2": (_mobilenet_v2, "f32[b,64,64,3]", 1e-4),
    "efficientnet_b0": (_efficientnet_b0, "f32[b,32,32,3]", 1e-4),
    "transformer": (_transformer, "f32[b,s,16]", 5e-5),
    "rnn": (_rnn, "f32[b,6,4]", 5e-5),
    "convs": (_convs, "f32[b,12,12,3]", 5e-5),
    "sequence": (_sequence, "i32[b,9]", 5e-5),
}


SLOW = {"efficientnet_b0"}  # building it in Keras alone takes a minute or two on 2 busy cores


@pytest.fixture(scope="module", params=[pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(MODELS)])
def model_case(request: pytest.FixtureRequest) -> tuple[str, Program, float]:
    build, spec, atol = MODELS[request.param]
    keras.utils.set_random_seed(0)
    return request.param, keras_program(build(), spec), atol


@pytest.mark.parametrize("runtime", runtime_params())
def test_keras_model(model_case: tuple[str, Program, float], runtime: str) -> None:
    name, prog, atol = model_case
    sizes = [dict(s, s=7) for s in B13] if name == "transformer" else B13
    int_range = (0, 20)
    lowered = check_program(prog, runtime, sizes, atol=atol, rtol=1e-3, int_range=int_range)
    ops = set(op_types(lowered))
    assert not ops & {"Erf", "Erfc", "Erfinv", "XlaCallModule"}, ops
    if name == "mobilenet_v2":  # clamps as Relu6, bias/BN operands broadcast implicitly
        assert "Relu6" in ops and not ops & {"Maximum", "Minimum", "BroadcastTo", "PadV2"}, ops
        assert "DepthwiseConv2dNative" in ops
    if name == "rnn":
        assert "While" not in ops and "StatelessWhile" not in ops  # the static scans are unrolled


TFLITE_MODELS = ["convs", "transformer"]  # Conv2DTranspose (fails in LiteRT on the orbax path); exact gelu (no Erf builtin), 2 symbols


@pytest.mark.parametrize("name", TFLITE_MODELS)
def test_keras_model_tflite(name: str, tmp_path: Path) -> None:
    """The lowered SavedModel converts to builtin-only TFLite and matches JAX at resized shapes."""
    from jaxport.lowering import lower_program

    build, spec, atol = MODELS[name]
    keras.utils.set_random_seed(0)
    prog = keras_program(build(), spec)
    lower_program(prog).save(tmp_path / "sm")
    lite = tmp_path / "model.tflite"
    lite.write_bytes(tflite_convert(tmp_path / "sm", ["serving_default"]))
    runner = TfliteRunner(lite)
    fn = prog.functions["serving_default"]
    for sizes in ({"b": 1, "s": 7}, {"b": 3, "s": 4}):
        inputs = random_inputs(fn.inputs, sizes, seed=sizes["b"])
        assert_close(runner.run("serving_default", inputs), reference(prog, "serving_default", inputs), atol, 1e-3)


def _vmapped_composite() -> Program:
    keras.utils.set_random_seed(1)
    x = keras.Input((16, 16, 3))
    y = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    y = keras.layers.BatchNormalization()(y)
    embed = with_real_bn(keras.Model(x, keras.layers.GlobalAveragePooling2D()(y)))
    h = keras.Input((8,))
    head = keras.Model(h, keras.layers.Dense(4)(h))
    params = {
        m: {"t": [np.asarray(v.value) for v in model.trainable_variables], "n": [np.asarray(v.value) for v in model.non_trainable_variables]}
        for m, model in (("embed", embed), ("head", head))
    }

    def fn(p, images):
        def one(img):
            return embed.stateless_call(p["embed"]["t"], p["embed"]["n"], img, training=False)[0]

        emb = jax.vmap(one, in_axes=1, out_axes=1)(images)  # (b, 4, 8)
        pooled = jnp.mean(emb, axis=1)
        score = head.stateless_call(p["head"]["t"], p["head"]["n"], pooled, training=False)[0]
        return {"score": score, "emb": emb}

    spec = parse_spec("images", "f32[b,4,16,16,3]")
    return Program(params, {"serving_default": Function("serving_default", [spec], ["emb", "score"], fn)})


@pytest.fixture(scope="module")
def composite() -> Program:
    return _vmapped_composite()


@pytest.mark.parametrize("runtime", runtime_params())
def test_vmapped_composite(composite: Program, runtime: str) -> None:
    check_program(composite, runtime, B13, atol=3e-5)


def test_saved_model_and_tflite(composite: Program, tmp_path: Path) -> None:
    """The saved lowered program: signature keyed by function name, named inputs with None for
    the batch, params as variables; it converts to TFLite and runs in LiteRT at batch 1 and 3."""
    from jaxport.lowering import lower_program

    lowered = lower_program(composite)
    lowered.save(tmp_path / "sm")
    saved = SavedModelRunner(tmp_path / "sm")
    import tensorflow as tf

    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    sig = loaded.signatures["serving_default"]
    (spec,) = sig.structured_input_signature[1].values()
    assert spec.name == "images" and spec.shape.as_list() == [None, 4, 16, 16, 3]
    assert len(loaded.params) == len(jax.tree_util.tree_leaves(composite.params))
    assert all(isinstance(v, tf.Variable) for v in loaded.params)
    lite = tmp_path / "model.tflite"
    lite.write_bytes(tflite_convert(tmp_path / "sm", ["serving_default"]))
    runner = TfliteRunner(lite)
    fn = composite.functions["serving_default"]
    for b in (1, 3):
        inputs = random_inputs(fn.inputs, {"b": b}, seed=b)
        want = reference(composite, "serving_default", inputs)
        assert_close(saved.run("serving_default", inputs), want, 3e-5)
        assert_close(runner.run("serving_default", inputs), want, 3e-5)


@pytest.mark.slow
def test_saliency_map_through_export(tmp_path: Path) -> None:
    """A gradient of a Keras model's class score w.r.t. its input (a saliency map: `add_any`
    sums the cotangents) exports through `jaxport.export` to TFLite and TF.js; each artifact,
    run again in its runtime on fresh inputs, matches `jax.grad` of the same model."""
    import jaxport
    from jaxport.verify.tfjs import shared_runner

    x = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(4, 3, activation="relu")(x)
    h = keras.layers.Dense(5, activation="tanh")(keras.layers.Flatten()(h))
    model = keras.Model(x, keras.layers.Dense(3)(h + keras.layers.Dense(5)(keras.layers.Flatten()(x))))
    params = [np.asarray(v.value) for v in model.trainable_variables]

    def saliency(p, images):
        score = lambda v: model.stateless_call(p, [], v)[0][:, 1].sum()  # noqa: E731
        return {"grad": jax.grad(score)(images)}

    report = jaxport.export(saliency, params, inputs={"images": "f32[b,6,6,2]"}, targets=["tflite", "tfjs"], out_dir=tmp_path)
    for target in ("tflite", "tfjs"):
        assert report["targets"][target]["status"] == "ok", report["targets"][target]["error"]
    assert report["targets"]["tflite"]["source"] == "lowered", report["targets"]["tflite"]
    images = np.random.default_rng(7).standard_normal((2, 6, 6, 2)).astype(np.float32)
    want = np.asarray(jax.jit(saliency)(params, images)["grad"])
    assert np.abs(want).max() > 0
    got_lite = TfliteRunner(tmp_path / report["targets"]["tflite"]["path"]).run("serving_default", {"images": images})
    got_js = shared_runner().run(tmp_path / report["targets"]["tfjs"]["path"], {"images": images})
    np.testing.assert_allclose(got_lite["grad"], want, atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(got_js["grad"], want, atol=1e-5, rtol=1e-4)


def test_the_output_inference_and_the_lowering_share_one_trace():
    """`infer_outputs` traces each function once on symbolic shapes; the lowering (and
    inspection) reuse that trace while the function and the params' avals are the same, and
    trace again when they change. The lowered function still computes what numpy does."""
    from jaxport.lowering import lower_program
    from jaxport.shapes import infer_outputs

    traces = []

    def fn(p, x):
        traces.append(x.shape)  # runs once per Python trace
        return {"y": jnp.tanh(x @ p["w"])}

    w = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    prog = Program({"w": w}, {"f": Function("f", [parse_spec("x", "f32[b,4]")], ["y"], fn)})
    infer_outputs(prog)
    lowered = lower_program(prog)
    assert len(traces) == 1
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    got = lowered.signatures["f"](x=x)["y"].numpy()
    np.testing.assert_allclose(got, np.tanh(x @ w), rtol=1e-5, atol=1e-6)

    prog.params = {"w": w.astype(np.float16)}  # other avals: a new trace, not the kept one
    lower_program(prog)
    assert len(traces) == 2
