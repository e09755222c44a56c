"""Benchmark: a burst of concurrent submissions to a service with two conversion slots.

    python bench/bench_load.py [--jobs 50] [--concurrency 2]

Starts `jaxport up --concurrency 2` (own redis-server, one worker with two pool processes,
file storage in a temp dir), warms it with one job, then submits `--jobs` archives at once
from as many threads: three small models (an MLP, a wider MLP, a small CNN), each submission
distinct (its own `name`, so the result cache answers none of them). While they convert, one
client polls the status of every unfinished job in turn, as a user's dashboard would.

Prints throughput (jobs/min, first upload to last terminal), queue wait p50/p95 (accepted ->
first seen running), job time p50/p95 (accepted -> terminal), status-poll latency p50/p99
while converting, peak RSS of the API and of the worker's process tree, and jobs lost (not
terminal by the deadline, or gone): must be 0. The baseline for the poll figures is the same
poll against the idle service, measured in the same run.

The per-tenant limits are raised for the run (one tenant sends the whole burst).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_service import free_port, wait_healthy  # noqa: E402
from service.client import Client  # noqa: E402

TARGETS = ["savedmodel", "tflite"]
MODELS = {
    "mlp": "x = keras.Input((8,)); h = keras.layers.Dense(16, activation='relu')(x); "
           "m = keras.Model(x, keras.layers.Dense(4)(h))",
    "wide": "x = keras.Input((32,)); h = keras.layers.Dense(128, activation='gelu')(x); "
            "m = keras.Model(x, keras.layers.Dense(10)(h))",
    "cnn": "x = keras.Input((16, 16, 3)); h = keras.layers.Conv2D(8, 3, activation='relu')(x); "
           "h = keras.layers.GlobalAveragePooling2D()(h); m = keras.Model(x, keras.layers.Dense(4)(h))",
}
TERMINAL = {"succeeded", "partial", "failed", "canceled"}


def build_models(work: Path) -> dict[str, Path]:
    lines = ["import os; os.environ['KERAS_BACKEND'] = 'jax'", "import keras"]
    paths = {k: work / f"{k}.keras" for k in MODELS}
    lines += [f"{code}\nm.save({str(paths[k])!r})" for k, code in MODELS.items()]
    subprocess.run([sys.executable, "-c", "\n".join(lines)], check=True, capture_output=True)
    return paths


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class Poller(threading.Thread):
    """Polls GET /v1/jobs/{id} of every unfinished job in turn; records each call's latency and
    when each job was first seen running and terminal."""

    def __init__(self, client: Client) -> None:
        super().__init__(daemon=True)
        self.client, self.jobs, self.lock = client, {}, threading.Lock()
        self.latencies: list[float] = []
        self.running_at: dict[str, float] = {}
        self.done_at: dict[str, float] = {}
        self.final: dict[str, dict] = {}
        self.stop = threading.Event()

    def add(self, job_id: str) -> None:
        with self.lock:
            self.jobs[job_id] = True

    def run(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                pending = [j for j in self.jobs if j not in self.done_at]
            if not pending:
                time.sleep(0.05)
                continue
            for job_id in pending:
                t0 = time.perf_counter()
                try:
                    job = self.client.job(job_id)
                except Exception as exc:  # a lost record shows as "gone" in the summary
                    job = {"status": f"error: {exc}"}
                now = time.perf_counter()
                self.latencies.append(now - t0)
                if job["status"] == "running":
                    self.running_at.setdefault(job_id, now)
                if job["status"] in TERMINAL:
                    self.running_at.setdefault(job_id, now)
                    self.done_at[job_id] = now
                    self.final[job_id] = job


def idle_poll_latencies(client: Client, job_id: str, n: int = 200) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.job(job_id)
        out.append(time.perf_counter() - t0)
    return out


def tree_rss_mb(proc: psutil.Process) -> float:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=2, help="conversion slots")
    parser.add_argument("--deadline-s", type=float, default=1800)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jaxport-load-") as tmp:
        work = Path(tmp)
        models = build_models(work)
        port = free_port()
        env = {**os.environ, "JAXPORT_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
               "JAXPORT_STORAGE_URL": f"file://{work / 'storage'}", "KERAS_BACKEND": "jax",
               "TF_CPP_MIN_LOG_LEVEL": "2", "JAXPORT_TENANT_MAX_ACTIVE_JOBS": str(args.jobs + 8),
               "JAXPORT_TENANT_MAX_UPLOADS_PER_MIN": str(10 * args.jobs)}
        env.pop("JAXPORT_API_KEYS", None)
        up = subprocess.Popen([sys.executable, "-m", "service", "up", "--port", str(port),
                               "--concurrency", str(args.concurrency)], cwd=work, env=env,
                              stdout=open(work / "up.log", "wb"), stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, work / "up.log")
            client = Client(url, timeout=600)
            warm = client.wait(client.submit(models["mlp"], {"targets": TARGETS,
                                                             "name": "warm-up"})["id"])
            idle = idle_poll_latencies(client, warm["id"])
            up_proc = psutil.Process(up.pid)
            api = next(p for p in up_proc.children(recursive=True) if "serve" in p.cmdline())
            worker = next(p for p in up_proc.children(recursive=True) if "worker" in p.cmdline())
            peaks = {"api": 0.0, "worker": 0.0}
            sampling = threading.Event()

            def sample() -> None:
                while not sampling.is_set():
                    peaks["api"] = max(peaks["api"], tree_rss_mb(api))
                    peaks["worker"] = max(peaks["worker"], tree_rss_mb(worker))
                    time.sleep(0.2)

            threading.Thread(target=sample, daemon=True).start()
            poller = Poller(Client(url, timeout=60))
            poller.start()
            kinds = list(models)
            accepted: dict[str, float] = {}

            def one(i: int) -> None:
                kind = kinds[i % len(kinds)]
                job = client.submit(models[kind], {"targets": TARGETS, "name": f"load-{kind}-{i}"})
                accepted[job["id"]] = time.perf_counter()
                poller.add(job["id"])

            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.jobs) as pool:
                list(pool.map(one, range(args.jobs)))
            deadline = time.monotonic() + args.deadline_s
            while len(poller.done_at) < len(accepted) and time.monotonic() < deadline:
                time.sleep(0.2)
            poller.stop.set()
            sampling.set()
            end = max(poller.done_at.values(), default=time.perf_counter())
            statuses = [poller.final[j]["status"] for j in poller.final]
            lost = len(accepted) - len(poller.final)
            waits = [poller.running_at[j] - accepted[j] for j in poller.final]
            spans = [poller.done_at[j] - accepted[j] for j in poller.final]
            print(f"{len(accepted)} jobs ({', '.join(kinds)}), {args.concurrency} conversion slots")
            print(f"throughput        {len(poller.final) / (end - t0) * 60:8.1f} jobs/min "
                  f"({end - t0:.0f} s from first upload to last terminal)")
            print(f"queue wait        p50 {statistics.median(waits):6.1f} s   p95 "
                  f"{percentile(waits, 95):6.1f} s")
            print(f"job time          p50 {statistics.median(spans):6.1f} s   p95 "
                  f"{percentile(spans, 95):6.1f} s")
            busy, idle_ms = [x * 1000 for x in poller.latencies], [x * 1000 for x in idle]
            print(f"status poll       p50 {statistics.median(busy):6.1f} ms  p99 "
                  f"{percentile(busy, 99):6.1f} ms  ({len(busy)} polls while converting)")
            print(f"  idle baseline   p50 {statistics.median(idle_ms):6.1f} ms  p99 "
                  f"{percentile(idle_ms, 99):6.1f} ms  (ratio p99 {percentile(busy, 99) / percentile(idle_ms, 99):.2f})")
            print(f"peak RSS          API {peaks['api']:.0f} MB, worker tree {peaks['worker']:.0f} MB")
            print(f"statuses          {', '.join(f'{s}: {statuses.count(s)}' for s in sorted(set(statuses)))}")
            print(f"jobs lost         {lost}")
        finally:
            up.send_signal(signal.SIGTERM)
            up.wait(120)


if __name__ == "__main__":
    main()
