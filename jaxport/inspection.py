"""`inspect`: what an archive holds and whether each target can take it, without converting.

`inspect_file(path)` unpacks and loads the archive as a conversion would (the same checks and
errors), traces each function's jaxpr with its symbolic dims, and applies the lowering's rule
table (`jaxport.lowering.RULES`, the rows of docs/lowering.md) and the runtime gap table
(`jaxport.lowering.gaps`) to every primitive it finds. Nothing is built or run: a keras_hub
backbone takes seconds.

The verdict per target follows the pipeline's own choices:
- savedmodel: always the orbax (XLA) path, which takes any primitive `jax.export` serializes;
- tflite: the lowered plain-TF path when every primitive has a rule and LiteRT runs it, else the
  orbax path (StableHLO through the TFLite converter), naming the primitive that forces it;
- tfjs: needs every primitive lowered and run by TF.js; else blocked, naming the primitive and
  the user-code line that produced it;
- onnx: needs a jax2onnx converter for every primitive; else blocked, naming the first one.
A target whose optional part is not installed (the TF.js converter, the `onnx` extra:
`jaxport.extras`) is blocked, the message naming the command that installs it.
A rule can still refuse a *form* of its primitive (a parameter it does not handle, listed in
docs/lowering.md); that shows only when converting.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxport import __version__
from jaxport.errors import JaxportError
from jaxport.options import ALL_TARGETS
from jaxport.program import Program


class UnknownFunction(JaxportError):
    """`--function` names no function of the archive."""

    code = "unknown_function"


def inspect_file(archive: Path, function: str | None = None, *, trusted: bool) -> dict:
    """The inspection of an archive (.keras, .zip, .tar.gz). Raises `JaxportError` on bad
    input, as `convert` would."""
    from jaxport.archive import extract_archive

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="jaxport-inspect-") as tmp:
        source = extract_archive(Path(archive), Path(tmp))
        from jaxport.compose import load_program  # imports keras and jax: after cheap checks

        program = load_program(source, trusted=trusted)
    report = inspect_program(program, function)
    report["archive"] = Path(archive).name
    report["seconds"] = round(time.perf_counter() - t0, 3)
    return report


def inspect_program(program: Program, function: str | None = None) -> dict:
    """Models, functions (signature, primitives, support) and the per-target verdict of
    `program`, or of its one function `function`."""
    if function is not None and function not in program.functions:
        raise UnknownFunction(f"no function {function!r}",
                              f"functions: {', '.join(program.functions)}")
    names = [function] if function else list(program.functions)
    signatures = program.signature_json()
    functions = {}
    for name in names:
        primitives = _primitives(program, name)
        ranges = {k: r.to_json() for k, r in program.functions[name].ranges.items()}
        functions[name] = {**signatures[name], "ranges": ranges, "primitives": primitives,
                           "verdict": _verdict(primitives)}
    return {"jaxport_version": __version__, "models": _models(program), "functions": functions,
            "verdict": _overall({n: f["verdict"] for n, f in functions.items()})}


def _models(program: Program) -> dict:
    """Per model (a top-level key of the params): the element count and bytes of its variables,
    trainable and not (Keras's non-trainable ones include BatchNorm statistics and dropout seed
    states), as the artifacts hold them."""
    params = program.params if isinstance(program.params, dict) else {"params": program.params}
    out = {}
    for name, tree in params.items():
        leaves = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(tree)]
        out[name] = {"parameters": int(sum(leaf.size for leaf in leaves)),
                     "bytes": int(sum(leaf.nbytes for leaf in leaves)),
                     "variables": len(leaves)}
    return out


def _eqns(jaxpr: Any) -> Iterator[Any]:
    """Every equation of `jaxpr` and of the jaxprs nested in its equations' params."""
    from jax.extend import core as jcore

    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(sub, jcore.ClosedJaxpr):
                    yield from _eqns(sub.jaxpr)
                elif isinstance(sub, jcore.Jaxpr):
                    yield from _eqns(sub)


def _primitives(program: Program, name: str) -> dict:
    """primitive -> count, first user-code location, rule and support per target."""
    import jaxport.lowering  # noqa: F401  (registers every rule)
    from jaxport.eqns import location
    from jaxport.lowering.gaps import runtime_gaps
    from jaxport.lowering.registry import RULES
    from jaxport.shapes import trace

    function = program.functions[name]
    closed, _ = trace(function, program.params)
    found: dict[str, dict] = {}
    for eqn in _eqns(closed.jaxpr):
        prim = eqn.primitive.name
        entry = found.get(prim)
        if entry is None:
            rule = RULES.get(prim)
            entry = found[prim] = {"count": 0, "at": location(eqn), "layer": _layer(eqn),
                                   "rule": rule.family if rule else None,
                                   "forms": rule.forms if rule else None, "gaps": {}}
        entry["count"] += 1
        for target, lacks in runtime_gaps(eqn).items():
            if target not in entry["gaps"]:
                entry["gaps"][target] = {"lacks": lacks, "at": location(eqn), "layer": _layer(eqn)}
    from jaxport.extras import missing_modules
    from jaxport.targets.onnx import converts

    onnx_installed = not missing_modules("onnx")
    for prim, entry in found.items():
        entry["onnx"] = converts(prim) if onnx_installed else None
        entry["targets"] = _support(entry)
    return dict(sorted(found.items(), key=lambda kv: (-kv[1]["count"], kv[0])))


def _support(entry: dict) -> dict[str, str]:
    """The per-target support of one primitive, in words."""
    gaps = entry["gaps"]
    onnx = ("jax2onnx" if entry["onnx"] else "blocked: no jax2onnx converter"
            if entry["onnx"] is not None else "blocked: the 'onnx' extra is not installed")
    if entry["rule"] is None:
        return {"savedmodel": "xla", "tflite": "orbax path (no lowering rule)",
                "tfjs": "blocked: no lowering rule", "onnx": onnx}
    return {"savedmodel": "xla",
            "tflite": f"orbax path ({gaps['tflite']['lacks']})" if "tflite" in gaps else "lowered",
            "tfjs": f"blocked: {gaps['tfjs']['lacks']}" if "tfjs" in gaps else "lowered",
            "onnx": onnx}


def _blocker(primitives: dict, target: str) -> dict | None:
    """The primitive that keeps `target` off the lowered path, with why: the most frequent one
    whose user-code location is known, else the most frequent one."""
    from jaxport.eqns import UNKNOWN_LOCATION

    found = []
    for prim, entry in primitives.items():
        if entry["rule"] is None:
            found.append({"primitive": prim, "at": entry["at"], "layer": entry["layer"],
                          "why": "has no lowering rule"})
        elif target in entry["gaps"]:
            gap = entry["gaps"][target]
            found.append({"primitive": prim, "at": gap["at"], "layer": gap["layer"],
                          "why": gap["lacks"]})
    known = [b for b in found if b["at"] != UNKNOWN_LOCATION]
    return (known or found or [None])[0]


def _verdict(primitives: dict) -> dict:
    """target -> {"ok", "path", "message", "blocking"} for one function."""
    from jaxport.extras import check

    out = {"savedmodel": {"ok": True, "path": "orbax", "blocking": None,
                          "message": "will build (orbax: the XLA program as is)"}}
    tflite = _blocker(primitives, "tflite")
    out["tflite"] = ({"ok": True, "path": "lowered", "blocking": None,
                      "message": "lowered path (plain TF ops)"} if tflite is None else
                     {"ok": True, "path": "orbax", "blocking": tflite,
                      "message": f"orbax path: {_name(tflite)}"})
    tfjs = _blocker(primitives, "tfjs")
    out["tfjs"] = ({"ok": True, "path": "lowered", "blocking": None, "message": "will lower"}
                   if tfjs is None else
                   {"ok": False, "path": None, "blocking": tfjs, "message": f"blocked: {_name(tfjs)}"})
    missing = [{"primitive": p, "at": e["at"], "layer": e["layer"], "why": "has no jax2onnx converter"}
               for p, e in primitives.items() if e["onnx"] is False]
    out["onnx"] = ({"ok": True, "path": "jax2onnx", "blocking": None,
                    "message": "will convert (jax2onnx; a refused form shows only when converting)"}
                   if not missing else
                   {"ok": False, "path": None, "blocking": missing[0],
                    "message": f"blocked: {_name(missing[0])}"})
    for target in ("tfjs", "onnx"):
        absent = check(target, f"the {target} target")
        if absent is not None:
            out[target] = {"ok": False, "path": None, "blocking": None,
                           "message": f"blocked: {absent} ({absent.hint})"}
    return out


def _layer(eqn: Any) -> str:
    """The named scope the equation was traced in (a Keras layer path), or ""."""
    return str(eqn.source_info.name_stack)


def _name(blocking: dict) -> str:
    layer = f" (in {blocking['layer']})" if blocking["layer"] else ""
    return f"{blocking['primitive']} at {_short(blocking['at'])}{layer} {_why(blocking['why'])}"


def _short(where: str) -> str:
    """A location without the installation prefix (`keras/src/ops/nn.py:12`)."""
    return where.rsplit("site-packages/", 1)[-1]


def _why(why: str) -> str:
    return why if why.startswith("has ") else f"({why})"


def _overall(verdicts: dict[str, dict]) -> dict:
    """Per target over all inspected functions: the first function that is blocked or off the
    lowered path decides (its message is prefixed with the function's name)."""
    out = {}
    for target in ALL_TARGETS:
        worst = None
        for name, verdict in verdicts.items():
            v = verdict[target]
            if not v["ok"] or (target == "tflite" and v["path"] != "lowered"):
                worst = {**v, "message": f"{name}: {v['message']}" if len(verdicts) > 1
                         else v["message"]}
                if not v["ok"]:
                    break
        out[target] = worst or next(iter(verdicts.values()))[target]
    return out


def render(report: dict, stream: Any = None) -> None:
    """Print an inspection for people (tables on a terminal, aligned text otherwise)."""
    import sys

    from jaxport.console import fmt_bytes, print_table

    stream = stream or sys.stdout
    where = f" ({report['archive']}, {report['seconds']} s)" if "archive" in report else ""
    print(f"jaxport {report['jaxport_version']} inspect{where}", file=stream)
    print("\nmodels", file=stream)
    print_table(["model", "parameters", "bytes", "variables"],
                [[n, f"{m['parameters']:,}", fmt_bytes(m["bytes"]), m["variables"]]
                 for n, m in report["models"].items()], stream)
    for name, fn in report["functions"].items():
        print(f"\nfunction {name}", file=stream)
        for kind in ("inputs", "outputs"):
            for arg, spec in fn[kind].items():
                drawn = fn["ranges"].get(arg) if kind == "inputs" else None
                extra = f"  (verification draws {_range(drawn)})" if drawn else ""
                print(f"  {kind[:-1]:<6} {arg}: {_spec(spec)}{extra}", file=stream)
        for constraint in fn.get("constraints", []):
            print(f"  constraint {constraint}", file=stream)
        print_table(["primitive", "count", "rule", *ALL_TARGETS, "first at"],
                    [[p, e["count"], e["rule"] or "NONE", *(e["targets"][t] for t in ALL_TARGETS),
                      _short(e["at"])] for p, e in fn["primitives"].items()], stream)
    print("\nverdict", file=stream)
    for target, verdict in report["verdict"].items():
        print(f"  {target + ':':<11} {verdict['message']}", file=stream)


def _spec(spec: dict) -> str:
    dims = ",".join(str(d) for d in spec["shape"])
    return f"{spec['dtype']}[{dims}]"


def _range(drawn: dict) -> str:
    if "low" in drawn:
        return f"[{drawn['low']:g}, {drawn['high']:g}], {drawn['why']}"
    return f"{drawn['kind']}, {drawn['why']}"
