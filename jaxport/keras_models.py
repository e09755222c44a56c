"""Loading `.keras` files and calling them as pure JAX functions through `stateless_call`."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jaxport.errors import ModelLoadError

os.environ.setdefault("KERAS_BACKEND", "jax")


@dataclass
class LoadedModel:
    """A Keras model plus the structure of its inputs and outputs."""

    model: Any
    input_names: list[str]
    input_is_dict: bool
    output_names: list[str]
    output_is_dict: bool
    output_is_single: bool

    def params(self) -> dict[str, list]:
        """Weights as a params pytree: trainable and non-trainable, never baked in as constants."""
        return {
            "trainable": [v.value for v in self.model.trainable_variables],
            "non_trainable": [v.value for v in self.model.non_trainable_variables],
        }

    def call(self, params: dict[str, list], args: list | dict) -> list:
        """Run `stateless_call(..., training=False)`; return outputs as a list in `output_names` order."""
        if self.input_is_dict:
            inputs = dict(args) if isinstance(args, dict) else dict(zip(self.input_names, args))
        elif isinstance(args, dict):
            inputs = [args[n] for n in self.input_names]
        else:
            inputs = list(args)
        if not self.input_is_dict and len(inputs) == 1:
            inputs = inputs[0]
        out, _ = self.model.stateless_call(
            params["trainable"], params["non_trainable"], inputs, training=False
        )
        if self.output_is_dict:
            return [out[k] for k in self.output_names]
        return [out] if self.output_is_single else list(out)


def _import_keras():
    import keras

    if keras.backend.backend() != "jax":
        raise ModelLoadError(
            f"Keras is running on the {keras.backend.backend()!r} backend",
            "set KERAS_BACKEND=jax before anything imports keras",
        )
    if importlib.util.find_spec("keras_hub") is not None:
        import keras_hub  # noqa: F401  registers keras_hub's layers for deserialization
    return keras


def load_keras_model(path: Path, *, trusted: bool, where: str = "") -> LoadedModel:
    """Load a `.keras` file (`safe_mode` unless trusted) and describe its inputs and outputs."""
    keras = _import_keras()
    where = where or Path(path).name
    try:
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


def describe(model: Any, where: str = "") -> LoadedModel:
    """Read the input/output structure of a built functional-style Keras model."""
    inputs = getattr(model, "_inputs_struct", None)
    outputs = getattr(model, "_outputs_struct", None)
    if inputs is None or outputs is None:
        raise ModelLoadError(
            f"model {getattr(model, 'name', '?')!r} has no known inputs (a subclassed model "
            "that was never built on symbolic inputs)",
            "build it as a functional model, or call it once on keras.Input tensors before saving",
            where=where,
        )
    if isinstance(inputs, dict):
        input_names, input_is_dict = list(inputs), True
    else:
        flat = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        input_names, input_is_dict = [t.name for t in flat], False
    if isinstance(outputs, dict):
        output_names, is_dict, single = list(outputs), True, False
    elif isinstance(outputs, (list, tuple)):
        output_names, is_dict, single = list(model.output_names), False, False
    else:
        output_names, is_dict, single = list(model.output_names)[:1] or ["output_0"], False, True
    return LoadedModel(model, input_names, input_is_dict, output_names, is_dict, single)


def input_specs(model: Any) -> list[tuple[str, str, tuple]]:
    """(name, dtype, shape) per model input, shape with `None` for unknown dims."""
    inputs = model._inputs_struct
    flat = list(inputs.values()) if isinstance(inputs, dict) else (
        inputs if isinstance(inputs, (list, tuple)) else [inputs])
    names = list(inputs) if isinstance(inputs, dict) else [t.name for t in flat]
    return [(n, str(t.dtype), tuple(t.shape)) for n, t in zip(names, flat)]
