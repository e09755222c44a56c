"""LiteRT.js in Chromium vs LiteRT in Python: the same `model.tflite`, batch 1, one thread.

For each model of `bench_artifacts.SPECS` (default: MobileNetV2 96x96 and EfficientNetB0
224x224, random weights with real BatchNorm statistics) the `.keras` file is converted with
`targets=["tflite"]` (which also runs the LiteRT.js check; its status and the browser's start
time are printed), then the file is timed in
- LiteRT: `ai_edge_litert` interpreter, `num_threads=1`, `invoke()` only;
- LiteRT.js: `@litertjs/core` 2.5.3 on its WASM CPU backend (XNNPack, 1 thread) in headless
  Chromium, through `LitertjsRunner.benchmark`: timed inside the page, each run including
  reading the outputs back (`tensor.data()`), inputs already in place.

Latency is the median over rounds that alternate the two runtimes (reverse order every other
round), each round itself a median of `--runs` runs. One browser serves every model.

usage: .venv/bin/python bench/bench_litertjs.py [--models mobilenet_v2_96,efficientnet_b0]
       [--rounds 5] [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_artifacts import SIGNATURE, SPECS, Litert, Spec, _feed, _ours_source  # noqa: E402


def bench(spec: Spec, work: Path, runner, rounds: int, runs: int) -> dict:  # noqa: ANN001
    from jaxport.options import ConvertOptions
    from jaxport.pipeline import convert_archive

    model_path = work / "model.keras"
    spec.build().save(model_path)
    report = convert_archive(_ours_source(spec, model_path, work), work / "out",
                             ConvertOptions(targets=["tflite"]))
    result = report["targets"]["tflite"]
    if result["status"] != "ok":
        raise SystemExit(f"{spec.title}: tflite {result['status']}: {result['error']}")
    path = work / "out" / "model.tflite"
    inputs = spec.inputs(np.random.default_rng(0))
    litert = Litert(path, inputs)
    feed = _feed(list(litert.interpreter.get_signature_list()[SIGNATURE]["inputs"]), inputs)
    shapes = {k: v.shape for k, v in litert.outputs.items()}
    lat: dict[str, list[float]] = {"litert": [], "litertjs": []}
    js_outputs: dict[str, np.ndarray] = {}
    for round_ in range(rounds):
        for which in ("litert", "litertjs")[::-1 if round_ % 2 else 1]:
            if which == "litert":
                lat[which].append(litert.median_ms(runs))
            else:
                js_outputs, timing = runner.benchmark(path, SIGNATURE, feed, shapes, warmup=2, runs=runs)
                lat[which].append(timing.median_ms)
    check = result["runtimes"]["litertjs"]
    return {"ms": {k: statistics.median(v) for k, v in lat.items()}, "bytes": path.stat().st_size,
            "check": check["status"], "check_seconds": check.get("seconds"),
            "max_diff": max(float(np.abs(js_outputs[k] - litert.outputs[k]).max()) for k in shapes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mobilenet_v2_96,efficientnet_b0",
                        help=f"comma-separated, from {list(SPECS)}")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per runtime")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per round")
    args = parser.parse_args()
    os.environ.setdefault("KERAS_BACKEND", "jax")
    from jaxport.targets.tflite import LitertjsRunner

    results = {}
    with tempfile.TemporaryDirectory(prefix="jaxport-bench-litertjs-") as tmp:
        with LitertjsRunner(Path(tmp) / "litertjs") as runner:
            info = runner.info
            for name in args.models.split(","):
                print(f"[{name}] converting and measuring", file=sys.stderr, flush=True)
                work = Path(tmp) / name
                work.mkdir()
                results[name] = bench(SPECS[name], work, runner, args.rounds, args.runs)
    print(f"batch 1, 1 thread; latency = median over {args.rounds} alternating rounds of the "
          f"median of {args.runs} runs; LiteRT = ai_edge_litert invoke(); LiteRT.js = "
          f"{info['litertjs']} wasm (relaxed SIMD {info['relaxed_simd']}) in Chromium "
          f"{info['chromium']}, run + outputs read back; browser start {info['start_ms'] / 1000:.1f} s")
    print(f"\n  {'model':26} {'bytes':>11} {'LiteRT ms':>10} {'LiteRT.js ms':>13} {'js/LiteRT':>10} "
          f"{'max |js - LiteRT|':>18}  check")
    for name, row in results.items():
        a, b = row["ms"]["litert"], row["ms"]["litertjs"]
        print(f"  {SPECS[name].title:26} {row['bytes']:>11,} {a:>10.2f} {b:>13.2f} {b / a:>10.2f} "
              f"{row['max_diff']:>18.2e}  {row['check']} in {row['check_seconds']:.1f} s")


if __name__ == "__main__":
    main()
