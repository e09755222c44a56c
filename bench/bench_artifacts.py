"""Artifact speed and size: jaxport's TF.js and LiteRT artifacts vs the native export, side by side.

For each model the same architecture and weights (one `.keras` file, real BatchNorm statistics)
are exported three ways:
- ours: `convert_archive` (what `jaxport convert` runs) → TF.js and TFLite from our lowered
  plain-TF graph, plus the orbax SavedModel;
- native: a fresh process on Keras's TensorFlow backend loads the `.keras` file and runs
  `model.export(format="tf_saved_model")`; that SavedModel goes through the tensorflowjs
  converter (`jaxport.targets.tfjs.export_tfjs`, the same converter call and post-fixes ours
  gets) and `TFLiteConverter.from_saved_model`;
- orbax-path TFLite: `TFLiteConverter.from_saved_model` on our orbax SavedModel (its
  `XlaCallModule` goes through StableHLO).

Printed per model: TF.js latency under Node (cpu backend) and LiteRT latency at 1 thread
(batch 1; median over rounds that alternate the artifacts, in reverse order every other
round, each round itself a median of several runs), artifact bytes, op count (TFLite: ops of
the signature's subgraph; TF.js: model.json nodes other than Const/Placeholder), and each
ratio. The max |ours − native| of the LiteRT outputs shows the two really compute the same
function.

usage: .venv/bin/python bench/bench_artifacts.py [--models mobilenet_v2_96,bert] [--rounds 3]
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
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIGNATURE = "serving_default"
Inputs = dict[str, np.ndarray]


@dataclass(frozen=True)
class Spec:
    """A benchmark model: how to build it (JAX backend) and a batch-1 input."""

    title: str
    build: Callable[[], object]
    inputs: Callable[[np.random.Generator], Inputs]
    seq: int | None = None  # fixed sequence length of a token-input model


def _image(size: int) -> Callable[[np.random.Generator], Inputs]:
    return lambda rng: {"image": rng.standard_normal((1, size, size, 3)).astype("float32")}


def _application(name: str, size: int) -> Callable[[], object]:
    def build():
        import keras
        from tests.zoo import with_real_bn

        model = getattr(keras.applications, name)(input_shape=(size, size, 3), weights=None,
                                                  classifier_activation=None)
        return with_real_bn(model)
    return build


BERT = {"vocabulary_size": 1000, "num_layers": 2, "num_heads": 2, "hidden_dim": 128,
        "intermediate_dim": 512, "max_sequence_length": 128}
BERT_SEQ = 128


def _bert():
    import keras_hub

    return keras_hub.models.BertBackbone(**BERT, dropout=0.0)


def _bert_inputs(rng: np.random.Generator) -> Inputs:
    mask = np.ones((1, BERT_SEQ), "int32")
    mask[:, BERT_SEQ * 3 // 4:] = 0
    return {"token_ids": rng.integers(0, BERT["vocabulary_size"], (1, BERT_SEQ)).astype("int32"),
            "segment_ids": (np.arange(BERT_SEQ)[None] >= BERT_SEQ // 2).astype("int32"),
            "padding_mask": mask}


SPECS = {
    "mobilenet_v2_96": Spec("MobileNetV2 96x96", _application("MobileNetV2", 96), _image(96)),
    "mobilenet_v2_224": Spec("MobileNetV2 224x224", _application("MobileNetV2", 224), _image(224)),
    "efficientnet_b0": Spec("EfficientNetB0 224x224", _application("EfficientNetB0", 224), _image(224)),
    "bert": Spec(f"BERT encoder (keras_hub, 2x128, seq {BERT_SEQ})", _bert, _bert_inputs, seq=BERT_SEQ),
}

BERT_MANIFEST = f"""
format = 1

[models]
bert = "model.keras"

[functions.serving_default]
inputs = {{ token_ids = "i32[b,{BERT_SEQ}]", segment_ids = "i32[b,{BERT_SEQ}]", padding_mask = "i32[b,{BERT_SEQ}]" }}
outputs = {{ sequence_output = "sequence_output", pooled_output = "pooled_output" }}

[[functions.serving_default.steps]]
bind = ["sequence_output", "pooled_output"]
call = "bert"
args = {{ token_ids = "token_ids", segment_ids = "segment_ids", padding_mask = "padding_mask" }}
"""


# --- the native side: a fresh process on the TensorFlow backend --------------------------------

def native_export(model_path: Path, out: Path, seq: int | None) -> None:
    """`model.export` of the `.keras` file on Keras's TensorFlow backend (run in a child process)."""
    assert os.environ.get("KERAS_BACKEND") == "tensorflow"
    import keras
    import keras_hub  # noqa: F401 - registers the keras_hub classes the file may name
    import tensorflow as tf

    model = keras.saving.load_model(model_path, compile=False)
    signature = None
    if seq is not None:  # the same fixed sequence length our manifest declares
        signature = [{name: tf.TensorSpec((None, seq), tf.int32, name=name)
                      for name in (t.name for t in model.inputs)}]
    model.export(str(out), format="tf_saved_model", input_signature=signature, verbose=False)


def _run_native_export(model_path: Path, out: Path, seq: int | None) -> Path:
    cmd = [sys.executable, __file__, "--native-export", str(model_path), str(out)]
    if seq is not None:
        cmd += ["--seq", str(seq)]
    subprocess.run(cmd, check=True, env={**os.environ, "KERAS_BACKEND": "tensorflow"},
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return out


# --- building the artifacts ------------------------------------------------------------------

@dataclass
class Artifacts:
    """One model's artifacts; a missing one is a string saying why."""

    tflite: dict[str, Path | str]  # ours, native, orbax
    tfjs: dict[str, Path | str]  # ours, native


def _ours_source(spec: Spec, model_path: Path, work: Path) -> Path:
    """The `.keras` file itself, or for a token model an archive fixing the sequence length."""
    if spec.seq is None:
        return model_path
    from tests.zoo import make_zip, npz_bytes

    samples = {k: np.repeat(v, 3, axis=0) for k, v in spec.inputs(np.random.default_rng(1)).items()}
    return make_zip(work / "bert.zip", {"jaxport.toml": BERT_MANIFEST.encode(),
                                        "model.keras": model_path,
                                        "samples.npz": npz_bytes(**samples)})


def build_artifacts(spec: Spec, work: Path) -> Artifacts:
    from jaxport.errors import TargetError
    from jaxport.options import ConvertOptions
    from jaxport.pipeline import convert_archive
    from jaxport.targets.tflite import export_tflite
    from jaxport.targets.tfjs import export_tfjs

    model_path = work / "model.keras"
    spec.build().save(model_path)
    out = work / "ours"
    report = convert_archive(_ours_source(spec, model_path, work), out, ConvertOptions())
    targets = report["targets"]
    for name, result in targets.items():
        if result["status"] != "ok":
            print(f"  ours {name}: {result['status']}: {result['error']}", file=sys.stderr)
    print(f"  ours tflite source: {targets['tflite'].get('source')}", file=sys.stderr)
    tflite: dict[str, Path | str] = {"ours": out / "model.tflite"}
    tfjs: dict[str, Path | str] = {"ours": out / "tfjs"}

    def attempt(label: str, make: Callable[[], Path]) -> Path | str:
        try:
            return make()
        except (TargetError, subprocess.CalledProcessError) as exc:
            detail = exc.stderr.decode()[-600:] if isinstance(exc, subprocess.CalledProcessError) else exc
            print(f"  {label} failed: {detail}", file=sys.stderr)
            return f"failed: {str(detail).strip().splitlines()[-1][:120]}"

    tflite["orbax"] = attempt("orbax-path tflite", lambda: export_tflite(
        out / "savedmodel", work / "orbax.tflite", signatures=[SIGNATURE]))
    native = attempt("native export", lambda: _run_native_export(model_path, work / "native_sm", spec.seq))
    if isinstance(native, str):
        tflite["native"] = tfjs["native"] = native
    else:
        tflite["native"] = attempt("native tflite", lambda: export_tflite(
            native, work / "native.tflite", signatures=[SIGNATURE]))
        tfjs["native"] = attempt("native tfjs", lambda: export_tfjs(
            native, work / "native_tfjs", signature=SIGNATURE))
    return Artifacts(tflite, tfjs)


# --- measuring -------------------------------------------------------------------------------

def _feed(names: list[str], inputs: Inputs) -> Inputs:
    """Our inputs under an artifact's input names (one input: whatever its name is)."""
    if len(names) == 1 and len(inputs) == 1:
        return {names[0]: next(iter(inputs.values()))}
    return {name: inputs[next(k for k in inputs if name == k or name.startswith(k))] for name in names}


class Litert:
    """A 1-thread LiteRT interpreter allocated for `inputs` (batch 1)."""

    def __init__(self, path: Path, inputs: Inputs) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.path = path
        self.interpreter = Interpreter(model_path=str(path), num_threads=1)
        runner = self.interpreter.get_signature_runner(SIGNATURE)
        names = list(self.interpreter.get_signature_list()[SIGNATURE]["inputs"])
        self.outputs = {k: np.array(v) for k, v in runner(**_feed(names, inputs)).items()}

    def median_ms(self, runs: int) -> float:
        """Median of `runs` `invoke()` calls (the signature's subgraph is the only one)."""
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            self.interpreter.invoke()
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)


def tflite_ops(path: Path) -> Counter[str]:
    """Operators by type in the signature's subgraph of the flatbuffer (before any delegate)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    return Counter(op["op_name"] for op in interpreter._get_ops_details() if op["op_name"] != "DELEGATE")


def tfjs_ops(model_dir: Path) -> Counter[str]:
    """Compute nodes by op of a TF.js graph model (functions included), Const/Placeholder excluded."""
    topology = json.loads((model_dir / "model.json").read_text())["modelTopology"]
    nodes = list(topology.get("node", []))
    for function in topology.get("library", {}).get("function", []):
        nodes.extend(function.get("nodeDef", []))
    return Counter(n["op"] for n in nodes if n["op"] not in ("Const", "Placeholder"))


def tfjs_input_names(model_dir: Path) -> list[str]:
    return list(json.loads((model_dir / "model.json").read_text())["signature"]["inputs"])


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() \
        else path.stat().st_size


def _max_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    if set(a) != set(b) and len(a) == len(b) == 1:
        a, b = {"y": next(iter(a.values()))}, {"y": next(iter(b.values()))}
    return max(float(np.max(np.abs(a[k].astype("float64") - b[k]))) for k in a)


def measure(spec: Spec, art: Artifacts, rounds: int, tfjs_runs: int, tflite_runs: int) -> dict:
    """Latency medians (alternating rounds), bytes and op counts of every built artifact."""
    from jaxport.verify.tfjs import shared_runner

    inputs = spec.inputs(np.random.default_rng(0))
    ready_tflite = {k: Litert(p, inputs) for k, p in art.tflite.items() if isinstance(p, Path)}
    ready_tfjs = {k: p for k, p in art.tfjs.items() if isinstance(p, Path)}
    runner = shared_runner()
    lat: dict[str, list[float]] = {f"tflite/{k}": [] for k in ready_tflite}
    lat.update({f"tfjs/{k}": [] for k in ready_tfjs})
    for round_ in range(rounds):
        flip = -1 if round_ % 2 else 1  # every other round runs the artifacts in reverse order
        for k, interp in list(ready_tflite.items())[::flip]:
            lat[f"tflite/{k}"].append(interp.median_ms(tflite_runs))
        for k, path in list(ready_tfjs.items())[::flip]:
            _, timing = runner.benchmark(path, _feed(tfjs_input_names(path), inputs),
                                         warmup=2, runs=tfjs_runs)
            lat[f"tfjs/{k}"].append(timing.median_ms)
    row: dict = {"ms": {k: statistics.median(v) for k, v in lat.items()}, "bytes": {}, "ops": {},
                 "op_types": {}, "missing": {}}
    for kind, paths in (("tflite", art.tflite), ("tfjs", art.tfjs)):
        for k, p in paths.items():
            if isinstance(p, str):
                row["missing"][f"{kind}/{k}"] = p
                continue
            row["bytes"][f"{kind}/{k}"] = size(p)
            types = tflite_ops(p) if kind == "tflite" else tfjs_ops(p)
            row["op_types"][f"{kind}/{k}"] = types
            row["ops"][f"{kind}/{k}"] = types.total()
    if "ours" in ready_tflite and "native" in ready_tflite:
        row["max_diff"] = _max_diff(ready_tflite["ours"].outputs, ready_tflite["native"].outputs)
    return row


# --- printing --------------------------------------------------------------------------------

ROWS = [  # label, metric, key, baseline key
    ("TF.js latency ms (Node, cpu)", "ms", "tfjs/ours", "tfjs/native"),
    ("LiteRT latency ms (1 thread)", "ms", "tflite/ours", "tflite/native"),
    ("LiteRT latency ms vs orbax-path", "ms", "tflite/ours", "tflite/orbax"),
    ("TF.js bytes", "bytes", "tfjs/ours", "tfjs/native"),
    ("TFLite bytes", "bytes", "tflite/ours", "tflite/native"),
    ("TF.js ops", "ops", "tfjs/ours", "tfjs/native"),
    ("TFLite ops", "ops", "tflite/ours", "tflite/native"),
    ("TFLite ops vs orbax-path", "ops", "tflite/ours", "tflite/orbax"),
]


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if isinstance(value, float) else f"{value:,}"


def print_table(title: str, row: dict) -> None:
    print(f"\n{title}" + (f"   max |ours - native| (LiteRT outputs) = {row['max_diff']:.2e}"
                          if "max_diff" in row else ""))
    print(f"  {'':34} {'ours':>12} {'baseline':>12} {'ours/base':>10}")
    for label, metric, ours, base in ROWS:
        a, b = row[metric].get(ours), row[metric].get(base)
        ratio = f"{a / b:.2f}" if a is not None and b else "n/a"
        print(f"  {label:34} {_fmt(a):>12} {_fmt(b):>12} {ratio:>10}")
    for key, reason in row["missing"].items():
        print(f"  no {key}: {reason}")
    for kind in ("tfjs", "tflite"):
        ours, native = (row["op_types"].get(f"{kind}/{k}") for k in ("ours", "native"))
        if ours is not None and native is not None:
            diff = {op: ours[op] - native[op] for op in ours | native if ours[op] != native[op]}
            print(f"  {kind} ops ours-native: " + (", ".join(
                f"{op} {n:+d}" for op, n in sorted(diff.items(), key=lambda kv: kv[1])) or "none"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(SPECS), help=f"comma-separated, from {list(SPECS)}")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per artifact")
    parser.add_argument("--tfjs-runs", type=int, default=5, help="timed TF.js runs per round")
    parser.add_argument("--tflite-runs", type=int, default=30, help="timed LiteRT invokes per round")
    parser.add_argument("--native-export", nargs=2, metavar=("MODEL", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--seq", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.native_export:
        native_export(Path(args.native_export[0]), Path(args.native_export[1]), args.seq)
        return
    os.environ.setdefault("KERAS_BACKEND", "jax")
    results = {}
    for name in args.models.split(","):
        spec = SPECS[name]
        print(f"[{name}] building artifacts", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="jaxport-bench-art-") as tmp:
            art = build_artifacts(spec, Path(tmp))
            print(f"[{name}] measuring", file=sys.stderr, flush=True)
            results[name] = measure(spec, art, args.rounds, args.tfjs_runs, args.tflite_runs)
    print(f"batch 1; latency = median over {args.rounds} alternating rounds of the median of "
          f"{args.tfjs_runs} TF.js runs / {args.tflite_runs} LiteRT invokes; baseline = native "
          "Keras-on-TensorFlow export, or the orbax-path TFLite where named")
    for name, row in results.items():
        print_table(SPECS[name].title, row)


if __name__ == "__main__":
    main()
