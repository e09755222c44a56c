"""`jaxport.toml`: parse and validate the manifest of a composite archive.

Validation is complete before any model is loaded: every name a step uses is bound earlier,
every `call` names a model, every `op` is whitelisted, every vmap level is well formed. Errors
name the field (`functions.serving_default.steps[1].args`) and say how to fix it.

A manifest is bounded before it costs time: the limits below (docs/archive.md, "Limits") cap
nesting and counts, and are checked before the parts they bound are parsed.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from typing import Any

from jaxport.errors import ManifestError
from jaxport.ops import OPS, check_op_params
from jaxport.specs import InputRange, TensorSpec, parse_range, parse_spec

MANIFEST_NAME = "jaxport.toml"
SAMPLES_NAME = "samples.npz"
_STEP_KEYS = {"bind", "call", "op", "args", "vmap"}

MAX_NESTING_DEPTH = 16  # tables and arrays inside one another
MAX_DOTS_PER_LINE = 32  # a dotted key or table header costs tomllib time quadratic in its parts
MAX_MODELS = 32
MAX_FUNCTIONS = 16
MAX_INPUTS_PER_FUNCTION = 32
MAX_STEPS_PER_FUNCTION = 100


@dataclass(frozen=True)
class VmapLevel:
    """One `jax.vmap` level: `in_axes` per argument (None = broadcast), `out_axes` int or list."""

    in_axes: tuple[int | None, ...]
    out_axes: int | tuple[int, ...]


@dataclass
class Step:
    bind: list[str]
    args: list[str] | dict[str, str]
    call: str | None = None
    op: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # op keyword params
    vmap: list[VmapLevel] = field(default_factory=list)  # outermost first
    bind_is_list: bool = False

    @property
    def arg_names(self) -> list[str]:
        return list(self.args.values()) if isinstance(self.args, dict) else list(self.args)


@dataclass
class FunctionDef:
    name: str
    inputs: list[TensorSpec]
    outputs: dict[str, str]  # output name -> bound name
    steps: list[Step]
    ranges: dict[str, InputRange] = field(default_factory=dict)  # stated `range`s, by input


@dataclass
class Manifest:
    models: dict[str, str]  # model name -> path inside the archive
    functions: dict[str, FunctionDef]


def parse_manifest(text: str) -> Manifest:
    """Parse and validate manifest text; raise `ManifestError` naming the offending field."""
    _check_lines(text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{MANIFEST_NAME} is not valid TOML: {exc}", "fix the TOML syntax") from None
    except RecursionError:  # arrays or inline tables nested hundreds deep
        raise _too_deep() from None
    _check_nesting(data)
    if data.get("format") != 1:
        raise ManifestError(
            f"format = {data.get('format')!r} is not supported", 'write `format = 1` at the top',
            where=MANIFEST_NAME,
        )
    unknown = set(data) - {"format", "models", "functions"}
    if unknown:
        raise ManifestError(f"unknown top-level key(s) {sorted(unknown)}",
                            "allowed: format, models, functions", where=MANIFEST_NAME)
    models = _table(data, "models", MANIFEST_NAME)
    _check_count(models, MAX_MODELS, "models", "MAX_MODELS", MANIFEST_NAME)
    for name, path in models.items():
        if not isinstance(path, str) or not path.endswith(".keras"):
            raise ManifestError(f"models.{name} must be the path of a .keras file, got {path!r}",
                                where=MANIFEST_NAME)
    functions_data = _table(data, "functions", MANIFEST_NAME)
    _check_count(functions_data, MAX_FUNCTIONS, "functions", "MAX_FUNCTIONS", MANIFEST_NAME)
    functions = {name: _parse_function(name, body, models) for name, body in functions_data.items()}
    return Manifest(models=models, functions=functions)


def _check_lines(text: str) -> None:
    """Refuse a line with more than MAX_DOTS_PER_LINE dots before tomllib sees it (a dotted
    key of n parts costs it n² memory). TOML lines end at \\n; dots in strings count too."""
    for number, line in enumerate(text.split("\n"), 1):
        if line.count(".") > MAX_DOTS_PER_LINE:
            raise ManifestError(
                f"line {number} has {line.count('.')} dots, over the limit of "
                f"{MAX_DOTS_PER_LINE} (MAX_DOTS_PER_LINE)",
                "use short keys and table headers (see docs/archive.md)", where=MANIFEST_NAME)


def _too_deep() -> ManifestError:
    return ManifestError(f"tables and arrays are nested deeper than {MAX_NESTING_DEPTH} "
                         "(MAX_NESTING_DEPTH)",
                         "a manifest needs a few levels (functions.f.steps[i].vmap); see "
                         "docs/archive.md", where=MANIFEST_NAME)


def _check_nesting(value: Any, depth: int = 0) -> None:
    """Raise `ManifestError` if tables and arrays nest deeper than MAX_NESTING_DEPTH."""
    if isinstance(value, (dict, list)):
        if depth >= MAX_NESTING_DEPTH:
            raise _too_deep()
        for item in value.values() if isinstance(value, dict) else value:
            _check_nesting(item, depth + 1)


def _check_count(items: dict | list, limit: int, what: str, constant: str, where: str) -> None:
    if len(items) > limit:
        raise ManifestError(f"{len(items)} {what}, over the limit of {limit} ({constant})",
                            "split the work across several archives (see docs/archive.md)",
                            where=where)


def _table(data: dict, key: str, where: str) -> dict:
    value = data.get(key)
    if not isinstance(value, dict) or not value:
        raise ManifestError(f"[{key}] is missing or empty", f"add a [{key}] table", where=where)
    return value


def _parse_function(name: str, body: Any, models: dict[str, str]) -> FunctionDef:
    where = f"{MANIFEST_NAME}: functions.{name}"
    if not isinstance(body, dict):
        raise ManifestError("must be a table", where=where)
    unknown = set(body) - {"inputs", "outputs", "steps"}
    if unknown:
        raise ManifestError(f"unknown key(s) {sorted(unknown)}", "allowed: inputs, outputs, steps",
                            where=where)
    inputs_data = body.get("inputs")
    if not isinstance(inputs_data, dict) or not inputs_data:
        raise ManifestError("inputs is missing or empty",
                            'e.g. inputs = { images = "f32[b,224,224,3]" }', where=where)
    _check_count(inputs_data, MAX_INPUTS_PER_FUNCTION, "inputs", "MAX_INPUTS_PER_FUNCTION", where)
    inputs, ranges = [], {}
    for key, value in inputs_data.items():
        spec, stated = _parse_input(key, value, f"{where}.inputs")
        inputs.append(spec)
        if stated is not None:
            ranges[key] = stated
    steps_data = body.get("steps")
    if not isinstance(steps_data, list) or not steps_data:
        raise ManifestError("has no [[functions.%s.steps]]" % name,
                            "add at least one step with `call` or `op`", where=where)
    _check_count(steps_data, MAX_STEPS_PER_FUNCTION, "steps", "MAX_STEPS_PER_FUNCTION", where)
    bound = {s.name for s in inputs}
    steps = []
    for i, step_data in enumerate(steps_data):
        step = _parse_step(step_data, f"{where}.steps[{i}]", models, bound)
        bound.update(step.bind)
        steps.append(step)
    outputs = body.get("outputs")
    if not isinstance(outputs, dict) or not outputs:
        raise ManifestError("outputs is missing or empty",
                            'e.g. outputs = { score = "score" } (output name -> bound name)',
                            where=where)
    for out_name, ref in outputs.items():
        if ref not in bound:
            raise ManifestError(f"outputs.{out_name} refers to {ref!r}, which no step binds",
                                f"bound names: {sorted(bound)}", where=where)
    return FunctionDef(name=name, inputs=inputs, outputs=dict(outputs), steps=steps, ranges=ranges)


def _parse_input(name: str, value: Any, where: str) -> tuple[TensorSpec, InputRange | None]:
    """`name = "f32[b,3]"`, or `name = { spec = "f32[b,3]", range = [0, 1] }`."""
    if not isinstance(value, dict):
        return parse_spec(name, value, where=where), None
    unknown = set(value) - {"spec", "range"}
    if unknown or "spec" not in value:
        raise ManifestError(f"input {name!r}: a table input takes `spec` and optional `range`"
                            + (f", not {sorted(unknown)}" if unknown else ""),
                            f'e.g. {name} = {{ spec = "f32[b,224,224,3]", range = [0, 255] }}',
                            where=where)
    spec = parse_spec(name, value["spec"], where=where)
    stated = parse_range(name, value["range"], spec, where=where) if "range" in value else None
    return spec, stated


def _parse_step(data: Any, where: str, models: dict[str, str], bound: set[str]) -> Step:
    if not isinstance(data, dict):
        raise ManifestError("a step must be a table", where=where)
    if ("call" in data) == ("op" in data):
        raise ManifestError("a step needs exactly one of `call` (a model) or `op` (a jnp op)",
                            where=where)
    bind = data.get("bind")
    bind_is_list = isinstance(bind, list)
    names = bind if bind_is_list else [bind]
    if not names or not all(isinstance(b, str) and b.isidentifier() for b in names):
        raise ManifestError(f"bind must be a name or a list of names, got {bind!r}", where=where)
    args = data.get("args")
    if isinstance(args, str):
        args = [args]
    if not isinstance(args, (list, dict)) or not args:
        raise ManifestError("args must be a non-empty list of names or a table of name = bound",
                            where=where)
    for ref in args.values() if isinstance(args, dict) else args:
        if ref not in bound:
            raise ManifestError(f"args refers to {ref!r}, which is not an input or an earlier bind",
                                f"bound so far: {sorted(bound)}", where=where)
    call, op = data.get("call"), data.get("op")
    params = {k: v for k, v in data.items() if k not in _STEP_KEYS}
    if call is not None:
        if call not in models:
            raise ManifestError(f"call = {call!r} names no model",
                                f"models: {sorted(models)}", where=where)
        if params:
            raise ManifestError(f"unknown key(s) {sorted(params)} on a call step",
                                "allowed: bind, call, args, vmap", where=where)
    else:
        if op not in OPS:
            raise ManifestError(f"op = {op!r} is not a whitelisted op",
                                f"available ops: {', '.join(sorted(OPS))}", where=where)
        if isinstance(args, dict):
            raise ManifestError("an op takes args as a list", where=where)
        check_op_params(op, params, len(args), where)
        if bind_is_list:
            raise ManifestError("an op binds one name", where=where)
    n_args = len(args)
    vmap = _parse_vmap(data.get("vmap"), n_args, where)
    return Step(bind=names, args=args, call=call, op=op, params=params, vmap=vmap,
                bind_is_list=bind_is_list)


def _parse_vmap(data: Any, n_args: int, where: str) -> list[VmapLevel]:
    if data is None:
        return []
    levels = data if isinstance(data, list) else [data]
    out = []
    for i, level in enumerate(levels):
        here = f"{where}.vmap" + (f"[{i}]" if isinstance(data, list) else "")
        if not isinstance(level, dict) or set(level) - {"in_axes", "out_axes"}:
            raise ManifestError("a vmap level is a table { in_axes = [...], out_axes = ... }",
                                where=here)
        in_axes = level.get("in_axes", 0)
        if isinstance(in_axes, int):
            in_axes = [in_axes] * n_args
        if not isinstance(in_axes, list) or len(in_axes) != n_args or not all(
            isinstance(a, int) or a == "none" for a in in_axes
        ):
            raise ManifestError(
                f"in_axes must be an int or a list of {n_args} ints (\"none\" = not mapped), "
                f"got {level.get('in_axes')!r}",
                where=here,
            )
        out_axes = level.get("out_axes", 0)
        if isinstance(out_axes, list) and all(isinstance(a, int) for a in out_axes):
            out_axes = tuple(out_axes)
        elif not isinstance(out_axes, int):
            raise ManifestError(f"out_axes must be an int or a list of ints, got {out_axes!r}",
                                where=here)
        out.append(VmapLevel(tuple(None if a == "none" else a for a in in_axes), out_axes))
    return out
