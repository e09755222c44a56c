"""Engine stage times for one model vs the seed blog's hand-run pipeline, side by side.

Each side runs in a fresh Python process (imports included), `--runs` times, alternating;
medians are printed, and the ratio ours ÷ hand-run. Ours also verifies every artifact in its
runtime at batch 1 and 3 and, by default, builds TFLite from the lowered plain-TF graph;
the hand-run does neither.

usage: .venv/bin/python bench/bench_engine.py [--size 224] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def build_model(path: Path, size: int) -> None:
    os.environ.setdefault("KERAS_BACKEND", "jax")
    from tests.zoo import with_real_bn
    import keras

    model = keras.applications.MobileNetV2(input_shape=(size, size, 3), weights=None,
                                           classifier_activation=None)
    with_real_bn(model).save(path)


def run_ours(model: Path, out: Path) -> dict:
    t0 = time.perf_counter()
    subprocess.run([str(ROOT / ".venv/bin/jaxport"), "convert", str(model), "-o", str(out),
                    "--targets", "savedmodel,tflite"], check=True, capture_output=True)
    wall = time.perf_counter() - t0
    report = json.loads((out / "report.json").read_text())
    # The stages' own seconds (report["timings"]); they overlap (two processes, threads), so
    # they add up to more than the total.
    t = report["timings"]
    stages = {"import": t["import"], "load": t["load"], "reference": t["reference"],
              "savedmodel": t["savedmodel.build"], "tflite": t["tflite.build"] + t.get("lowering", 0.0),
              "verify": t["savedmodel.verify"] + t["tflite.verify"] + t.get("tflite.litertjs", 0.0)}
    return {**stages, "total": wall, "tflite_source": report["targets"]["tflite"].get("source")}


def run_handrun(model: Path, out: Path) -> dict:
    proc = subprocess.run([str(ROOT / ".venv/bin/python"), str(ROOT / "bench/handrun.py"),
                           str(model), str(out)], check=True, capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = tmp / "mobilenet_v2.keras"
        build_model(model, args.size)
        ours, hand = [], []
        for i in range(args.runs):
            ours.append(run_ours(model, tmp / f"ours{i}"))
            hand.append(run_handrun(model, tmp / f"hand{i}"))
    med = lambda rows, k: statistics.median(r[k] for r in rows)  # noqa: E731
    print(f"MobileNetV2 {args.size}x{args.size}, median of {args.runs} fresh-process runs (s)")
    print("ours:     " + "  ".join(f"{k} {med(ours, k):.1f}" for k in
                                   ("import", "load", "reference", "savedmodel", "tflite", "verify", "total"))
          + "  (stages overlap)")
    print("hand-run: " + "  ".join(f"{k} {med(hand, k):.1f}" for k in
                                   ("import", "load", "savedmodel", "tflite", "total")))
    print(f"tflite built from: {ours[0]['tflite_source']}")
    print(f"ratio total ours/hand-run: {med(ours, 'total') / med(hand, 'total'):.2f}")


if __name__ == "__main__":
    main()
