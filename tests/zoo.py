"""Real test models, small: keras.applications (weights=None), keras_hub from small configs,
and hand-built blocks. BatchNorm layers get real statistics so outputs depend on inputs
(random-init BN makes every input give nearly the same output, and parity meaningless).
"""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402


def with_real_bn(model: keras.Model, seed: int = 0, calibration: np.ndarray | None = None,
                 variance_scale: float = 1.0) -> keras.Model:
    """Give BatchNorm layers statistics that make `model` input-sensitive.

    By default the moving mean and variance are drawn. With `calibration` (a batch of inputs
    for a single-input functional model), each layer's moving statistics are those of its own
    input on that batch, measured in order: for models whose signal drawn statistics do not
    carry to the output (MobileNet V1/V2 give the same logits for every input). The affine
    params are drawn either way. `variance_scale` > 1 widens the calibrated variances, which
    damps each block's gain: for models that calibration makes chaotic (float32 rounding grows
    through them).
    """
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.moving_mean.shape
            if calibration is None:
                mean = rng.normal(0, 0.1, shape)
                variance = rng.uniform(0.5, 1.5, shape)
            else:
                h = np.asarray(keras.Model(model.inputs, layer.input)(calibration))
                axes = tuple(range(h.ndim - 1))
                mean, variance = h.mean(axes), variance_scale * h.var(axes) + 1e-3
            layer.moving_mean.assign(np.asarray(mean, "float32"))
            layer.moving_variance.assign(np.asarray(variance, "float32"))
            if layer.gamma is not None:
                layer.gamma.assign(rng.uniform(0.8, 1.2, shape).astype("float32"))
            if layer.beta is not None:
                layer.beta.assign(rng.normal(0, 0.1, shape).astype("float32"))
    return model


def images(model: keras.Model, rows: int = 8, seed: int = 0) -> np.ndarray:
    """`rows` random images for `model`'s one image input: pixels in [0, 255] when the model
    starts with its own preprocessing (Rescaling/Normalization), else in [-1, 1] (what the
    preprocess_input of MobileNet, Xception and Inception gives)."""
    first = [type(layer).__name__ for layer in model.layers[1:3]]
    low, high = (0, 255) if {"Rescaling", "Normalization"} & set(first) else (-1, 1)
    shape = (rows, *model.inputs[0].shape[1:])
    return np.random.default_rng(seed).uniform(low, high, shape).astype("float32")


def mobilenet_v2(size: int = 32) -> keras.Model:
    """MobileNetV2 (alpha 0.35, 10 logits) with BatchNorm statistics calibrated on images."""
    model = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=0.35, weights=None,
                                           classifier_activation=None, classes=10)
    return with_real_bn(model, calibration=images(model))


def small_cnn(size: int = 16, features: int = 8, name: str = "cnn") -> keras.Model:
    x = keras.Input((size, size, 3), name="image")
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(features, 3, padding="same", activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return with_real_bn(keras.Model(x, h, name=name))


def small_classifier(size: int = 16, classes: int = 10) -> keras.Model:
    """Pixels in [0, 255] (its own Rescaling) -> 2 convs with BatchNorm -> `classes` logits."""
    x = keras.Input((size, size, 3), name="image")
    h = keras.layers.Rescaling(1 / 255)(x)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(h)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(x, keras.layers.Dense(classes, name="logits")(h), name="classifier")
    return with_real_bn(model, calibration=images(model, rows=32))


def dense_head(features: int = 8, classes: int = 4) -> keras.Model:
    x = keras.Input((features,), name="features")
    return keras.Model(x, keras.layers.Dense(classes)(keras.layers.Dense(16, activation="gelu")(x)),
                       name="head")


def transformer_block(seq: int | None = None, dim: int = 16) -> keras.Model:
    x = keras.Input((seq, dim), name="tokens")
    a = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8)(x, x)
    h = keras.layers.LayerNormalization()(x + a)
    f = keras.layers.Dense(dim)(keras.layers.Dense(32, activation="gelu")(h))
    return keras.Model(x, keras.layers.LayerNormalization()(h + f), name="transformer")


def lstm_model(seq: int = 6) -> keras.Model:
    x = keras.Input((seq, 5), name="series")
    h = keras.layers.LSTM(8, return_sequences=True)(x)
    h = keras.layers.GRU(8)(h)
    return keras.Model(x, keras.layers.Dense(3)(h), name="rnn")


def multi_io_model() -> keras.Model:
    a = keras.Input((6,), name="numbers")
    b = keras.Input((None,), dtype="int32", name="ids")
    e = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(20, 4)(b))
    h = keras.layers.Concatenate()([keras.layers.Dense(4)(a), e])
    return keras.Model({"numbers": a, "ids": b},
                       {"logits": keras.layers.Dense(3)(h), "embedding": e}, name="multi")


def bert_backbone() -> keras.Model:
    import keras_hub

    return keras_hub.models.BertBackbone(vocabulary_size=50, num_layers=1, num_heads=2,
                                         hidden_dim=8, intermediate_dim=16,
                                         max_sequence_length=16)


def mel_classifier(samples: int = 512) -> keras.Model:
    """Audio -> MelSpectrogram -> Dense: an RFFT (`fft`, `real`, `imag`) inside a Keras layer."""
    x = keras.Input((samples,), name="audio")
    h = keras.layers.MelSpectrogram(sequence_stride=64, fft_length=128, num_mel_bins=16)(x)
    return keras.Model(x, keras.layers.Dense(3)(keras.layers.Flatten()(h)), name="mel")


def det_head() -> keras.Model:
    """Dense -> keras.ops.linalg.det -> Dense: an LU decomposition (`lu`), which TF.js and
    LiteRT have no kernel for, in a model every Keras loads in safe mode (an op node of the
    functional graph, so no layer name)."""
    x = keras.Input((4, 4), name="m")
    det = keras.ops.linalg.det(keras.layers.Dense(4)(x))
    return keras.Model(x, keras.layers.Dense(2)(keras.layers.Reshape((1,))(det)), name="det")


def audio_front_ends(samples: int = 1024) -> keras.Model:
    """Audio -> MelSpectrogram (an RFFT, as `fft`, `real`, `imag`) and -> STFTSpectrogram (a
    convolution with a DFT kernel), both as outputs: the two Keras audio front ends."""
    x = keras.Input((samples,), name="audio")
    mel = keras.layers.MelSpectrogram(fft_length=128, sequence_stride=64, num_mel_bins=16, name="mel")(x)
    stft = keras.layers.STFTSpectrogram(mode="magnitude", frame_length=128, frame_step=64, fft_length=128,
                                        name="stft")(keras.layers.Reshape((samples, 1))(x))
    return keras.Model(x, {"mel": mel, "stft": stft}, name="audio")


def top_k_head(features: int = 8, k: int = 3) -> keras.Model:
    """Dense -> keras.ops.top_k: jax.export writes top_k as a `vhlo.composite_v2`, which the
    XlaCallModule of TF 2.21 cannot deserialize."""
    x = keras.Input((features,), name="x")
    values, indices = keras.ops.top_k(keras.layers.Dense(6)(x), k)
    return keras.Model(x, {"values": values, "indices": indices}, name="top_k")


def lambda_model() -> keras.Model:
    x = keras.Input((3,), name="x")
    return keras.Model(x, keras.layers.Lambda(lambda t: t * 2.0)(x))


def save(model: keras.Model, path: Path) -> Path:
    model.save(path)
    return path


def make_zip(path: Path, files: dict[str, bytes | Path]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            zf.writestr(name, content.read_bytes() if isinstance(content, Path) else content)
    return path


def make_targz(path: Path, files: dict[str, bytes | Path] | list[tuple[str, bytes]],
               entries: tuple[tarfile.TarInfo, ...] = ()) -> Path:
    """A .tar.gz of `files` (a list may name a member twice), after the non-file `entries`."""
    with tarfile.open(path, "w:gz") as tf:
        for entry in entries:
            tf.addfile(entry)
        for name, content in (files.items() if isinstance(files, dict) else files):
            data = content.read_bytes() if isinstance(content, Path) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def flag_encrypted(data: bytes, name: str) -> bytes:
    """Zip bytes with member `name` flagged encrypted (zipfile cannot write that flag itself)."""
    out, encoded = bytearray(data), name.encode()
    for signature, flags_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        at = data.index(signature)
        while data[at + name_at:at + name_at + len(encoded)] != encoded:
            at = data.index(signature, at + 1)
        out[at + flags_at] |= 0x1
    return bytes(out)


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


SET_MANIFEST = """
format = 1

[models]
embed = "embed.keras"
head  = "head.keras"

[functions.serving_default]
inputs  = { images = "f32[b,4,16,16,3]" }
outputs = { score = "score" }

[[functions.serving_default.steps]]
bind = "emb"
call = "embed"
args = ["images"]
vmap = { in_axes = [1], out_axes = 1 }

[[functions.serving_default.steps]]
bind = "pooled"
op   = "mean"
args = ["emb"]
axis = 1

[[functions.serving_default.steps]]
bind = "score"
call = "head"
args = ["pooled"]
"""

NESTED_MANIFEST = """
format = 1

[models]
embed = "embed.keras"

[functions.serving_default]
inputs  = { grid = "f32[b,n,2,16,16,3]" }
outputs = { pooled = "pooled" }

[[functions.serving_default.steps]]
bind = "emb"                  # (b, n, 2, d)
call = "embed"
args = ["grid"]
vmap = [{ in_axes = [1], out_axes = 1 }, { in_axes = [1], out_axes = 1 }]

[[functions.serving_default.steps]]
bind = "pooled"
op   = "max"
args = ["emb"]
axis = [1, 2]
"""

TWO_TOWER_MANIFEST = """
format = 1

[models]
image = "image.keras"
text  = "text.keras"

[functions.embed_image]
inputs  = { image = "f32[b,16,16,3]" }
outputs = { embedding = "e" }

[[functions.embed_image.steps]]
bind = "raw"
call = "image"
args = ["image"]

[[functions.embed_image.steps]]
bind = "e"
op = "l2_normalize"
args = ["raw"]
axis = -1

[functions.embed_text]
inputs  = { numbers = "f32[b,6]", ids = "i32[b,s]" }
outputs = { embedding = "e", logits = "logits" }

[[functions.embed_text.steps]]
bind = ["embedding", "logits"]
call = "text"
args = { numbers = "numbers", ids = "ids" }

[[functions.embed_text.steps]]
bind = "e"
op = "l2-normalize"
args = ["embedding"]
"""
