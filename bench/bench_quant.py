"""Quantized TFLite: jaxport's route vs the native Keras route, quantized with the same recipe.

For each model (one `.keras` file, JAX backend) and each mode (`int8-dynamic`, `int8` static,
`float16`):
- ours: `convert_archive(..., quantize="int8")` with samples.npz calibration rows (what
  `jaxport convert --quantize int8` runs; its float `model.tflite` comes from our lowered
  plain-TF graph), and `jaxport.targets.tflite.quantize_tflite` of that float model for the
  other modes (the very function the target calls);
- native: a fresh process on Keras's JAX backend runs `model.export(format="tf_saved_model")`,
  then `tf.lite.TFLiteConverter.from_saved_model` makes the float model and the same
  `quantize_tflite` (same ai-edge-quantizer recipe, same calibration rows) quantizes it.

Printed per model and mode: bytes, LiteRT latency (1 thread, batch 1; median over rounds that
alternate ours and native, in reverse order every other round, each round a median of several
invokes), and accuracy against the float Keras model called directly on held-out rows (not
the calibration rows): SQNR per output (numpy) and, for class scores, top-1 agreement; each
latency/bytes ratio ours/native.

usage: .venv/bin/python bench/bench_quant.py [--models mobilenet_v2_96,bert] [--rounds 5]
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
from bench_artifacts import BERT_MANIFEST, BERT_SEQ, Litert, _bert, _feed  # noqa: E402
from bench_onnx import _run_native_export  # noqa: E402

MODES = ("int8-dynamic", "int8", "float16")
CALIBRATION_ROWS = 32
EVAL_ROWS = 16


def _mobilenet():
    import keras
    from tests.zoo import images, with_real_bn

    model = keras.applications.MobileNetV2(input_shape=(96, 96, 3), weights=None,
                                           classifier_activation=None)
    return with_real_bn(model, calibration=images(model, rows=16))


def _mobilenet_rows(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    # MobileNet's preprocess_input range, as tests.zoo.images gives it
    return {"image": rng.uniform(-1, 1, (n, 96, 96, 3)).astype("float32")}


def _bert_rows(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    lengths = rng.integers(BERT_SEQ // 4, BERT_SEQ + 1, n)
    mask = (np.arange(BERT_SEQ)[None] < lengths[:, None]).astype("int32")
    return {"token_ids": (rng.integers(1, 1000, (n, BERT_SEQ)) * mask).astype("int32"),
            "segment_ids": (np.arange(BERT_SEQ)[None] >= lengths[:, None] // 2).astype("int32") * mask,
            "padding_mask": mask}


# name → (title, build, rows(rng, n), fixed sequence length, whether the output is class scores)
MODELS = {"mobilenet_v2_96": ("MobileNetV2 96x96 (alpha 1.0, 1000 logits)", _mobilenet,
                              _mobilenet_rows, None, True),
          "bert": (f"BERT encoder (keras_hub, 2x128, seq {BERT_SEQ})", _bert, _bert_rows, BERT_SEQ,
                   False)}


def _native_float(model_path: Path, work: Path, seq: int | None) -> tuple[Path, str]:
    """The native route's float model: `model.export(format="tf_saved_model")` in a child
    process on the JAX backend, then `TFLiteConverter.from_saved_model`; at a symbolic batch,
    else (the converter refuses some dynamic-shape StableHLO) at batch 1. Returns the file and
    a note saying which."""
    import tensorflow as tf

    failure = ""
    for batch in (None, 1):
        saved = _run_native_export(model_path, work / f"native_saved_model_{batch}", seq,
                                   "tf_saved_model", batch)
        if isinstance(saved, str):
            raise RuntimeError(f"native export {saved}")
        try:
            flatbuffer = tf.lite.TFLiteConverter.from_saved_model(str(saved)).convert()
        except Exception as exc:  # noqa: BLE001 - ConverterError; the message is in the note
            failure = next((line.split("error:", 1)[1].strip() for line in str(exc).splitlines()
                            if "error:" in line), type(exc).__name__)
            continue
        out = work / "native.tflite"
        out.write_bytes(flatbuffer)
        return out, (f"native at batch 1 (symbolic batch: {failure})" if batch else "")
    raise RuntimeError(f"native TFLite conversion failed: {failure}")


def _signature(path: Path) -> tuple[str, list[str]]:
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_path=str(path)).get_signature_list()
    key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
    return key, list(signatures[key]["inputs"])


def _calibration(path: Path, rows: dict[str, np.ndarray]) -> dict:
    key, names = _signature(path)
    n = next(iter(rows.values())).shape[0]
    return {key: [_feed(names, {k: v[i:i + 1] for k, v in rows.items()}) for i in range(n)]}


def _run(path: Path, rows: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The model's outputs on `rows`, one row at a time (a batch-1 native model takes no
    more), in the order of their sizes (names differ per route)."""
    from ai_edge_litert.interpreter import Interpreter

    key, names = _signature(path)
    runner = Interpreter(model_path=str(path), num_threads=1).get_signature_runner(key)
    n = next(iter(rows.values())).shape[0]
    outs = [runner(**_feed(names, {k: v[i:i + 1] for k, v in rows.items()})) for i in range(n)]
    stacked = [np.concatenate([np.array(o[name]) for o in outs]) for name in outs[0]]
    return sorted(stacked, key=lambda a: (a.size, a.ndim))


def _accuracy(got: list[np.ndarray], want: list[np.ndarray],
              scores: bool) -> tuple[list[float], float | None]:
    """SQNR (dB) per output and, for a class-score model, top-1 agreement of its output."""
    sqnr = [float(10 * np.log10(np.sum(w.astype(np.float64) ** 2)
                                / np.sum((g.astype(np.float64) - w) ** 2))) for g, w in zip(got, want)]
    top1 = float(np.mean(got[0].argmax(-1) == want[0].argmax(-1))) if scores else None
    return sqnr, top1


def bench(name: str, rounds: int, runs: int) -> list[dict]:
    import keras

    from jaxport.errors import TargetError
    from jaxport.options import ConvertOptions
    from jaxport.pipeline import convert_archive
    from jaxport.targets.tflite import quantize_tflite
    from tests.zoo import make_zip, npz_bytes

    title, build, make_rows, seq, scores = MODELS[name]
    model = build()
    calibration = make_rows(np.random.default_rng(1), CALIBRATION_ROWS)
    held_out = make_rows(np.random.default_rng(2), EVAL_ROWS)
    out = model(held_out if seq else held_out["image"])
    want = sorted((np.asarray(v) for v in (out.values() if isinstance(out, dict) else [out])),
                  key=lambda a: (a.size, a.ndim))
    single = {k: v[:1] for k, v in held_out.items()}
    rows = []
    with tempfile.TemporaryDirectory(prefix="jaxport-bench-quant-") as tmp:
        work = Path(tmp)
        keras_path = work / "model.keras"
        model.save(keras_path)
        if seq is None:  # samples.npz keys are the input's name in the saved file
            name_in_file = keras.saving.load_model(keras_path, compile=False).inputs[0].name
            calibration = {name_in_file: calibration["image"]}
        source = keras_path if seq is None else make_zip(work / "bert.zip", {
            "jaxport.toml": BERT_MANIFEST.encode(), "model.keras": keras_path,
            "samples.npz": npz_bytes(**calibration)})
        print(f"[{name}] ours: convert --quantize int8", file=sys.stderr, flush=True)
        report = convert_archive(source, work / "ours", ConvertOptions(
            targets=["tflite"], quantize="int8", min_sqnr=0),
            samples=None if seq else calibration)
        result = report["targets"]["tflite"]
        assert result["status"] == "ok", result["error"]
        ours_float = work / "ours" / "model.tflite"
        print(f"[{name}] native: model.export + TFLiteConverter", file=sys.stderr, flush=True)
        native_float, note = _native_float(keras_path, work, seq)
        files = {("float", "ours"): ours_float, ("float", "native"): native_float,
                 ("int8", "ours"): work / "ours" / "model.int8.tflite"}
        failed: dict = {}  # (mode, route) → the quantizer's message
        for mode in MODES:
            for route, float_path in (("ours", ours_float), ("native", native_float)):
                if (mode, route) in files:
                    continue
                try:
                    files[mode, route] = quantize_tflite(
                        float_path, work / f"{route}.{mode}.tflite", mode,
                        _calibration(float_path, calibration) if mode == "int8" else None)
                except TargetError as exc:
                    failed[mode, route] = str(exc)
        interps = {k: Litert(p, single) for k, p in files.items()}
        lat: dict = {k: [] for k in files}
        for r in range(rounds):
            for k in list(interps)[::(-1 if r % 2 else 1)]:
                lat[k].append(interps[k].median_ms(runs))
        for mode in ("float", *MODES):
            row = {"model": title, "mode": mode, "note": note}
            for route in ("ours", "native"):
                if (mode, route) in failed:
                    row[route] = {"failed": failed[mode, route]}
                    continue
                path = files[mode, route]
                sqnr, top1 = _accuracy(_run(path, held_out), want, scores)
                row[route] = {"bytes": path.stat().st_size, "ms": statistics.median(lat[mode, route]),
                              "sqnr": sqnr, "top1": top1}
            rows.append(row)
    return rows


def _fmt_acc(r: dict) -> str:
    text = "/".join(f"{s:.1f}" for s in r["sqnr"])
    return text + (f" top1 {r['top1']:.2f}" if r["top1"] is not None else "")


def print_table(rows: list[dict]) -> None:
    print(f"{'model':44} {'mode':13} {'bytes ours':>11} {'native':>11} {'ratio':>6} "
          f"{'ms ours':>8} {'native':>8} {'ratio':>6}  {'SQNR dB ours':>22}  {'native':>22}")
    for row in rows:
        o, n = row["ours"], row["native"]
        if "failed" in o or "failed" in n:
            for route, r in (("ours", o), ("native", n)):
                print(f"{row['model']:44} {row['mode']:13} {route}: " + (
                    f"FAILED {r['failed'][:150]}" if "failed" in r else
                    f"{r['bytes']:,} bytes, {r['ms']:.2f} ms, SQNR {_fmt_acc(r)}"))
            continue
        print(f"{row['model']:44} {row['mode']:13} {o['bytes']:>11,} {n['bytes']:>11,} "
              f"{o['bytes'] / n['bytes']:>6.2f} {o['ms']:>8.2f} {n['ms']:>8.2f} "
              f"{o['ms'] / n['ms']:>6.2f}  {_fmt_acc(o):>22}  {_fmt_acc(n):>22}")
    for note in dict.fromkeys(row["note"] for row in rows if row["note"]):
        print(f"note: {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {list(MODELS)}")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per artifact")
    parser.add_argument("--runs", type=int, default=20, help="timed LiteRT invokes per round")
    args = parser.parse_args()
    os.environ.setdefault("KERAS_BACKEND", "jax")
    rows = [row for name in args.models.split(",") for row in bench(name, args.rounds, args.runs)]
    print(f"batch 1, LiteRT 1 thread; latency = median over {args.rounds} alternating rounds of "
          f"the median of {args.runs} invokes; accuracy vs the float Keras model on {EVAL_ROWS} "
          f"held-out rows (SQNR per output, smallest output first); static int8 calibrated on "
          f"the same {CALIBRATION_ROWS} rows for both routes")
    print_table(rows)


if __name__ == "__main__":
    main()
