"""Benchmark: a worker's time to first job (cold start).

    python bench/bench_worker_start.py [--runs 3]

Starts redis-server and the API, queues two tiny jobs, then starts one `jaxport worker` and
measures from its start until the first job is `running` (taken) and `succeeded`, and until
the second (which meets the worker still warming up) has succeeded. Each run uses a
fresh worker process (and a fresh Redis), so the imports and warm-up are paid every time;
the compile cache is whatever JAXPORT_COMPILE_CACHE_DIR says. The baseline, run beside it in
alternating order: the hand-run script of bench_service (a fresh Python process: imports,
keras load, orbax, TFLiteConverter, no verification) on the same model. Prints the medians,
first job succeeded ÷ hand-run, and the worker's warm-up and task lines.
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


def one_run(work: Path, model: Path) -> tuple[float, float, float, list[str]]:
    """(first job taken, first job succeeded, second job succeeded) in seconds from the
    worker's start, and its warm-up log lines."""
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
        jobs = [client.submit(model, {**TARGETS, "name": name})["id"] for name in ("first", "second")]
        log = work / "worker.log"
        t0 = time.perf_counter()
        procs.append(subprocess.Popen([sys.executable, "-m", "service", "worker"], cwd=work,
                                      env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT))
        taken, done = None, {}
        while len(done) < len(jobs):
            for job in jobs:
                state = client.job(job)
                if taken is None and job == jobs[0] and state["status"] != "queued":
                    taken = time.perf_counter() - t0
                if job not in done and state["status"] in ("succeeded", "partial", "failed", "canceled"):
                    if state["status"] != "succeeded":
                        raise SystemExit(f"job ended {state['status']}: {state['error']}")
                    done[job] = time.perf_counter() - t0
            time.sleep(0.1)
        lines = [line for line in log.read_text(errors="replace").splitlines()
                 if "pool process" in line or "succeeded in" in line]
        return taken, done[jobs[0]], done[jobs[1]], lines
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
    takens, dones, seconds, hands = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="jaxport-bench-") as tmp:
        work = Path(tmp)
        model = build_model("tiny", work / "tiny.keras")
        for i in range(args.runs):
            if i % 2:
                hands.append(hand_run(model))
            (work / "storage").mkdir(exist_ok=True)
            taken, done, second, lines = one_run(work, model)
            if not i % 2:
                hands.append(hand_run(model))
            takens.append(taken)
            dones.append(done)
            seconds.append(second)
            print(f"run {i}: first job taken after {taken:.1f} s, succeeded after {done:.1f} s; "
                  f"second job succeeded after {second:.1f} s; hand-run {hands[-1]:.1f} s", flush=True)
            for line in lines:
                print("   ", line.strip()[:240])
    med = statistics.median
    print(f"worker start -> first job taken: median {med(takens):.1f} s; -> succeeded: median "
          f"{med(dones):.1f} s; -> second job succeeded: median {med(seconds):.1f} s; hand-run "
          f"script: median {med(hands):.1f} s; first job succeeded / hand-run "
          f"{med(dones) / med(hands):.2f}")


if __name__ == "__main__":
    main()
