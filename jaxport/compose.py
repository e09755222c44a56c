"""Build a `Program` from an extracted archive: models → `stateless_call`, manifest steps → JAX.

A bare `.keras` file becomes one function `serving_default` with the model's inputs (batch
dim `b`, other unknown dims `d<axis>`, shared across inputs) and outputs. A manifest becomes
one function per `[functions.*]`, each step a model call (optionally nested-vmapped) or a
whitelisted jnp op. Weights are params (`params[model]["trainable"|"non_trainable"]`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

from jaxport.archive import Source
from jaxport.errors import ManifestError, ModelLoadError
from jaxport.keras_models import LoadedModel, input_specs, load_keras_model
from jaxport.manifest import MANIFEST_NAME, FunctionDef, Step
from jaxport.ops import apply_op
from jaxport.program import Function, Program
from jaxport.shapes import infer_outputs
from jaxport.specs import DTYPES, TensorSpec, check_input_shape, parse_spec

_DTYPE_BY_NAME = {v.name: v for v in DTYPES.values()}


def load_program(source: Source, *, trusted: bool) -> Program:
    """Load every model of `source` and compose its functions; output specs are inferred."""
    models = {
        name: load_keras_model(path, trusted=trusted, where=f"models.{name} ({path.name})")
        for name, path in source.models.items()
    }
    params = {name: m.params() for name, m in models.items()}
    if source.manifest is None:
        functions = {"serving_default": _bare_function(models["model"])}
    else:
        functions = {
            name: _manifest_function(fdef, models) for name, fdef in source.manifest.functions.items()
        }
    program = Program(params=params, functions=functions)
    infer_outputs(program)
    return program


def _bare_function(loaded: LoadedModel) -> Function:
    inputs = []
    for name, dtype, shape in input_specs(loaded.model):
        dims = tuple(
            d if d is not None else ("b" if axis == 0 else f"d{axis}") for axis, d in enumerate(shape)
        )
        dtype_name = np.dtype(dtype).name
        if dtype_name not in _DTYPE_BY_NAME:
            raise ModelLoadError(
                f"input {name!r} has dtype {dtype_name}; jaxport supports "
                f"{', '.join(_DTYPE_BY_NAME)}",
                "cast in the model: declare keras.Input(..., dtype='float32') (or another "
                f"supported dtype) and cast inside it if a layer needs {dtype_name}",
                where=f"model {loaded.model.name!r}")
        check_input_shape(name, dims, where=f"model {loaded.model.name!r}")
        inputs.append(TensorSpec(name, _DTYPE_BY_NAME[dtype_name], dims))

    def fn(params: Any, *args: jax.Array) -> dict[str, jax.Array]:
        outs = loaded.call(params["model"], list(args))
        return dict(zip(loaded.output_names, outs))

    return Function("serving_default", inputs, list(loaded.output_names), fn)


def _manifest_function(fdef: FunctionDef, models: dict[str, LoadedModel]) -> Function:
    orders = [
        _check_call(step, models[step.call], f"{MANIFEST_NAME}: functions.{fdef.name}.steps[{i}]")
        if step.call is not None else [0]
        for i, step in enumerate(fdef.steps)
    ]
    input_names = [s.name for s in fdef.inputs]

    def fn(params: Any, *args: jax.Array) -> dict[str, jax.Array]:
        env: dict[str, jax.Array] = dict(zip(input_names, args))
        for step, order in zip(fdef.steps, orders):
            results = _run_step(step, models, params, env)
            env.update(zip(step.bind, (results[i] for i in order)))
        return {out: env[ref] for out, ref in fdef.outputs.items()}

    return Function(fdef.name, list(fdef.inputs), list(fdef.outputs), fn)


def _check_call(step: Step, loaded: LoadedModel, where: str) -> list[int]:
    """Check a call step against the model; return, per bound name, the output index it takes.

    A list `bind` of a dict-output model whose names are the dict's keys binds by key;
    otherwise outputs bind in the model's output order.
    """
    if isinstance(step.args, dict):
        missing = set(loaded.input_names) - set(step.args)
        extra = set(step.args) - set(loaded.input_names)
        if missing or extra:
            raise ManifestError(
                f"args table does not match model {step.call!r}'s inputs {loaded.input_names}"
                + (f"; missing {sorted(missing)}" if missing else "")
                + (f"; unknown {sorted(extra)}" if extra else ""), where=where)
    elif len(step.args) != len(loaded.input_names):
        raise ManifestError(
            f"model {step.call!r} takes {len(loaded.input_names)} input(s) "
            f"{loaded.input_names}, args has {len(step.args)}", where=where)
    n_out = len(loaded.output_names)
    if step.bind_is_list and len(step.bind) != n_out:
        raise ManifestError(
            f"bind has {len(step.bind)} names, model {step.call!r} has {n_out} output(s) "
            f"{loaded.output_names}", where=where)
    if not step.bind_is_list and n_out != 1:
        raise ManifestError(
            f"model {step.call!r} has {n_out} outputs {loaded.output_names}; bind a list of "
            f"{n_out} names", where=where)
    if loaded.output_is_dict and set(step.bind) == set(loaded.output_names):
        return [loaded.output_names.index(b) for b in step.bind]
    return list(range(n_out))


def _run_step(step: Step, models: dict[str, LoadedModel], params: Any,
              env: dict[str, jax.Array]) -> list[jax.Array]:
    args = [env[name] for name in step.arg_names]
    body: Callable[..., Any]
    if step.call is not None:
        loaded = models[step.call]
        model_params = params[step.call]
        keys = list(step.args) if isinstance(step.args, dict) else None

        def body(*xs: jax.Array) -> list[jax.Array]:
            return loaded.call(model_params, dict(zip(keys, xs)) if keys else list(xs))
    else:
        def body(*xs: jax.Array) -> list[jax.Array]:
            return [apply_op(step.op, list(xs), step.params)]

    for level in reversed(step.vmap):  # innermost first, so the outermost wraps last
        out_axes = list(level.out_axes) if isinstance(level.out_axes, tuple) else level.out_axes
        body = jax.vmap(body, in_axes=level.in_axes, out_axes=out_axes)
    return list(body(*args))


def load_function_program(fn: Callable[..., Any], params: Any,
                          inputs: dict[str, str] | list[TensorSpec],
                          name: str = "serving_default") -> Program:
    """A `Program` for an arbitrary JAX function `fn(params, *inputs)` (the library/CLI path).

    `inputs` maps names to spec strings (`{"xs": "f32[b,2]"}`) in call order. `fn` may return
    an array, a tuple/list of arrays (named `output_0`, …) or a dict of arrays.
    """
    specs = (
        [parse_spec(k, v, where="inputs") for k, v in inputs.items()]
        if isinstance(inputs, dict) else list(inputs)
    )

    def wrapped(p: Any, *xs: jax.Array) -> dict[str, jax.Array]:
        out = fn(p, *xs)
        if isinstance(out, dict):
            return dict(out)
        flat = list(out) if isinstance(out, (list, tuple)) else [out]
        return {f"output_{i}": o for i, o in enumerate(flat)}

    program = Program(params=params, functions={name: Function(name, specs, [], wrapped)})
    infer_outputs(program)  # fills the output names too
    return program
