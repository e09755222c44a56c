"""Loading `.keras` files and calling them as pure JAX functions through `stateless_call`."""

from __future__ import annotations

import importlib.util
import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jaxport.errors import ModelLoadError
from jaxport.specs import InputRange

os.environ.setdefault("KERAS_BACKEND", "jax")


@dataclass
class LoadedModel:
    """A Keras model plus the structure of its inputs and outputs."""

    model: Any
    input_names: list[str]  # positional order: Keras's flattened order (`model.inputs`)
    input_is_dict: bool
    output_names: list[str]  # flattened order (`model.outputs`); dict outputs by key
    output_is_dict: bool
    output_is_single: bool

    def params(self) -> dict[str, list]:
        """Weights as a params pytree: trainable and non-trainable, never baked in as constants."""
        return {
            "trainable": [v.value for v in self.model.trainable_variables],
            "non_trainable": [v.value for v in self.model.non_trainable_variables],
        }

    def call(self, params: dict[str, list], args: dict) -> list:
        """Run `stateless_call(..., training=False)` on inputs keyed by `input_names`.

        Returns the outputs as a list in `output_names` order.
        """
        if self.input_is_dict:
            inputs: Any = dict(args)
        else:
            inputs = [args[n] for n in self.input_names]
            if len(inputs) == 1:
                inputs = inputs[0]
        out, _ = self.model.stateless_call(
            params["trainable"], params["non_trainable"], inputs, training=False
        )
        if self.output_is_dict:
            return [out[k] for k in self.output_names]
        return [out] if self.output_is_single else list(out)


def import_keras(hub: bool = True):
    """Keras on the JAX backend; with `hub`, keras_hub's layers registered too when it is
    installed (~2 s to import, so a model that names none of them skips it)."""
    import keras

    if keras.backend.backend() != "jax":
        raise ModelLoadError(
            f"Keras is running on the {keras.backend.backend()!r} backend",
            "set KERAS_BACKEND=jax before anything imports keras",
        )
    if hub and importlib.util.find_spec("keras_hub") is not None:
        import keras_hub  # noqa: F401  registers keras_hub's layers for deserialization
    return keras


def names_keras_hub(path: Path) -> bool:
    """Whether the `.keras` file's config names a keras_hub class (True when it cannot be
    read: the load then says what is wrong)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return b"keras_hub" in zf.read("config.json")
    except (OSError, KeyError, zipfile.BadZipFile):
        return True


@contextmanager
def weights_from_file(keras: Any) -> Iterator[None]:
    """Build models without running the weight initializers the loaded weights overwrite.

    Keras builds every layer from its config before reading the weights, and each initializer
    is an XLA compile per shape (most of a model load, e.g. 20 of MobileNetV2's 27 s). Inside
    this block a variable made from an initializer starts as zeros (host memory, nothing
    compiled); on the way out, any variable the load did not assign (its value still that
    placeholder) runs its real initializer, so the result is what a plain load gives.
    """
    import jax.numpy as jnp

    cls = keras.Variable
    run_initializer = cls._initialize_with_initializer
    pending: list[tuple[Any, Any, Any]] = []  # (variable, initializer, placeholder value)

    def placeholder(variable: Any, initializer: Any) -> None:
        variable._initialize(np.zeros(variable._shape, dtype=jnp.dtype(variable._dtype)))
        pending.append((variable, initializer, variable._value))

    cls._initialize_with_initializer = placeholder
    try:
        yield
    finally:
        cls._initialize_with_initializer = run_initializer
        for variable, initializer, value in pending:
            if variable._value is value:
                run_initializer(variable, initializer)


def load_keras_model(path: Path, *, trusted: bool, where: str = "") -> LoadedModel:
    """Load a `.keras` file (`safe_mode` unless trusted) and describe its inputs and outputs."""
    keras = import_keras(hub=names_keras_hub(Path(path)))
    where = where or Path(path).name
    try:
        with weights_from_file(keras):
            model = keras.saving.load_model(path, compile=False, safe_mode=not trusted)
    except Exception as exc:  # noqa: BLE001 - keras raises many types; all mean "cannot load"
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "safe_mode" in str(exc) or "Lambda" in str(exc):
            raise ModelLoadError(
                f"refused under safe mode: {text[:300]}",
                "the model holds Python code (a Lambda layer or a custom function); convert it "
                "locally with trusted mode (the CLI default), or have the operator set "
                "JAXPORT_ALLOW_TRUSTED_CODE=1",
                where=where,
            ) from None
        raise ModelLoadError(
            f"cannot load the model: {type(exc).__name__}: {text[:300]}",
            "check it was saved by Keras 3 with model.save('name.keras'); custom layers must be "
            "registered (keras.saving.register_keras_serializable) and importable",
            where=where,
        ) from None
    return describe(model, where)


def _functional(model: Any) -> Any:
    """The functional graph behind `model`: itself, or the one a `Sequential` wraps."""
    return getattr(model, "_functional", None) or model


def describe(model: Any, where: str = "") -> LoadedModel:
    """Read the input/output structure of a built functional or Sequential Keras model.

    Names come in Keras's flattened order (for dicts, sorted by key: `model.inputs` order),
    which is the order positional manifest `args` and list `bind`s follow.
    """
    graph = _functional(model)
    inputs = getattr(graph, "_inputs_struct", None)
    outputs = getattr(graph, "_outputs_struct", None)
    if inputs is None or outputs is None:
        raise ModelLoadError(
            f"model {getattr(model, 'name', '?')!r} has no known inputs (a subclassed model "
            "that was never built on symbolic inputs)",
            "build it as a functional model, or call it once on keras.Input tensors before saving",
            where=where,
        )
    input_names = _flat_names(inputs)
    if isinstance(outputs, dict):
        output_names, is_dict, single = _flat_names(outputs), True, False
    elif isinstance(outputs, (list, tuple)):
        output_names, is_dict, single = list(graph.output_names), False, False
    else:
        output_names, is_dict, single = list(graph.output_names)[:1] or ["output_0"], False, True
    return LoadedModel(model, input_names, isinstance(inputs, dict), output_names, is_dict, single)


def _flat_names(struct: Any) -> list[str]:
    """Names of a model's input or output structure in Keras's flattened order."""
    import keras

    if isinstance(struct, dict):
        return list(keras.tree.flatten({k: k for k in struct}))
    flat = struct if isinstance(struct, (list, tuple)) else [struct]
    return [t.name for t in flat]


def input_tensors(loaded: LoadedModel) -> dict[str, Any]:
    """The symbolic `keras.Input` tensor of each model input, keyed by input name."""
    inputs = _functional(loaded.model)._inputs_struct
    if isinstance(inputs, dict):
        return dict(inputs)
    flat = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    return dict(zip(loaded.input_names, flat))


def input_specs(loaded: LoadedModel) -> list[tuple[str, str, tuple]]:
    """(name, dtype, shape) per model input in `input_names` order, `None` for unknown dims."""
    tensors = input_tensors(loaded)
    return [(n, str(tensors[n].dtype), tuple(tensors[n].shape)) for n in loaded.input_names]


def input_ranges(loaded: LoadedModel) -> dict[str, InputRange]:
    """Value ranges the model's first layers imply for its inputs, where they say one.

    A float input read by `Rescaling` takes pixel values (0..255); one read by an adapted
    `Normalization` takes mean ± 2σ of its statistics; an integer input read by an `Embedding`
    (or a layer holding embeddings, e.g. keras_hub's ReversibleEmbedding or
    TokenAndPositionEmbedding) takes ids below the smallest vocabulary it reaches. Nested
    functional models are followed into their matching input.
    """
    graph = _functional(loaded.model)
    found = {}
    for name, tensor in input_tensors(loaded).items():
        stated = _range_for(graph, tensor, np.dtype(str(tensor.dtype)))
        if stated is not None:
            found[name] = stated
    return found


def _range_for(graph: Any, tensor: Any, dtype: np.dtype) -> InputRange | None:
    import keras

    vocab: list[tuple[int, str]] = []
    for layer, position in _consumers(graph, tensor):
        if isinstance(layer, keras.Model) and hasattr(layer, "_inputs_struct"):
            inner = keras.tree.flatten(_functional(layer)._inputs_struct)
            if position < len(inner):
                nested = _range_for(_functional(layer), inner[position], dtype)
                if nested is not None and nested.kind == "ids":
                    vocab.append((int(nested.high) + 1, nested.why))
                elif nested is not None:
                    return nested
            continue
        if dtype.kind == "f" and isinstance(layer, keras.layers.Rescaling):
            return InputRange(0.0, 255.0, f"pixel values: the model reads it with a Rescaling "
                                          f"layer ({layer.name!r})")
        if dtype.kind == "f" and isinstance(layer, keras.layers.Normalization):
            if getattr(layer, "mean", None) is not None and getattr(layer, "variance", None) is not None:
                mean = np.asarray(layer.mean, np.float64)
                std = np.sqrt(np.asarray(layer.variance, np.float64))
                return InputRange(float((mean - 2 * std).min()), float((mean + 2 * std).max()),
                                  f"mean ± 2σ of the Normalization layer {layer.name!r}")
        if dtype.kind in "iu":
            tables = [sub for sub in layer._flatten_layers()
                      if isinstance(getattr(sub, "input_dim", None), int)]
            if tables:
                smallest = min(tables, key=lambda t: t.input_dim)
                vocab.append((smallest.input_dim, f"ids below the vocabulary of "
                                                  f"{type(smallest).__name__} {smallest.name!r}"))
    if vocab:
        size, why = min(vocab)
        return InputRange(0.0, float(size - 1), f"{why} ({size})", "ids")
    return None


def _consumers(graph: Any, tensor: Any):
    """(layer, position of `tensor` among the layer's inputs) for each layer reading `tensor`."""
    import keras

    for layer in getattr(graph, "_operations", []):
        for node in getattr(layer, "_inbound_nodes", []):
            flat = keras.tree.flatten(node.input_tensors)
            for position, t in enumerate(flat):
                if t is tensor:
                    yield layer, position
