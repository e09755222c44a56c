"""ONNX target: each program function as one `.onnx` file made by jax2onnx, run in onnxruntime.

Contract: `export_onnx(function, params, out_path, opset=...)` traces `function.fn` with the
params closed over and writes one self-contained ONNX model (no external data file):

- graph inputs named and ordered as `function.inputs`, outputs as `function.outputs`;
- every symbolic dim a named `dim_param` (`b`, `d1`; a derived dim such as `2*s` by its
  expression), traced under the function's constraints (`d1 <= 16`);
- the params as initializers.

Layout under OUT: `model.onnx` for a one-function program, `onnx/<function>.onnx` for several.
A primitive jax2onnx cannot convert (no plugin, or a form its plugin refuses) is a
`LoweringError` naming it, its params and the user's `file:line`.

jax2onnx 0.17 writes any `reduce_window_max` (Keras's MaxPooling) as one `MaxPool` pooling
over every axis of the operand, batch and channels included: four or more spatial dims, which
onnxruntime does not run. `pool_over_window_axes` rewrites those nodes to pool over the axes
the window spans only; report.json counts the rewrites under `rewrites`. Its `reshape`
plugin ignores the primitive's `dimensions` (see `_transposing_reshape`).
"""

from __future__ import annotations

import functools
import shutil
import traceback
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable

import numpy as np

from jaxport.errors import JaxportError, LoweringError, TargetError, first_line
from jaxport.program import Function, Params
from jaxport.targets.base import BuildContext, Target, register
from jaxport.verify.compare import Parity

MAX_PROTO_BYTES = 2 ** 31 - 1  # protobuf's limit on one serialized message
_ORT_MAX_POOL_DIMS = 3  # onnxruntime's MaxPool kernels pool over 1, 2 or 3 spatial dims
_HINT_REFUSED = (
    "jax2onnx cannot express this primitive in ONNX; rewrite that code with other jnp/lax "
    "operations, or build the other targets"
)


@functools.cache
def _to_onnx() -> Callable[..., Any]:
    """jax2onnx's `to_onnx`, with only its plugins for JAX's own primitives loaded.

    Importing the plugins must leave JAX as it was (see the jnp.cumsum note below).

    `to_onnx` would first import every plugin module of the package: those for Flax, Equinox
    and dm_pix modules and its example models too, half a minute, none of which a jaxpr of
    Keras or plain JAX reaches. We import the `jax` plugin tree (jax.lax, jax.numpy, jax.nn,
    ...) and mark discovery done, as its own `import_all_plugins` does when it finishes.
    """
    import jax.numpy as jnp
    from jax2onnx import to_onnx
    from jax2onnx.plugins import plugin_system

    cumsum = jnp.cumsum
    plugin_system._import_tree(Path(plugin_system.__file__).parent / "jax", "jax2onnx.plugins.jax")
    plugin_system._already_imported_plugins = True
    # Its jnp.cumsum plugin replaces jnp.cumsum for the whole process with a function binding
    # its own primitive, which every other target and the JAX reference would then trace.
    jnp.cumsum = cumsum
    registry = plugin_system.PLUGIN_REGISTRY
    registry["reshape"] = _transposing_reshape(registry["reshape"], registry["transpose"])
    return to_onnx


def _transposing_reshape(reshape: Any, transpose: Any) -> Any:
    """jax2onnx's `reshape` plugin, made to honour the primitive's `dimensions`.

    `lax.reshape(x, sizes, dimensions)` transposes x by `dimensions` before reshaping; JAX's
    batching rules emit it (a convolution vmapped over a non-leading axis folds that axis into
    the batch this way). jax2onnx 0.17 ignores `dimensions`, which computes another function
    whenever the folded dims are not both of size 1. This plugin lowers such an equation as
    the `transpose` equation it implies followed by a plain reshape, each by jax2onnx's plugin.
    """
    from jax import lax
    from jax.extend import core as jcore

    class TransposingReshape(type(reshape)):
        def lower(self, ctx: Any, eqn: Any) -> None:
            dims = eqn.params.get("dimensions")
            if dims is None:
                return super().lower(ctx, eqn)
            x = eqn.invars[0]
            moved = jcore.Var(x.aval.update(shape=tuple(x.aval.shape[d] for d in dims)))
            transpose.lower(ctx, jcore.new_jaxpr_eqn([x], [moved], lax.transpose_p,
                                                     {"permutation": tuple(dims)}, eqn.effects,
                                                     eqn.source_info))
            return super().lower(ctx, eqn.replace(invars=[moved, *eqn.invars[1:]],
                                                  params={**eqn.params, "dimensions": None}))

    plugin = TransposingReshape()
    plugin.__dict__.update(reshape.__dict__)
    return plugin


def converts(primitive: str) -> bool:
    """Whether jax2onnx has a converter for `primitive` (some forms may still be refused)."""
    return primitive in _plugins()


def _plugins() -> dict[str, Any]:
    """The jax2onnx plugin table: primitive name -> plugin (loaded by `_to_onnx`)."""
    _to_onnx()
    from jax2onnx.plugins.plugin_system import PLUGIN_REGISTRY

    return PLUGIN_REGISTRY


def export_onnx(function: Function, params: Params, out_path: Path, *,
                opset: int) -> tuple[Path, int]:
    """Write `function` (params closed over) as an ONNX model to `out_path`.

    Returns the path and the number of MaxPool nodes `pool_over_window_axes` rewrote.
    Raises `LoweringError` for a primitive jax2onnx cannot convert and `TargetError` (stage
    "onnx") when the conversion fails otherwise or the model cannot be written.
    """
    from jaxport.shapes import symbolic_args

    names = [s.name for s in function.inputs]

    def apply(*inputs: Any) -> tuple:
        out = function.fn(params, *inputs)
        return tuple(out[k] for k in function.outputs)

    try:
        model = _to_onnx()(apply, symbolic_args(function), model_name=function.name, opset=opset,
                           input_names=names, output_names=list(function.outputs))
    except Exception as exc:  # noqa: BLE001 - jax2onnx raises bare NotImplementedError and others
        raise _refusal(exc, function) from None
    rewritten = pool_over_window_axes(model)
    _label_dims(model, function)
    if model.ByteSize() > MAX_PROTO_BYTES:
        raise TargetError(f"function {function.name!r}: the ONNX model is over 2 GiB",
                          "one ONNX file holds at most 2 GiB of weights; build the other "
                          "targets", stage="onnx")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(model.SerializeToString())
    return out_path, rewritten


def _label_dims(model: Any, function: Function) -> None:
    """Give the graph's inputs and outputs the dims of the function's specs.

    jax2onnx labels a derived output dim by one of its symbols (`s` for the `2*s` of a
    concatenation); the specs (report.json's `functions`) are what the symbolic trace
    (`jaxport.shapes.trace`) computed.
    """
    graph = model.graph
    specs = [*function.inputs, *function.output_specs]
    values = [*graph.input, *graph.output]
    if [v.name for v in values] != [s.name for s in specs]:
        raise TargetError(
            f"function {function.name!r}: jax2onnx named the graph's inputs and outputs "
            f"{[v.name for v in values]}, not {[s.name for s in specs]}",
            "this is a jaxport bug; please report it with the model", stage="onnx")
    for value, spec in zip(values, specs):
        dims = value.type.tensor_type.shape.dim
        if len(dims) != len(spec.shape):
            raise TargetError(f"function {function.name!r}: jax2onnx gave {value.name!r} rank "
                              f"{len(dims)}, not {len(spec.shape)}", stage="onnx")
        for dim, want in zip(dims, spec.shape):
            dim.Clear()
            if isinstance(want, int):
                dim.dim_value = want
            else:
                dim.dim_param = want


def _failing_eqn(exc: BaseException) -> Any:
    """The jaxpr equation jax2onnx was converting when `exc` was raised, if any.

    jax2onnx's dispatcher holds the equation it lowers in a local named `eqn`; the innermost
    frame holding one is the equation that failed (inside a scan or cond body, the inner one).
    """
    from jax.extend import core as jcore

    found = None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        eqn = frame.f_locals.get("eqn")
        if isinstance(eqn, jcore.JaxprEqn):
            found = eqn
    return found


def _refusal(exc: BaseException, function: Function) -> JaxportError:
    from jaxport.eqns import location, scope, short_params

    eqn = _failing_eqn(exc)
    if eqn is None:
        return TargetError(f"jax2onnx failed on function {function.name!r}: "
                           f"{type(exc).__name__}: {first_line(exc)}",
                           "this may be a jax2onnx limitation; report the model", stage="onnx")
    name = eqn.primitive.name
    why = "" if name not in _plugins() else f": {first_line(exc)}"
    return LoweringError(
        f"primitive {name} ({short_params(eqn.params)}) at {location(eqn)} has no ONNX "
        f"conversion in jax2onnx {version('jax2onnx')}{why}",
        _HINT_REFUSED + scope(eqn))


def pool_over_window_axes(model: Any) -> int:
    """Rewrite jax2onnx's MaxPools over more than 3 dims to pool over the window's axes only.

    jax2onnx lowers `reduce_window_max` on a rank-r operand x as
    `Squeeze(MaxPool(Unsqueeze(Unsqueeze(x, 0), 1)), [0, 1])` with an r-dim kernel. The axes
    the window does not span (kernel, stride and dilation 1, no padding: batch, channels, vmap
    axes) are moved to the front and merged into the MaxPool's N axis (C = 1), the others are
    its spatial axes; after pooling the shape is restored and the axes moved back. Nodes that
    do not have that shape, or whose window spans more than 3 axes, are left as they are.
    Returns the number of MaxPool nodes rewritten (top-level graph only).
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output}
    uses: dict[str, list[int]] = {}
    for i, node in enumerate(graph.node):
        for name in node.input:
            uses.setdefault(name, []).append(i)
    graph_outputs = {o.name for o in graph.output}

    def only_use(name: str) -> int | None:
        found = uses.get(name, [])
        return found[0] if len(found) == 1 and name not in graph_outputs else None

    def ints(name: str) -> list[int] | None:
        """The values of a constant int tensor (an initializer or a Constant node)."""
        for init in graph.initializer:
            if init.name == name:
                return numpy_helper.to_array(init).astype(int).ravel().tolist()
        if (i := producer.get(name)) is not None and graph.node[i].op_type == "Constant":
            return numpy_helper.to_array(graph.node[i].attribute[0].t).astype(int).ravel().tolist()
        return None

    replaced: dict[int, list] = {}  # index of the Squeeze -> nodes that take its place
    dropped: set[int] = set()
    constant = f"{graph.name or 'graph'}/jaxport_pool_n1"  # the [-1, 1] head of the new shape
    for index, node in enumerate(graph.node):
        if node.op_type != "MaxPool":
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        kernel = list(attrs.get("kernel_shape", []))
        r = len(kernel)
        if r <= _ORT_MAX_POOL_DIMS or attrs.get("ceil_mode", 0) or attrs.get("auto_pad", b"NOTSET") != b"NOTSET":
            continue
        strides = list(attrs.get("strides", [1] * r))
        dilations = list(attrs.get("dilations", [1] * r))
        pads = list(attrs.get("pads", [0] * 2 * r))
        inner = producer.get(node.input[0])
        outer = producer.get(graph.node[inner].input[0]) if inner is not None else None
        squeeze = only_use(node.output[0])
        chain = (inner, outer, squeeze)
        if (None in chain or graph.node[inner].op_type != "Unsqueeze"
                or graph.node[outer].op_type != "Unsqueeze" or graph.node[squeeze].op_type != "Squeeze"
                or ints(graph.node[outer].input[1]) != [0] or ints(graph.node[inner].input[1]) != [1]
                or ints(graph.node[squeeze].input[1]) != [0, 1]
                or only_use(graph.node[outer].output[0]) != inner or only_use(graph.node[inner].output[0]) != index):
            continue
        window = [a for a in range(r) if (kernel[a], strides[a], dilations[a], pads[a], pads[a + r]) != (1, 1, 1, 0, 0)]
        window = window or [r - 1]
        if len(window) > _ORT_MAX_POOL_DIMS:
            continue
        rest = [a for a in range(r) if a not in window]
        perm = rest + window
        source, result = graph.node[outer].input[0], graph.node[squeeze].output[0]
        p = f"{result}/jaxport_pool"
        pool_attrs = {"kernel_shape": [kernel[a] for a in window], "strides": [strides[a] for a in window],
                      "pads": [pads[a] for a in window] + [pads[a + r] for a in window]}
        if any(dilations[a] != 1 for a in window):
            pool_attrs["dilations"] = [dilations[a] for a in window]
        replaced[squeeze] = [
            helper.make_node("Transpose", [source], [f"{p}/moved"], f"{p}/move", perm=perm),
            helper.make_node("Shape", [f"{p}/moved"], [f"{p}/rest_dims"], f"{p}/rest_dims", end=len(rest)),
            helper.make_node("Shape", [f"{p}/moved"], [f"{p}/window_dims"], f"{p}/window_dims", start=len(rest)),
            helper.make_node("Concat", [constant, f"{p}/window_dims"], [f"{p}/merged_shape"], f"{p}/merged_shape", axis=0),
            helper.make_node("Reshape", [f"{p}/moved", f"{p}/merged_shape"], [f"{p}/merged"], f"{p}/merge"),
            helper.make_node("MaxPool", [f"{p}/merged"], [f"{p}/pooled"], f"{p}/maxpool", **pool_attrs),
            helper.make_node("Shape", [f"{p}/pooled"], [f"{p}/pooled_dims"], f"{p}/pooled_dims", start=2),
            helper.make_node("Concat", [f"{p}/rest_dims", f"{p}/pooled_dims"], [f"{p}/split_shape"], f"{p}/split_shape", axis=0),
            helper.make_node("Reshape", [f"{p}/pooled", f"{p}/split_shape"], [f"{p}/split"], f"{p}/split"),
            helper.make_node("Transpose", [f"{p}/split"], [result], f"{p}/restore", perm=np.argsort(perm).tolist()),
        ]
        dropped |= {outer, inner, index}
    if not replaced:
        return 0
    stale = {out for i in dropped for out in graph.node[i].output} | {graph.node[i].output[0] for i in replaced}
    nodes = []
    for i, node in enumerate(graph.node):
        if i in replaced:
            nodes.extend(replaced[i])
        elif i not in dropped:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.append(numpy_helper.from_array(np.array([-1, 1], np.int64), constant))
    kept = [v for v in graph.value_info if v.name not in stale]
    del graph.value_info[:]
    graph.value_info.extend(kept)
    used = {name for node in graph.node for name in node.input}
    unused = [t for t in graph.initializer if t.name not in used and not _used_in_subgraphs(graph, t.name)]
    for tensor in unused:
        graph.initializer.remove(tensor)
    return len(replaced)


def _used_in_subgraphs(graph: Any, name: str) -> bool:
    """Whether a node of a subgraph (a Loop or If body) of `graph` reads `name`."""
    from onnx import AttributeProto

    for node in graph.node:
        for attr in node.attribute:
            subgraphs = [attr.g] if attr.type == AttributeProto.GRAPH else list(attr.graphs)
            for sub in subgraphs:
                if any(name in n.input for n in sub.node) or _used_in_subgraphs(sub, name):
                    return True
    return False


class OnnxRunner:
    """One onnxruntime CPU session of an `.onnx` file; runs it on named numpy inputs."""

    def __init__(self, path: Path, num_threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors reach us as exceptions; no warnings on stderr
        self.path = Path(path)
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own pybind exception types
            raise TargetError(f"onnxruntime cannot load {self.path.name}: {first_line(exc)}",
                              "the ONNX model uses an operator form onnxruntime lacks; report "
                              "the model", stage="verify") from None
        self.inputs = [i.name for i in self._session.get_inputs()]
        self.outputs = [o.name for o in self._session.get_outputs()]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            values = self._session.run(None, {name: inputs[name] for name in self.inputs})
        except Exception as exc:  # noqa: BLE001 - see __init__
            raise TargetError(f"onnxruntime failed to run {self.path.name}: {first_line(exc)}",
                              "the ONNX model does not run in onnxruntime; report the model",
                              stage="verify") from None
        return dict(zip(self.outputs, values))


def model_path(out_dir: Path, functions: list[str], function: str) -> Path:
    """Where a function's ONNX model lives: `model.onnx`, or `onnx/<function>.onnx` when several."""
    if len(functions) == 1:
        return Path(out_dir) / "model.onnx"
    return Path(out_dir) / "onnx" / f"{function}.onnx"


def _build(ctx: BuildContext) -> tuple[Path, dict]:
    functions = list(ctx.program.functions)
    opset = ctx.options.onnx_opset
    shutil.rmtree(ctx.out_dir / "onnx", ignore_errors=True)  # no file of an earlier conversion
    rewrites = 0
    for name, function in ctx.program.functions.items():
        _, n = export_onnx(function, ctx.program.params, model_path(ctx.out_dir, functions, name),
                           opset=opset)
        rewrites += n
    path = model_path(ctx.out_dir, functions, functions[0]) if len(functions) == 1 else ctx.out_dir / "onnx"
    return path, {"opset": opset, "converter": f"jax2onnx {version('jax2onnx')}",
                  "runtime": f"onnxruntime {version('onnxruntime')}",
                  "rewrites": {"maxpool_window_axes": rewrites}}


def _verify(ctx: BuildContext, path: Path) -> Parity:
    functions = list(ctx.program.functions)
    out_dir = path.parent
    runners = {name: OnnxRunner(model_path(out_dir, functions, name)) for name in functions}
    return ctx.parity(lambda c: runners[c.function].run(c.inputs))


register(Target("onnx", _build, _verify, exclusive=True))
