"""The peer corpus: jax2onnx's own primitive test cases through `jaxport.export`, each artifact
checked against JAX itself.

jax2onnx (a runtime dependency of the ONNX target) registers one plugin per JAX primitive, and
each plugin's metadata carries `testcases`: a callable with input shapes (or concrete input
values). This collects every runnable case of the `lax`, `numpy` and `nn` plugins, exports it
with `targets=["tflite", "tfjs"]`, then runs each artifact again itself (the .tflite in LiteRT,
the TF.js model in Node) on the same inputs and compares with `jax.jit(fn)(*inputs)`:

- ok: jaxport said ok and the artifact matches JAX;
- wrong: jaxport said ok but the artifact does not match (the worst bug);
- refused: jaxport named a primitive (form) it does not lower (`lowering_unsupported`);
- failed: any other named failure (false-failed: the artifact it wrote matches JAX anyway);
- crashed/hung: an internal error, a worker that died, or no answer within the case timeout.

A case that does not run in JAX itself (with the plugins imported, which replace some
`jax.numpy` functions with the peer's own) has no reference and is counted apart.

Cases run in worker processes (`--worker`), one case at a time; the parent kills a worker that
is silent for longer than the timeout and records its case as hung, so a hang or a crash is a
row, not the end. Usage:

    python bench/peer_corpus.py [--jobs 2] [--timeout 120] [--only ID ...] [--limit N] [--json rows.jsonl]
                                [--rates docs/peer_corpus.csv]
    python bench/peer_corpus.py --from-json rows.jsonl [--rates docs/peer_corpus.csv]

prints the table (per target) and the pass rate per primitive; `--rates` writes the latter for
docs/lowering.md.
"""

from __future__ import annotations

import argparse
import collections
import importlib
import json
import os
import pkgutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from jaxport.specs import DTYPES

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("lax", "numpy", "nn")
TARGETS = ("tflite", "tfjs")
OUTCOMES = ("ok", "refused", "failed", "false-failed", "crashed/hung", "wrong")
_SPEC_DTYPES = {dtype.name: short for short, dtype in DTYPES.items()}  # numpy name → jaxport spec


@dataclass(frozen=True)
class PeerCase:
    """One runnable jax2onnx test case: `fn(*inputs)`, its primitive, and its inputs (concrete
    `values`, or `shapes`/`dtypes` to draw random ones from)."""

    id: str  # "<family>/<primitive>/<testcase>"
    primitive: str
    fn: Callable[..., Any]
    values: tuple[np.ndarray, ...] | None
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[np.dtype, ...]

    def inputs(self) -> list[np.ndarray]:
        """The case's inputs: its own values, else random ones seeded by its id."""
        if self.values is not None:
            return list(self.values)
        rng = np.random.default_rng(sum(map(ord, self.id)))
        out = []
        for shape, dt in zip(self.shapes, self.dtypes):
            if dt == np.bool_:
                out.append(rng.random(shape) < 0.5)
            elif np.issubdtype(dt, np.integer):
                out.append(rng.integers(0, 5, size=shape).astype(dt))
            else:
                out.append(rng.standard_normal(shape).astype(dt))
        return out


def _concrete(shape: Iterable[Any]) -> tuple[int, ...] | None:
    """A shape with its symbolic dims ("B", "N") set to 2, as the peer's own tests do; None
    for anything else than ints and names."""
    out = []
    for d in shape:
        if isinstance(d, (int, np.integer)):
            out.append(int(d))
        elif isinstance(d, str):
            out.append(2)
        else:
            return None
    return tuple(out)


def collect() -> tuple[list[PeerCase], dict[str, str]]:
    """Every runnable lax/numpy/nn case, and the cases left out with why (id -> reason).

    Left out: float64-only cases (the corpus runs in JAX's default 32-bit mode), cases
    without inputs, and input dtypes a jaxport spec cannot express."""
    from jax2onnx.plugins import plugin_system

    for family in FAMILIES:
        pkg = importlib.import_module(f"jax2onnx.plugins.jax.{family}")
        for mod in pkgutil.iter_modules(pkg.__path__):
            importlib.import_module(f"{pkg.__name__}.{mod.name}")
    cases, skipped = [], {}
    for primitive, plugin in sorted(plugin_system.PLUGIN_REGISTRY.items()):
        family = type(plugin).__module__.split(".")
        if family[:3] != ["jax2onnx", "plugins", "jax"] or family[3] not in FAMILIES:
            continue
        for tc in (getattr(plugin, "metadata", None) or {}).get("testcases", []):
            cid = f"{family[3]}/{primitive}/{tc['testcase']}"
            reason = _unrunnable(tc)
            if reason:
                skipped[cid] = reason
                continue
            values = tuple(np.asarray(v) for v in tc["input_values"]) if "input_values" in tc else None
            shapes = tuple(v.shape for v in values) if values is not None else tuple(_concrete(s) for s in tc["input_shapes"])
            dtypes = (tuple(v.dtype for v in values) if values is not None else
                      tuple(np.dtype(d) for d in tc.get("input_dtypes", [np.float32] * len(shapes))))
            bad = [d for d in dtypes if d.name not in _SPEC_DTYPES]
            if bad:
                skipped[cid] = f"input dtype {bad[0].name} has no jaxport spec"
                continue
            cases.append(PeerCase(cid, primitive, tc["callable"], values, shapes, dtypes))
    return cases, skipped


def _unrunnable(tc: dict) -> str:
    if tc.get("run_only_f64_variant") or tc.get("enable_double_precision"):
        return "float64 only"
    if "input_values" not in tc and "input_shapes" not in tc:
        return "no inputs"
    if "input_values" not in tc and any(_concrete(s) is None for s in tc["input_shapes"]):
        return "input shape is not concrete"
    return ""


def _named(result: Any) -> dict[str, Any]:
    """A case's result (an array or any pytree of them) as outputs y0, y1, … in leaf order."""
    import jax

    return {f"y{i}": leaf for i, leaf in enumerate(jax.tree_util.tree_leaves(result))}


def _matches(got: dict[str, np.ndarray], want: dict[str, np.ndarray], atol: float, rtol: float) -> str:
    """"" when `got` matches JAX's `want` (same keys and shapes, NaNs and infs in the same
    places, integers exact, floats within atol + rtol·|want|), else what differs. Complex
    outputs are compared on real and imaginary parts."""
    if sorted(got) != sorted(want):
        return f"outputs {sorted(got)} != {sorted(want)}"
    for k, w in want.items():
        g = np.asarray(got[k])
        if g.shape != w.shape:
            return f"{k}: shape {g.shape} != {w.shape}"
        if w.dtype.kind in "biu":
            if not np.array_equal(g.astype(np.int64), w.astype(np.int64)):
                return f"{k}: {int(np.sum(g.astype(np.int64) != w.astype(np.int64)))} of {w.size} integers differ"
            continue
        parts = [(g.real, w.real), (g.imag, w.imag)] if w.dtype.kind == "c" else [(g, w)]
        for gp, wp in parts:
            gp, wp = np.asarray(gp, np.float64), np.asarray(wp, np.float64)
            if not np.array_equal(np.isnan(gp), np.isnan(wp)) or not np.array_equal(np.isposinf(gp), np.isposinf(wp)) \
                    or not np.array_equal(np.isneginf(gp), np.isneginf(wp)):
                return f"{k}: non-finite values in other places"
            fin = np.isfinite(wp)
            err = np.abs(gp[fin] - wp[fin])
            if err.size and np.any(err > atol + rtol * np.abs(wp[fin])):
                return f"{k}: max abs error {err.max():.3g}"
    return ""


def run_case(case: PeerCase, work: Path, atol: float = 1e-4, rtol: float = 1e-3) -> dict:
    """Export `case` for TFLite and TF.js and check each artifact itself; the row."""
    import jax

    import jaxport
    from jaxport.verify.runtimes import TfliteRunner
    from jaxport.verify.tfjs import shared_runner

    values = case.inputs()
    names = [f"x{i}" for i in range(len(values))]
    specs = {n: f"{_SPEC_DTYPES[v.dtype.name]}[{','.join(map(str, v.shape))}]" for n, v in zip(names, values)}
    row = {"id": case.id, "primitive": case.primitive}
    try:
        want = {k: np.asarray(v) for k, v in _named(jax.jit(case.fn)(*values)).items()}
    except Exception as exc:  # noqa: BLE001 - the case does not run in JAX itself: no reference
        return {**row, "jax_fails": f"{type(exc).__name__}: {str(exc)[:200]}"}
    out_dir = work / case.id.replace("/", "__")
    report = jaxport.export(lambda p, *xs: _named(case.fn(*xs)), None, inputs=specs, out_dir=out_dir,
                            targets=list(TARGETS), samples=dict(zip(names, values)), atol=atol, rtol=rtol)
    feeds = dict(zip(names, values))
    runners = {"tflite": lambda path: TfliteRunner(path).run("serving_default", feeds),
               "tfjs": lambda path: shared_runner().run(path, feeds)}
    for target in TARGETS:
        entry = report["targets"][target]
        error = entry.get("error") or {}
        check = ""
        if entry.get("path") and (out_dir / entry["path"]).exists():
            try:
                check = _matches(runners[target](out_dir / entry["path"]), want, atol, rtol)
            except Exception as exc:  # noqa: BLE001 - the artifact does not run: a row
                check = f"does not run: {type(exc).__name__}: {str(exc)[:200]}"
        else:
            check = "no artifact"
        if entry["status"] == "ok":
            outcome = "ok" if not check else "wrong"
        elif error.get("code") == "internal" or str(error.get("message", "")).startswith("the lowering crashed"):
            outcome = "crashed/hung"  # jaxport's own bug, even where it is reported as a LoweringError
        elif error.get("code") == "lowering_unsupported":
            outcome = "refused"
        else:
            outcome = "false-failed" if not check else "failed"
        row[target] = {"outcome": outcome, "error": str(error.get("message", ""))[:300], "check": check,
                       "source": entry.get("source")}
    return row


def _worker(ids: list[str]) -> None:
    """Run the cases `ids` in order, one JSON line each on stdout ("start" before each case)."""
    cases = {c.id: c for c in collect()[0]}
    with tempfile.TemporaryDirectory(prefix="peer-corpus-") as tmp:
        for cid in ids:
            print(json.dumps({"start": cid}), flush=True)
            try:
                row = run_case(cases[cid], Path(tmp))
            except Exception as exc:  # noqa: BLE001 - jaxport itself raised: a row
                msg = f"{type(exc).__name__}: {str(exc)[:300]}"
                named = type(exc).__module__.startswith("jaxport")
                row = {"id": cid, "primitive": cases[cid].primitive,
                       **{t: {"outcome": "failed" if named else "crashed/hung", "error": msg, "check": ""} for t in TARGETS}}
            print(json.dumps(row), flush=True)


def primitive_of(case_id: str) -> str:
    """The primitive of a case id `<family>/<primitive>/<testcase>`."""
    return case_id.split("/", 1)[1].rsplit("/", 1)[0]


def run_cases(ids: list[str], jobs: int = 1, timeout: float = 120.0,
              on_row: Callable[[dict], None] | None = None) -> list[dict]:
    """Run the cases `ids` in `jobs` worker processes; a case a worker does not answer within
    `timeout` seconds (or dies on) is a crashed/hung row and the worker restarts after it.

    Only the workers import jax2onnx's plugins: importing them replaces some `jax.numpy`
    functions (`jnp.cumsum`, …) with the peer's own, which must not leak into the caller."""
    pending = collections.deque(ids)
    rows: list[dict] = []
    workers: list[dict] = []
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    chunk = max(1, -(-len(pending) // max(1, jobs)))

    def spawn() -> None:
        ids = [pending.popleft() for _ in range(min(chunk, len(pending)))]
        if not ids:
            return
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", *ids], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        os.set_blocking(proc.stdout.fileno(), False)
        workers.append({"proc": proc, "ids": ids, "current": None, "since": time.monotonic(), "buf": ""})

    def lost(w: dict, why: str) -> None:
        """The worker died or hung on its current case: record it, requeue the rest."""
        cid = w["current"] or w["ids"][0]
        row = {"id": cid, "primitive": primitive_of(cid), **{t: {"outcome": "crashed/hung", "error": why, "check": ""} for t in TARGETS}}
        rows.append(row)
        if on_row:
            on_row(row)
        done = {r["id"] for r in rows}
        pending.extendleft(reversed([i for i in w["ids"] if i not in done]))

    for _ in range(jobs):
        spawn()
    while workers:
        time.sleep(0.2)
        for w in list(workers):
            proc = w["proc"]
            w["buf"] += (proc.stdout.read() or b"").decode()
            *lines, w["buf"] = w["buf"].split("\n")
            for line in lines:
                if not line.startswith("{"):
                    continue
                msg = json.loads(line)
                w["since"] = time.monotonic()
                if "start" in msg:
                    w["current"] = msg["start"]
                else:
                    rows.append(msg)
                    w["current"] = None
                    if on_row:
                        on_row(msg)
            if proc.poll() is not None and not w["buf"]:
                workers.remove(w)
                if w["current"] is not None:
                    lost(w, f"worker exited with {proc.returncode}")
                spawn()
            elif w["current"] is not None and time.monotonic() - w["since"] > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                workers.remove(w)
                lost(w, f"no answer within {timeout:.0f} s")
                spawn()
    return rows


def is_linear_algebra(row: dict) -> bool:
    """A case of a linear-algebra decomposition or solver (`jaxport.lowering.linalg`): its
    primitive is one, or a target names one it met (`roots` computes `eig`, `polyfit` `svd`)."""
    from jaxport.lowering import REFUSALS

    linalg = {name for name, refusal in REFUSALS.items() if refusal.family == "linalg"}
    return row["primitive"] in linalg or any(
        "has no lowering: linear algebra (" in (row[t].get("error") or "") for t in TARGETS)


def table(rows: list[dict]) -> str:
    """The outcome table per target, in markdown (cases that do not run in JAX itself, with
    jax2onnx's plugins imported, are counted apart: there is no reference to check), then the
    same over the cases outside linear algebra (`is_linear_algebra`)."""
    left = [r for r in rows if "jax_fails" in r]
    rows = [r for r in rows if "jax_fails" not in r]
    rest = [r for r in rows if not is_linear_algebra(r)]
    lines = [f"{len(rows)} cases with a JAX reference ({len(left)} more fail in JAX itself); "
             f"{len(rest)} outside linear algebra", "",
             "| | " + " | ".join(OUTCOMES) + " |", "|---" * (len(OUTCOMES) + 1) + "|"]
    for label, subset in (("", rows), (" outside linear algebra", rest)):
        for t in TARGETS:
            counts = collections.Counter(r[t]["outcome"] for r in subset)
            cells = [f"{counts[o]} ({100 * counts[o] / max(1, len(subset)):.1f} %)" if o == "ok"
                     else str(counts[o]) for o in OUTCOMES]
            lines.append(f"| {t}{label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_primitive(rows: list[dict]) -> str:
    """ok / cases per primitive and target, in markdown."""
    groups: dict[str, list[dict]] = collections.defaultdict(list)
    for r in rows:
        if "jax_fails" not in r:
            groups[r["primitive"]].append(r)
    lines = ["| primitive | cases | " + " | ".join(f"{t} ok" for t in TARGETS) + " |", "|---|---|" + "---|" * len(TARGETS)]
    for prim in sorted(groups):
        rs = groups[prim]
        oks = [sum(r[t]["outcome"] == "ok" for r in rs) for t in TARGETS]
        lines.append(f"| `{prim}` | {len(rs)} | " + " | ".join(f"{k} ({100 * k / len(rs):.0f} %)" for k in oks) + " |")
    return "\n".join(lines)


def write_rates(rows: list[dict], path: Path, command: str) -> None:
    """The pass rate per primitive as CSV (primitive, cases, ok per target), with the command
    that measured it as a `#` line; docs/lowering.md renders it (`jaxport.lowering.coverage`)."""
    groups: dict[str, list[dict]] = collections.defaultdict(list)
    for r in rows:
        if "jax_fails" not in r:
            groups[r["primitive"]].append(r)
    lines = [f"# {command}", "primitive,cases," + ",".join(f"{t}_ok" for t in TARGETS)]
    for prim in sorted(groups):
        rs = groups[prim]
        lines.append(f"{prim},{len(rs)}," + ",".join(str(sum(r[t]["outcome"] == "ok" for r in rs)) for t in TARGETS))
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds a case may take (default 120)")
    ap.add_argument("--only", nargs="+", help="case ids (family/primitive/testcase) to run")
    ap.add_argument("--limit", type=int, help="run only the first N cases")
    ap.add_argument("--list", action="store_true", help="print the runnable case ids, run nothing")
    ap.add_argument("--json", type=Path, help="also write one JSON row per case to this file")
    ap.add_argument("--from-json", type=Path, help="print the tables of rows written by --json, run nothing")
    ap.add_argument("--rates", type=Path, help="also write the pass rate per primitive (CSV) to this file")
    args = ap.parse_args(argv)
    if args.worker:
        _worker(args.worker)
        return 0
    if args.from_json:
        rows = [json.loads(line) for line in args.from_json.read_text().splitlines() if line.strip()]
        print(f"{len(rows)} cases\n\n{table(rows)}\n\n{per_primitive(rows)}")
        if args.rates:
            write_rates(rows, args.rates, f"python bench/peer_corpus.py --from-json {args.from_json.name}: {len(rows)} cases")
        return 0
    cases, skipped = collect()
    if args.list:
        print("\n".join(c.id for c in cases))
        return 0
    if args.only:
        cases = [c for c in cases if c.id in set(args.only)]
    cases = cases[: args.limit] if args.limit else cases
    print(f"{len(cases)} runnable cases ({len(skipped)} left out: "
          f"{dict(collections.Counter(skipped.values()))})", file=sys.stderr)
    sink = args.json.open("w") if args.json else None
    start = time.monotonic()

    def on_row(row: dict) -> None:
        if sink:
            sink.write(json.dumps(row) + "\n")
            sink.flush()

    rows = run_cases([c.id for c in cases], args.jobs, args.timeout, on_row)
    print(f"{len(rows)} cases in {time.monotonic() - start:.0f} s\n\n{table(rows)}\n\n{per_primitive(rows)}")
    if args.rates:
        write_rates(rows, args.rates, "python bench/peer_corpus.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
