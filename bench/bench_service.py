"""Benchmark: job time on a warm jaxport service vs the hand-run pipeline, and API memory
while a 500 MB upload streams in.

    python bench/bench_service.py [--models tiny,mobilenet] [--runs 3] [--upload-mb 500]

Models: tiny (an MLP), mobilenet (MobileNetV2 96x96), effb0 (EfficientNetB0 96x96), bert (a
small keras_hub BertBackbone; the seed recipe cannot convert its dict of int inputs, so it
has no hand-run and no ratio).

Starts `jaxport up` (own redis-server, one worker, file storage in a temp dir), warms it with
one job, then for each model alternates: a service job (submit -> succeeded, upload and
download of nothing else included; savedmodel + tflite, each verified in its runtime) and the
hand-run pipeline of the seed blog in a fresh Python process (keras load, orbax JaxModule +
ExportManager, TFLiteConverter; no verification). Prints the median of each and the ratio,
then each model's per-stage table (the jobs' `timings`, medians; stages of the two conversion
processes and of a process's threads overlap, so they add up to more than the job).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.client import Client  # noqa: E402

TARGETS = {"targets": ["savedmodel", "tflite"]}

HAND_RUN = r'''
import os, sys
os.environ["KERAS_BACKEND"] = "jax"
import keras
import tensorflow as tf
from orbax.export import ExportManager, JaxModule, ServingConfig

model = keras.saving.load_model(sys.argv[1])
out = sys.argv[2]
params = ([v.value for v in model.trainable_variables],
          [v.value for v in model.non_trainable_variables])

def serve(params, x):
    y, _ = model.stateless_call(params[0], params[1], x, training=False)
    return y

shape = model.inputs[0].shape
module = JaxModule(params, serve, input_polymorphic_shape="(b, " + ", ".join(
    str(d) for d in shape[1:]) + ")")
signature = [tf.TensorSpec((None, *shape[1:]), tf.float32, name="x")]
ExportManager(module, [ServingConfig("serving_default", input_signature=signature)]).save(out + "/sm")
converter = tf.lite.TFLiteConverter.from_saved_model(out + "/sm")
open(out + "/model.tflite", "wb").write(converter.convert())
'''


def build_model(kind: str, path: Path) -> Path:
    code = {
        "tiny": "x = keras.Input((8,)); m = keras.Model(x, keras.layers.Dense(4)("
                "keras.layers.Dense(16, activation='relu')(x)))",
        "mobilenet": "m = keras.applications.MobileNetV2(input_shape=(96, 96, 3), weights=None, "
                     "classes=10, classifier_activation=None)",
        "effb0": "m = keras.applications.EfficientNetB0(input_shape=(96, 96, 3), weights=None, "
                 "classes=10, classifier_activation=None)",
        # a BERT-style keras_hub backbone: dict of int inputs, symbolic sequence length
        "bert": "import keras_hub\nm = keras_hub.models.BertBackbone(vocabulary_size=1000, "
                "num_layers=2, num_heads=4, hidden_dim=64, intermediate_dim=128, max_sequence_length=64)",
    }[kind]
    subprocess.run([sys.executable, "-c", f"import os; os.environ['KERAS_BACKEND']='jax'\n"
                    f"import keras\n{code}\nm.save({str(path)!r})"], check=True,
                   capture_output=True)
    return path


HAND_RUN_KINDS = {"tiny", "mobilenet", "effb0"}
"""The models the seed recipe converts (one float input); the others get no hand-run."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(work: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "JAXPORT_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
           "JAXPORT_STORAGE_URL": f"file://{work / 'storage'}", "KERAS_BACKEND": "jax",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("JAXPORT_API_KEYS", None)
    up = subprocess.Popen([sys.executable, "-m", "service", "up", "--port", str(port)], cwd=work,
                          env=env, stdout=open(work / "up.log", "wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, work / "up.log")
    return up, url


def wait_healthy(url: str, log: Path, timeout_s: float = 300) -> None:
    """Return once `url`/healthz answers 200; exit pointing at `log` if it never does."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the service did not start; see {log}")


def service_job(client: Client, model: Path, name: str) -> tuple[float, dict[str, float]]:
    """(seconds from submit to succeeded, the job's per-stage `timings`)."""
    t0 = time.perf_counter()
    job = client.submit(model, {**TARGETS, "name": name})
    job = client.wait(job["id"])
    elapsed = time.perf_counter() - t0
    if job["status"] != "succeeded":
        raise SystemExit(f"job {job['id']} ended {job['status']}: {job['error']}")
    return elapsed, job.get("timings") or {}


def stage_table(kind: str, runs: list[dict[str, float]]) -> str:
    """The median seconds of each stage over `runs`, in the order the stages ran."""
    names = list(dict.fromkeys(name for run in runs for name in run))
    cells = [f"{name} {statistics.median(run.get(name, 0.0) for run in runs):.2f}" for name in names]
    return f"  {kind} stages (median s): " + ", ".join(cells)


def hand_run(model: Path) -> float:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", HAND_RUN, str(model), out], check=True,
                       capture_output=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        return time.perf_counter() - t0


def api_process(up: subprocess.Popen) -> psutil.Process:
    return next(p for p in psutil.Process(up.pid).children(recursive=True)
                if "serve" in p.cmdline())


def upload_peak_rss(client: Client, api: psutil.Process, work: Path, mb: int) -> tuple[float, float]:
    """(API RSS before, peak API RSS during) a `mb` MB upload, in MB."""
    big = work / "big.keras"
    with open(big, "wb") as fh:
        fh.write(b"PK\x03\x04")
        fh.truncate(mb * 2**20)  # sparse: cheap to make, still `mb` MB on the wire
    before = api.memory_info().rss / 2**20
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], api.memory_info().rss / 2**20)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        client.submit(big, TARGETS)
    except Exception as exc:  # the upload is not a model: a 422 after it has streamed in
        if "422" not in str(exc):
            raise
    finally:
        done.set()
        sampler.join()
        big.unlink()
    return before, peak[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,mobilenet")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--upload-mb", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jaxport-bench-") as tmp:
        work = Path(tmp)
        models = {k: build_model(k, work / f"{k}.keras") for k in args.models.split(",")}
        up, url = start_service(work)
        try:
            client = Client(url, timeout=600)
            service_job(client, models[next(iter(models))], "warm-up")
            tables: list[str] = []
            print(f"{'model':<10} {'job s (median)':>15} {'hand-run s (median)':>20} {'ratio':>7}")
            for kind, model in models.items():
                jobs, hands, stages = [], [], []
                for i in range(args.runs):
                    seconds, timings = service_job(client, model, f"bench-{kind}-{i}")
                    jobs.append(seconds)
                    stages.append(timings)
                    if kind in HAND_RUN_KINDS:
                        hands.append(hand_run(model))
                job_s = statistics.median(jobs)
                if hands:
                    hand_s = statistics.median(hands)
                    print(f"{kind:<10} {job_s:>15.2f} {hand_s:>20.2f} {job_s / hand_s:>7.2f}", flush=True)
                else:
                    print(f"{kind:<10} {job_s:>15.2f} {'-':>20} {'-':>7}", flush=True)
                tables.append(stage_table(kind, stages))
            print("\n".join(tables))
            before, peak = upload_peak_rss(client, api_process(up), work, args.upload_mb)
            print(f"API RSS while a {args.upload_mb} MB upload streams in: {before:.0f} MB before, "
                  f"{peak:.0f} MB peak (+{peak - before:.0f} MB)")
        finally:
            up.send_signal(signal.SIGTERM)
            up.wait(120)


if __name__ == "__main__":
    main()
