"""Build a `Program` from an extracted archive: models → `stateless_call`, manifest steps → JAX.

A bare `.keras` file becomes one function `serving_default` with the model's inputs (batch
dim `b`, other unknown dims `d<axis>`, shared across inputs) and outputs. A manifest becomes
one function per `[functions.*]`, each step a model call (optionally nested-vmapped) or a
whitelisted jnp op. Weights are params (`params[model]["trainable"|"non_trainable"]`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jax
import numpy as np

from jaxport.archive import Source
from jaxport.errors import ManifestError, ModelLoadError
from jaxport.keras_models import LoadedModel, input_ranges, input_specs, load_keras_model
from jaxport.manifest import MANIFEST_NAME, FunctionDef, Step
from jaxport.ops import apply_op
from jaxport.program import Function, Program
from jaxport.shapes import infer_outputs
from jaxport.specs import DTYPES, TensorSpec, check_input_shape, parse_range, parse_spec
from jaxport.timings import Timings

_DTYPE_BY_NAME = {v.name: v for v in DTYPES.values()}


def load_program(source: Source, *, trusted: bool, timings: Timings | None = None) -> Program:
    """Load every model of `source` and compose its functions; output specs are inferred.

    `timings` gets the stages `load` (the models) and `compose` (functions, output tracing)."""
    timings = timings or Timings()
    with timings.stage("load"):
        models = {
            name: load_keras_model(path, trusted=trusted, where=f"models.{name} ({path.name})")
            for name, path in source.models.items()
        }
    with timings.stage("compose"):
        return _compose(source, models)


def _compose(source: Source, models: dict[str, LoadedModel]) -> Program:
    params = {name: m.params() for name, m in models.items()}
    if source.manifest is None:
        functions = {"serving_default": _bare_function(models["model"])}
    else:
        functions = {
            name: _manifest_function(fdef, models) for name, fdef in source.manifest.functions.items()
        }
    weight_names = {
        (name, group, i): f"{name}: {v.path}"
        for name, m in models.items()
        for group, variables in (("trainable", m.model.trainable_variables),
                                 ("non_trainable", m.model.non_trainable_variables))
        for i, v in enumerate(variables)
    }
    program = Program(params=params, functions=functions, weight_names=weight_names)
    infer_outputs(program)
    return program


def _bare_function(loaded: LoadedModel) -> Function:
    inputs = []
    for name, dtype, shape in input_specs(loaded):
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
        outs = loaded.call(params["model"], dict(zip(loaded.input_names, args)))
        return dict(zip(loaded.output_names, outs))

    return Function("serving_default", inputs, list(loaded.output_names), fn,
                    ranges=input_ranges(loaded))


def _manifest_function(fdef: FunctionDef, models: dict[str, LoadedModel]) -> Function:
    bindings = [
        _check_call(step, models[step.call], f"{MANIFEST_NAME}: functions.{fdef.name}.steps[{i}]")
        if step.call is not None else _Binding([], [0])
        for i, step in enumerate(fdef.steps)
    ]
    input_names = [s.name for s in fdef.inputs]

    def fn(params: Any, *args: jax.Array) -> dict[str, jax.Array]:
        env: dict[str, jax.Array] = dict(zip(input_names, args))
        for step, binding in zip(fdef.steps, bindings):
            results = _run_step(step, binding, models, params, env)
            env.update(zip(step.bind, (results[i] for i in binding.outputs)))
        return {out: env[ref] for out, ref in fdef.outputs.items()}

    return Function(fdef.name, list(fdef.inputs), list(fdef.outputs), fn,
                    ranges=_manifest_ranges(fdef, models, bindings))


def _manifest_ranges(fdef: FunctionDef, models: dict[str, LoadedModel],
                     bindings: list["_Binding"]) -> dict:
    """Stated `range`s, else what the first model that reads a function input directly implies."""
    ranges = dict(fdef.ranges)
    implied = {name: input_ranges(m) for name, m in models.items()
               if any(step.call == name for step in fdef.steps)}
    inputs = {s.name for s in fdef.inputs}
    for step, binding in zip(fdef.steps, bindings):
        for arg, model_input in zip(step.arg_names, binding.inputs):
            if step.call is not None and arg in inputs and model_input in implied[step.call]:
                ranges.setdefault(arg, implied[step.call][model_input])
    return ranges


@dataclass(frozen=True)
class _Binding:
    """How one call step meets its model: the model input each arg feeds, the output each bind takes."""

    inputs: list[str]  # per arg (in `step.arg_names` order), the model input name it feeds
    outputs: list[int]  # per bound name, the index into the model's `output_names`


def _check_call(step: Step, loaded: LoadedModel, where: str) -> _Binding:
    """Check a call step against the model and say how args and binds map onto it.

    Args: a table binds by key. A list whose names are exactly the model's input names binds by
    name, in any order; any other list is positional in `model.inputs` order (Keras's flattened
    order: for dict-input models, sorted by name). A list that names some model inputs at other
    positions is ambiguous and refused. Binds: a list of a dict-output model's keys binds by
    key; otherwise outputs bind in `model.outputs` order.
    """
    names = loaded.input_names
    if isinstance(step.args, dict):
        missing = set(names) - set(step.args)
        extra = set(step.args) - set(names)
        if missing or extra:
            raise ManifestError(
                f"args table does not match model {step.call!r}'s inputs {names}"
                + (f"; missing {sorted(missing)}" if missing else "")
                + (f"; unknown {sorted(extra)}" if extra else ""), where=where)
        inputs = list(step.args)
    elif len(step.args) != len(names):
        raise ManifestError(
            f"model {step.call!r} takes {len(names)} input(s) {names}, args has "
            f"{len(step.args)}", where=where)
    elif set(step.args) == set(names):
        inputs = list(step.args)
    else:
        misplaced = [a for i, a in enumerate(step.args) if a in names and names[i] != a]
        if misplaced:
            table = ", ".join(f'{n} = "..."' for n in names)
            raise ManifestError(
                f"args {list(step.args)} name model {step.call!r}'s input(s) {misplaced} at "
                f"other positions than its positional order {names}, so it is unclear which "
                "input each arg feeds",
                f"use the table form, args = {{ {table} }}", where=where)
        inputs = list(names)
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
        return _Binding(inputs, [loaded.output_names.index(b) for b in step.bind])
    return _Binding(inputs, list(range(n_out)))


def _run_step(step: Step, binding: _Binding, models: dict[str, LoadedModel], params: Any,
              env: dict[str, jax.Array]) -> list[jax.Array]:
    args = [env[name] for name in step.arg_names]
    body: Callable[..., Any]
    if step.call is not None:
        loaded = models[step.call]
        model_params = params[step.call]

        def body(*xs: jax.Array) -> list[jax.Array]:
            return loaded.call(model_params, dict(zip(binding.inputs, xs)))
    else:
        def body(*xs: jax.Array) -> list[jax.Array]:
            return [apply_op(step.op, list(xs), step.params)]

    for level in reversed(step.vmap):  # innermost first, so the outermost wraps last
        out_axes = list(level.out_axes) if isinstance(level.out_axes, tuple) else level.out_axes
        body = jax.vmap(body, in_axes=level.in_axes, out_axes=out_axes)
    return list(body(*args))


def load_function_program(fn: Callable[..., Any], params: Any,
                          inputs: dict[str, str] | list[TensorSpec],
                          name: str = "serving_default",
                          ranges: dict[str, tuple[float, float]] | None = None) -> Program:
    """A `Program` for an arbitrary JAX function `fn(params, *inputs)` (the library/CLI path).

    `inputs` maps names to spec strings (`{"xs": "f32[b,2]"}`) in call order; `ranges` maps
    some of them to `(low, high)` for generated verification inputs. `fn` may return an array,
    a tuple/list of arrays (named `output_0`, …) or a dict of arrays.
    """
    specs = (
        [parse_spec(k, v, where="inputs") for k, v in inputs.items()]
        if isinstance(inputs, dict) else list(inputs)
    )
    by_name = {s.name: s for s in specs}
    unknown = sorted(set(ranges or {}) - set(by_name))
    if unknown:
        raise ManifestError(f"ranges name unknown input(s) {unknown}", f"inputs: {sorted(by_name)}")
    stated = {k: parse_range(k, list(v), by_name[k], where="ranges", why="stated in ranges=") for k, v in (ranges or {}).items()}

    def wrapped(p: Any, *xs: jax.Array) -> dict[str, jax.Array]:
        out = fn(p, *xs)
        if isinstance(out, dict):
            return dict(out)
        flat = list(out) if isinstance(out, (list, tuple)) else [out]
        return {f"output_{i}": o for i, o in enumerate(flat)}

    program = Program(params=params,
                      functions={name: Function(name, specs, [], wrapped, ranges=stated)})
    infer_outputs(program)  # fills the output names too
    return program
