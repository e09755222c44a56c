"""ONNX speed and size: jaxport's ONNX target vs Keras's own `model.export(format="onnx")`.

For each model of `bench_artifacts.SPECS` (the same architectures, weights and batch-1 inputs)
one `.keras` file is exported two ways:
- ours: `convert_archive(..., targets=["onnx"])` (what `jaxport convert --targets onnx` runs);
- native: a fresh process on Keras's JAX backend loads the `.keras` file and runs
  `model.export(format="onnx")` (Keras 3.15 drives jax2onnx itself; a fixed sequence length for
  the token model, as our manifest declares). Its file plus any `.onnx.data` side file count
  as its bytes.

Printed per model: onnxruntime CPU latency at 1 thread, batch 1 (median over rounds that
alternate the two files, in reverse order every other round, each round a median of several
runs), bytes, node count, each ratio ours/native, and max |ours - native| of the outputs.

usage: .venv/bin/python bench/bench_onnx.py [--models mobilenet_v2_96,bert] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_artifacts import SPECS, Spec, _feed, _ours_source  # noqa: E402


def native_export(model_path: Path, out: Path, seq: int | None, fmt: str = "onnx",
                  batch: int | None = None) -> None:
    """`model.export(format=fmt)` of the `.keras` file on the JAX backend (a child process) at
    a symbolic batch, or `batch`; `bench_quant.py` asks for `tf_saved_model`."""
    assert os.environ.get("KERAS_BACKEND") == "jax"
    import keras
    import keras_hub  # noqa: F401 - registers the keras_hub classes the file may name

    model = keras.saving.load_model(model_path, compile=False)  # never called: give the specs
    if seq is not None:
        signature = [{t.name: keras.InputSpec(shape=(batch, seq), dtype="int32", name=t.name)
                      for t in model.inputs}]
    else:
        signature = [keras.InputSpec(shape=(batch, *t.shape[1:]), dtype=t.dtype, name=t.name)
                     for t in model.inputs]
    model.export(str(out), format=fmt, input_signature=signature, verbose=False)


def _run_native_export(model_path: Path, out: Path, seq: int | None, fmt: str = "onnx",
                       batch: int | None = None) -> Path | str:
    cmd = [sys.executable, __file__, "--native-export", str(model_path), str(out), "--format", fmt]
    if seq is not None:
        cmd += ["--seq", str(seq)]
    if batch is not None:
        cmd += ["--batch", str(batch)]
    done = subprocess.run(cmd, env={**os.environ, "KERAS_BACKEND": "jax"},
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if done.returncode:
        tail = done.stderr.decode().strip().splitlines()
        print(f"  native export failed: {done.stderr.decode()[-800:]}", file=sys.stderr)
        return f"failed: {(tail or ['?'])[-1][:160]}"
    return out


class Session:
    """A 1-thread onnxruntime CPU session fed one batch-1 input."""

    def __init__(self, path: Path, inputs: dict[str, np.ndarray]) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.feed = _feed([i.name for i in self.session.get_inputs()], inputs)
        names = [o.name for o in self.session.get_outputs()]
        self.outputs = dict(zip(names, self.session.run(None, self.feed)))

    def median_ms(self, runs: int) -> float:
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            self.session.run(None, self.feed)
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)


def _bytes(path: Path) -> int:
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.is_file() else 0)


def _nodes(path: Path) -> int:
    import onnx

    return len(onnx.load(path, load_external_data=False).graph.node)


def _max_diff(ours: dict[str, np.ndarray], native: dict[str, np.ndarray]) -> float:
    """Outputs compared by name, or in order when the names differ (the native route's)."""
    pairs = [(ours[k], native[k]) for k in ours] if set(ours) == set(native) else \
        list(zip(ours.values(), native.values()))
    return max(float(np.max(np.abs(a.astype("float64") - b))) for a, b in pairs)


def bench(spec: Spec, work: Path, rounds: int, runs: int) -> dict:
    from jaxport.options import ConvertOptions
    from jaxport.pipeline import convert_archive

    model_path = work / "model.keras"
    spec.build().save(model_path)
    report = convert_archive(_ours_source(spec, model_path, work), work / "ours",
                             ConvertOptions(targets=["onnx"]))
    result = report["targets"]["onnx"]
    paths: dict[str, Path | str] = {"ours": work / "ours" / "model.onnx"}
    if result["status"] != "ok":
        paths["ours"] = f"{result['status']}: {result['error']['message'][:160]}"
    paths["native"] = _run_native_export(model_path, work / "native" / "model.onnx", spec.seq)
    inputs = spec.inputs(np.random.default_rng(0))
    ready = {}
    for k, p in paths.items():
        if isinstance(p, Path):
            try:
                ready[k] = Session(p, inputs)
            except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types
                print(f"  {k} does not run in onnxruntime: {exc}", file=sys.stderr)
                paths[k] = f"does not run in onnxruntime: {str(exc).splitlines()[0][:200]}"
    lat: dict[str, list[float]] = {k: [] for k in ready}
    for round_ in range(rounds):
        for k, session in list(ready.items())[::-1 if round_ % 2 else 1]:
            lat[k].append(session.median_ms(runs))
    row = {"ms": {k: statistics.median(v) for k, v in lat.items()},
           "bytes": {k: _bytes(p) for k, p in paths.items() if isinstance(p, Path)},
           "nodes": {k: _nodes(p) for k, p in paths.items() if isinstance(p, Path)},
           "missing": {k: p for k, p in paths.items() if isinstance(p, str)},
           "rewrites": result.get("rewrites")}
    if len(ready) == 2:
        row["max_diff"] = _max_diff(ready["ours"].outputs, ready["native"].outputs)
    return row


def print_table(title: str, row: dict) -> None:
    diff = f"   max |ours - native| = {row['max_diff']:.2e}" if "max_diff" in row else ""
    print(f"\n{title}{diff}")
    print(f"  {'':32} {'ours':>12} {'native':>12} {'ours/native':>12}")
    for label, metric in (("ORT latency ms (1 thread)", "ms"), ("ONNX bytes", "bytes"),
                          ("ONNX nodes", "nodes")):
        a, b = row[metric].get("ours"), row[metric].get("native")
        text = [f"{v:.2f}" if isinstance(v, float) else "-" if v is None else f"{v:,}" for v in (a, b)]
        ratio = f"{a / b:.2f}" if a is not None and b else "n/a"
        print(f"  {label:32} {text[0]:>12} {text[1]:>12} {ratio:>12}")
    for key, reason in row["missing"].items():
        print(f"  no {key}: {reason}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(SPECS), help=f"comma-separated, from {list(SPECS)}")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per file")
    parser.add_argument("--runs", type=int, default=30, help="timed session runs per round")
    parser.add_argument("--native-export", nargs=2, metavar=("MODEL", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--seq", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--format", default="onnx", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("KERAS_BACKEND", "jax")
    if args.native_export:
        native_export(Path(args.native_export[0]), Path(args.native_export[1]), args.seq,
                      args.format, args.batch)
        return
    results = {}
    for name in args.models.split(","):
        print(f"[{name}] building and measuring", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="jaxport-bench-onnx-") as tmp:
            results[name] = bench(SPECS[name], Path(tmp), args.rounds, args.runs)
    print(f"batch 1; latency = median over {args.rounds} alternating rounds of the median of "
          f"{args.runs} onnxruntime runs (CPU, 1 thread); native = Keras's model.export("
          "format='onnx') on the JAX backend")
    for name, row in results.items():
        print_table(SPECS[name].title, row)


if __name__ == "__main__":
    main()
