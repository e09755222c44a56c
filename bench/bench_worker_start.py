"""Benchmark: a worker's time to first job (cold start).

    python bench/bench_worker_start.py [--runs 3]

Starts redis-server and the API, queues a tiny job, then starts one `jaxport worker` and
measures from its start until the job is `running` (taken) and `succeeded`. Each run uses a
fresh worker process (and a fresh Redis), so the imports and warm-up are paid every time;
the compile cache is whatever JAXPORT_COMPILE_CACHE_DIR says. The baseline, run beside it in
alternating order: the hand-run script of bench_service (a fresh Python process: imports,
keras load, orbax, TFLiteConverter, no verification) on the same model. Prints the medians,
first job succeeded ÷ hand-run, and the worker's own warm-up lines.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_service import TARGETS, build_model, free_port, hand_run  # noqa: E402
from service.client import Client  # noqa: E402


def one_run(work: Path, model: Path) -> tuple[float, float, list[str]]:
    redis_port, api_port = free_port(), free_port()
    env = {**os.environ, "JAXPORT_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
           "JAXPORT_STORAGE_URL": f"file://{work / 'storage'}", "KERAS_BACKEND": "jax",
           "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    env.pop("JAXPORT_API_KEYS", None)
    procs = [subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port",
                               str(redis_port), "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL)]
    try:
        procs.append(subprocess.Popen([sys.executable, "-m", "service", "serve", "--port",
                                       str(api_port)], cwd=work, env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        url = f"http://127.0.0.1:{api_port}"
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        client = Client(url, timeout=600)
        job = client.submit(model, {**TARGETS, "name": "first"})
        log = work / "worker.log"
        t0 = time.perf_counter()
        procs.append(subprocess.Popen([sys.executable, "-m", "service", "worker"], cwd=work,
                                      env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT))
        taken = None
        while True:
            state = client.job(job["id"])
            if taken is None and state["status"] != "queued":
                taken = time.perf_counter() - t0
            if state["status"] in ("succeeded", "partial", "failed", "canceled"):
                break
            time.sleep(0.1)
        done = time.perf_counter() - t0
        if state["status"] != "succeeded":
            raise SystemExit(f"job ended {state['status']}: {state['error']}")
        lines = [line for line in log.read_text(errors="replace").splitlines() if "pool process" in line]
        return taken, done, lines
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    takens, dones, hands = [], [], []
    with tempfile.TemporaryDirectory(prefix="jaxport-bench-") as tmp:
        work = Path(tmp)
        model = build_model("tiny", work / "tiny.keras")
        for i in range(args.runs):
            if i % 2:
                hands.append(hand_run(model))
            (work / "storage").mkdir(exist_ok=True)
            taken, done, lines = one_run(work, model)
            if not i % 2:
                hands.append(hand_run(model))
            takens.append(taken)
            dones.append(done)
            print(f"run {i}: taken after {taken:.1f} s, succeeded after {done:.1f} s; hand-run "
                  f"{hands[-1]:.1f} s", flush=True)
            for line in lines:
                print("   ", line.strip()[:240])
    print(f"worker start -> first job taken: median {statistics.median(takens):.1f} s; "
          f"-> succeeded: median {statistics.median(dones):.1f} s; hand-run script: median "
          f"{statistics.median(hands):.1f} s; succeeded / hand-run "
          f"{statistics.median(dones) / statistics.median(hands):.2f}")

if __name__ == "__main__":
    main()
