"""TF.js target: a plain-TF SavedModel -> a TensorFlow.js graph model (`model.json` + shards).

The SavedModel must be made of ops the TF.js runtime implements. jaxport produces one by
lowering the function's jaxpr to plain TF ops (`jaxport.lowering`); a jax2tf/orbax SavedModel
is a single `XlaCallModule` op, which TF.js cannot run, and is refused here.

The converter accepts some graphs the TF.js 4.22 runtime cannot execute. Fused activations
the cpu backend lacks (grappler fuses e.g. `MatMul+BiasAdd+Tanh` into `_FusedMatMul`) are split
back out by `unfuse_activations` when TF.js has the activation as an op or it can be spelled in
ops TF.js has (oneDNN's `_FusedHardSwish`); `runtime_problems` reports what is left. Only
running the model (see `jaxport.verify.tfjs`) catches the rest (grouped convolutions, for one).

The target writes the float model to `tfjs/` (checked by parity); with `tfjs_quantize` the
same graph with quantized weights goes to `tfjs-<quantization>/` beside it (measured and gated,
see `jaxport.verify.accuracy`).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import shutil
import struct
import uuid
from pathlib import Path
from typing import Any, Iterable

from jaxport.errors import TargetError
from jaxport.options import TFJS_QUANTIZATIONS
from jaxport.targets.base import BuildContext, Target, register
from jaxport.verify.compare import Parity

log = logging.getLogger(__name__)

LATENCY_RUNS = 7  # timed runs per model for the quantized/float latency figures

XLA_OPS = frozenset({"XlaCallModule"})
# Activations the TF.js cpu backend implements for _FusedConv2D / _FusedMatMul /
# FusedDepthwiseConv2dNative (tfjs-backend-cpu/src/utils/fused_utils.ts, 4.22).
_FUSABLE_ACTIVATIONS = frozenset({"Relu", "Relu6", "Elu", "LeakyRelu", "Prelu", "Sigmoid"})
_FLOAT = {"type": "DT_FLOAT"}
# Fused activations TF.js has no op for, as a chain of ops it has. A step is (op, operands);
# an operand is "x" (the fused node's output before the activation), "prev" (the previous
# step's output; x for the first step) or a float32 scalar.
_EXPANSIONS: dict[str, tuple[tuple[str, tuple[str | float, ...]], ...]] = {
    # oneDNN's hard swish, as jax.nn.hard_swish computes it: x * (relu6(x + 3) / 6)
    "_FusedHardSwish": (("AddV2", ("prev", 3.0)), ("Relu6", ("prev",)), ("RealDiv", ("prev", 6.0)),
                        ("Mul", ("x", "prev"))),
}
_FUSED_OPS = frozenset({"_FusedConv2D", "_FusedMatMul", "FusedDepthwiseConv2dNative"})
_HINT_XLA = (
    "TF.js cannot run XlaCallModule (the StableHLO op every jax2tf/orbax SavedModel holds, since "
    "jax ignores enable_xla=False); convert from the plain-TF SavedModel jaxport's lowering makes"
)


def export_tfjs(
    saved_model_dir: Path,
    out_dir: Path,
    *,
    signature: str = "serving_default",
    quantization: str | None = None,
    shard_bytes: int = 4 * 1024 * 1024,
) -> Path:
    """Convert one signature of a plain-TF SavedModel to a TF.js graph model in `out_dir`.

    Args:
      saved_model_dir: a TF2 SavedModel (tag `serve`) of ops TF.js supports.
      out_dir: where `model.json` and its weight shards go; replaced if it holds a TF.js
        model, refused if it holds anything else. Written only when conversion succeeds.
      signature: the signature to convert; its input and output names become the graph
        model's signature names.
      quantization: None, or `float16` / `uint8` / `uint16` to quantize every float weight.
      shard_bytes: maximum size of one weight shard file.

    Returns:
      `out_dir`, holding `model.json` and `group1-shardNofM.bin` files.

    Raises:
      TargetError: the SavedModel holds an `XlaCallModule` op or other ops TF.js does not
        support (each named), fused activations the TF.js runtime lacks, or bad options.
        `stage` is "convert".
    """
    saved_model_dir, out_dir = Path(saved_model_dir), Path(out_dir)
    if quantization is not None and quantization not in TFJS_QUANTIZATIONS:
        raise TargetError(
            f"unknown TF.js quantization {quantization!r}",
            f"choose from {', '.join(TFJS_QUANTIZATIONS)}",
            stage="convert",
        )
    if shard_bytes < 1:
        raise TargetError(f"shard_bytes must be positive, got {shard_bytes}", stage="convert")

    meta_graph = _meta_graph(saved_model_dir, signature)
    ops = _reachable_ops(meta_graph, signature)
    if xla := sorted(ops & XLA_OPS):
        raise TargetError(
            f"signature {signature!r} of {saved_model_dir} holds {', '.join(xla)}, which TF.js cannot run",
            _HINT_XLA,
            stage="convert",
        )
    from jaxport.tfjs_converter import converters

    # Convert into a fresh directory next to out_dir so a failure leaves no half-written model.
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "model.json").is_file():
        raise TargetError(
            f"{out_dir} exists and is not a TF.js model directory; not replacing it", stage="convert"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.{uuid.uuid4().hex[:8]}.partial"
    staging.mkdir()  # not tempfile.mkdtemp: its 0700 mode would stick to the artifact
    chatter = io.StringIO()  # the converter print()s notes; stdout belongs to the CLI
    try:
        try:
            with contextlib.redirect_stdout(chatter):
                converters().convert_tf_saved_model(
                    str(saved_model_dir),
                    str(staging),
                    signature_def=signature,
                    saved_model_tags="serve",
                    quantization_dtype_map={quantization: True} if quantization else None,
                    weight_shard_size_bytes=shard_bytes,
                )
        except Exception as exc:  # the converter raises bare ValueError/Exception
            message = str(exc).replace("\n", ": ")
            hint = "rewrite the named ops with ops TF.js has" if "Unsupported Ops" in message else ""
            raise TargetError(f"the TF.js converter failed: {message}", hint, stage="convert") from exc
        finally:
            for line in chatter.getvalue().splitlines():
                log.info("tensorflowjs: %s", line)
        _name_signature(staging / "model.json", meta_graph, signature)
        if widened := widen_integer_types(staging / "model.json"):
            log.info("TF.js: integer types it lacks held as int32 in %s", ", ".join(widened))
        if unfused := unfuse_activations(staging / "model.json"):
            log.info("TF.js: split activations the runtime cannot fuse out of %s", ", ".join(unfused))
        if problems := runtime_problems(staging / "model.json"):
            raise TargetError(
                "the converted model needs what the TF.js runtime lacks: " + "; ".join(problems),
                "avoid the named ops or fused activations in the lowered graph",
                stage="convert",
            )
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def _meta_graph(saved_model_dir: Path, signature: str) -> Any:
    """The `serve` MetaGraphDef of a SavedModel that has `signature`."""
    from tensorflow.core.protobuf import saved_model_pb2

    pb = saved_model_dir / "saved_model.pb"
    if not pb.is_file():
        raise TargetError(f"{saved_model_dir} is not a SavedModel (no saved_model.pb)", stage="convert")
    saved_model = saved_model_pb2.SavedModel.FromString(pb.read_bytes())
    graphs = [m for m in saved_model.meta_graphs if "serve" in m.meta_info_def.tags]
    if not graphs:
        raise TargetError(f"{saved_model_dir} has no MetaGraph tagged 'serve'", stage="convert")
    if signature not in graphs[0].signature_def:
        raise TargetError(
            f"{saved_model_dir} has no signature {signature!r}",
            f"signatures: {', '.join(sorted(graphs[0].signature_def)) or 'none'}",
            stage="convert",
        )
    return graphs[0]


def _node_name(tensor: str) -> str:
    return tensor.split(":")[0].lstrip("^")


def _reachable_ops(meta_graph: Any, signature: str) -> frozenset[str]:
    """Op types reachable from the signature's outputs, called functions included."""
    graph = meta_graph.graph_def
    functions = {f.signature.name: f for f in graph.library.function}
    nodes = {n.name: n for n in graph.node}
    todo = [_node_name(t.name) for t in meta_graph.signature_def[signature].outputs.values()]
    seen_nodes: set[str] = set()
    seen_functions: set[str] = set()
    ops: set[str] = set()

    def visit(node: Any) -> Iterable[str]:
        """Record the node's op; return the functions it calls."""
        ops.add(node.op)
        for value in node.attr.values():
            if value.HasField("func"):
                yield value.func.name
            elif value.HasField("list"):
                yield from (f.name for f in value.list.func)
        if node.op in functions:  # a library function called directly as an op
            yield node.op

    called: list[str] = []
    while todo:
        name = todo.pop()
        if name in seen_nodes or name not in nodes:
            continue
        seen_nodes.add(name)
        node = nodes[name]
        called.extend(visit(node))
        todo.extend(_node_name(i) for i in node.input)
    while called:
        fname = called.pop()
        if fname in seen_functions or fname not in functions:
            continue
        seen_functions.add(fname)
        for node in functions[fname].node_def:
            called.extend(visit(node))
    return frozenset(ops - functions.keys())


def _function_tensor_names(meta_graph: Any, signature: str) -> dict[str, str]:
    """{tensor name inside the signature's function: signature key}, for inputs and outputs.

    The converter freezes the signature's function, so its graph model refers to that
    function's placeholders and returned tensors. A TF2 signature is one (Stateful)PartitionedCall
    of a wrapper function: signature input k is call input i = the function's input_arg i;
    signature output `call:j` is output_arg j, whose `ret` names the tensor.
    """
    sig = meta_graph.signature_def[signature]
    graph = meta_graph.graph_def
    nodes = {n.name: n for n in graph.node}
    functions = {f.signature.name: f for f in graph.library.function}
    names: dict[str, str] = {}
    for call_name in {_node_name(info.name) for info in sig.outputs.values()}:
        call = nodes.get(call_name)
        if call is None or "f" not in call.attr or call.attr["f"].func.name not in functions:
            continue
        fdef = functions[call.attr["f"].func.name]
        for key, info in sig.outputs.items():
            node, _, index = info.name.partition(":")
            if node == call_name and int(index or 0) < len(fdef.signature.output_arg):
                ret = fdef.ret.get(fdef.signature.output_arg[int(index or 0)].name, "")
                ret_node, _, rest = ret.partition(":")  # "Identity:output:0"
                names[f"{ret_node}:{rest.rpartition(':')[2]}"] = key
        call_inputs = [_node_name(i) for i in call.input]
        for key, info in sig.inputs.items():
            if (placeholder := _node_name(info.name)) in call_inputs:
                names[f"{fdef.signature.input_arg[call_inputs.index(placeholder)].name}:0"] = key
    return names


def _name_signature(model_json: Path, meta_graph: Any, signature: str) -> None:
    """Key the graph model's signature by the SavedModel signature's input and output names.

    tensorflowjs 4.22 finds each name by matching dtype and shape, and falls back to the tensor
    name (`x:0`, `Identity_1:0`) when two inputs or two outputs look alike.
    """
    data = json.loads(model_json.read_text())
    names = _function_tensor_names(meta_graph, signature)
    sig = data.setdefault("signature", {})
    for kind in ("inputs", "outputs"):
        sig[kind] = {names.get(info["name"], key): info for key, info in sig.get(kind, {}).items()}
    want = meta_graph.signature_def[signature]
    # Inputs the graph does not use are dropped by the converter; outputs must all be there.
    if set(sig["outputs"]) != set(want.outputs) or not set(sig["inputs"]) <= set(want.inputs):
        raise TargetError(
            f"cannot name the TF.js model's inputs/outputs {sorted(sig['inputs'])}/{sorted(sig['outputs'])} "
            f"after signature {signature!r} ({sorted(want.inputs)}/{sorted(want.outputs)})",
            stage="convert",
        )
    model_json.write_text(json.dumps(data))


def _all_nodes(topology: dict) -> list[dict]:
    """The nodes of a model.json topology: the graph's and those of its library functions."""
    nodes = list(topology.get("node", []))
    for function in topology.get("library", {}).get("function", []):
        nodes.extend(function.get("nodeDef", []))
    return nodes


_WIDENED_INTS = frozenset({"DT_INT16", "DT_UINT16", "DT_UINT32"})


def widen_integer_types(model_json: Path) -> list[str]:
    """Make the node attributes that name an integer type TF.js 4.22 does not know (int16,
    uint16, uint32: a `Cast` to one fails with "unknown dtype null") name int32; rewrites in
    place. TF.js already holds int8, uint8 and int64 as int32 (no wrap-around on a cast to them),
    so these three become the same; parity shows any value the difference changes.
    Returns the names of the nodes changed.
    """
    data = json.loads(model_json.read_text())
    changed = []
    for node in _all_nodes(data["modelTopology"]):
        attrs = [a for a in node.get("attr", {}).values() if a.get("type") in _WIDENED_INTS]
        for attr in attrs:
            attr["type"] = "DT_INT32"
        if attrs:
            changed.append(node["name"])
    if changed:
        model_json.write_text(json.dumps(data))
    return changed


def unfuse_activations(model_json: Path) -> list[str]:
    """Split fused activations the TF.js cpu backend lacks into their own nodes; rewrites in place.

    Grappler (run by the converter) fuses `MatMul+BiasAdd+Tanh` into one `_FusedMatMul` and, with
    oneDNN, `Conv2D+BiasAdd` + hard swish into a `_FusedConv2D` with `_FusedHardSwish`; TF.js
    4.22 runs neither. The fused node keeps its BiasAdd and hands its name to the activation, so
    consumers are unchanged: one node when TF.js has the activation as an op, else the chain of
    `_EXPANSIONS`. The chains' constants are float32 `Const` nodes (never quantized) whose values
    go to a weight group of their own, in a new shard file next to `model_json`.
    Returns the names of the nodes split.
    """
    from jaxport.tfjs_converter import supported_ops

    data = json.loads(model_json.read_text())
    nodes = data["modelTopology"].get("node", [])
    constants: dict[float, str] = {}  # value: Const node name

    def constant(value: float) -> str:
        if value not in constants:
            constants[value] = f"jaxport/unfused_constant_{len(constants)}"
            tensor = {"dtype": "DT_FLOAT", "tensorShape": {}}
            nodes.append({"name": constants[value], "op": "Const",
                          "attr": {"dtype": _FLOAT, "value": {"tensor": tensor}}})
        return constants[value]

    split: list[str] = []
    for node in list(nodes):
        fused_ops = node.get("attr", {}).get("fused_ops", {}).get("list", {})
        fused = [base64.b64decode(s).decode() for s in fused_ops.get("s", [])]
        if node["op"] not in _FUSED_OPS or fused[:1] != ["BiasAdd"] or len(fused) != 2:
            continue
        activation = fused[1]
        steps = _EXPANSIONS.get(activation)
        if steps is None and activation not in _FUSABLE_ACTIVATIONS and activation in supported_ops():
            steps = ((activation, ("prev",)),)  # the op itself
        if steps is None:
            continue
        name = node["name"]
        node["name"] = prev = x = f"{name}/{node['op']}"
        fused_ops["s"] = fused_ops["s"][:1]
        attr = {"T": node["attr"].get("T", _FLOAT)}
        for i, (op, operands) in enumerate(steps):
            inputs = [x if a == "x" else prev if a == "prev" else constant(a) for a in operands]
            prev = name if i == len(steps) - 1 else f"{name}/{op}_{i}"
            nodes.append({"name": prev, "op": op, "input": inputs, "attr": attr})
        split.append(name)
    if constants:
        manifest = data.setdefault("weightsManifest", [])
        shard = f"group{len(manifest) + 1}-shard1of1.bin"
        weights = [{"name": n, "shape": [], "dtype": "float32"} for n in constants.values()]
        manifest.append({"paths": [shard], "weights": weights})
        (model_json.parent / shard).write_bytes(struct.pack(f"<{len(constants)}f", *constants))
    if split:
        model_json.write_text(json.dumps(data))
    return split


def runtime_problems(model_json: Path) -> list[str]:
    """What in a converted `model.json` the TF.js 4.22 runtime cannot run; empty when none seen.

    Checks every node (functions included) against the runtime's op list, and fused
    convolution/matmul nodes against the activations the cpu backend implements.
    """
    from jaxport.tfjs_converter import supported_ops

    topology = json.loads(Path(model_json).read_text())["modelTopology"]
    nodes = _all_nodes(topology)
    functions = {f["signature"]["name"] for f in topology.get("library", {}).get("function", [])}
    problems: set[str] = set()
    known = supported_ops()
    for node in nodes:
        op = node["op"]
        if op not in known and op not in functions:
            problems.add(f"op {op}")
        if op in _FUSED_OPS:
            encoded = node.get("attr", {}).get("fused_ops", {}).get("list", {}).get("s", [])
            fused = [base64.b64decode(s).decode() for s in encoded]
            if fused and fused[0] != "BiasAdd":
                problems.add(f"{op} fused with {fused[0]}")
            problems.update(f"{op} fused with {a}" for a in fused[1:] if a not in _FUSABLE_ACTIVATIONS)
    return sorted(problems)


def model_dir(out_dir: Path, functions: list[str], function: str, base: str = "tfjs") -> Path:
    """Where a function's TF.js model lives: `<base>/`, or `<base>/<function>/` when there are
    several. `base` is `tfjs` for the float model, `tfjs-<quantization>` for a quantized one."""
    root = Path(out_dir) / base
    return root if len(functions) == 1 else root / function


def _export_all(ctx: BuildContext, base: str, quantization: str | None) -> Path:
    """Every function of the program as a TF.js model under `ctx.out_dir / base`."""
    saved_model = ctx.lowered_savedmodel()
    out = ctx.out_dir / base
    if out.exists():
        shutil.rmtree(out)
    functions = list(ctx.program.functions)
    for name in functions:
        export_tfjs(saved_model, model_dir(ctx.out_dir, functions, name, base), signature=name,
                    quantization=quantization, shard_bytes=ctx.options.tfjs_shard_bytes)
    return out


def _build(ctx: BuildContext) -> tuple[Path, dict]:
    return _export_all(ctx, "tfjs", None), {}


def _prepare(ctx: BuildContext) -> None:
    """Start the process-wide TF.js runner (Node) while the job loads and builds."""
    from jaxport.verify.tfjs import shared_runner

    ctx.prestart("tfjs", shared_runner, owned=False)


def _verify(ctx: BuildContext, path: Path) -> Parity:
    from jaxport.verify.tfjs import shared_runner

    runner = ctx.runtime("tfjs", shared_runner, owned=False)
    functions = list(ctx.program.functions)
    return ctx.parity(lambda c: runner.run(model_dir(path.parent, functions, c.function), c.inputs))


def _quantize(ctx: BuildContext, path: Path) -> dict:
    """`tfjs-<q>/` (weights quantized by the TF.js converter) beside the float `tfjs/`: its
    figures, size and TF.js latency beside the float model's (median of `LATENCY_RUNS` runs
    inside Node on the first case)."""
    from jaxport.verify.tfjs import shared_runner

    mode = ctx.options.tfjs_quantize
    base = f"tfjs-{mode}"
    out = _export_all(ctx, base, mode)
    runner = shared_runner()
    functions = list(ctx.program.functions)
    accuracy = ctx.accuracy(lambda c: runner.run(model_dir(ctx.out_dir, functions, c.function,
                                                           base), c.inputs))
    case = ctx.cases[0]
    _, quantized = runner.benchmark(model_dir(ctx.out_dir, functions, case.function, base),
                                    case.inputs, warmup=1, runs=LATENCY_RUNS)
    _, float_ = runner.benchmark(model_dir(ctx.out_dir, functions, case.function), case.inputs,
                                 warmup=1, runs=LATENCY_RUNS)
    return ctx.quantization_report(
        mode, accuracy, method="tfjs-converter",
        recipe=f"quantization_dtype_map {{{mode}: every float weight}}", path=base,
        bytes=_tree_bytes(out), float_bytes=_tree_bytes(path),
        latency_ms=quantized.median_ms, float_latency_ms=float_.median_ms,
        latency={"runtime": f"TF.js {runner.info.get('backend', '')}".strip(), "runs": LATENCY_RUNS,
                 "case": f"{case.function}@batch{case.batch}"}, warnings=[])


def _tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


register(Target("tfjs", _build, _verify, _quantize, "tfjs_quantize", prepare=_prepare))
