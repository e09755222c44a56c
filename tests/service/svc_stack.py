"""Helpers of the service tests: subprocesses of a real deployment, clients, job waits."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]

KEYS = {"acme": "key-acme-0123456789", "globex": "key-globex-9876543210",
        "initech": "key-initech-5551234567", "umbrella": "key-umbrella-7778889990",
        "hooli": "key-hooli-2468013579",  # hooli: only test_ui's job list, which counts its jobs
        # fuzz: only test_fuzz, whose ~50 uploads in a few seconds would use up another tenant's
        # uploads-per-minute budget (JAXPORT_TENANT_MAX_UPLOADS_PER_MIN) for the tests after it
        "fuzz": "key-fuzz-1357924680"}
MAX_UPLOAD_BYTES = 8 * 1024 * 1024
FAST_TARGETS = {"targets": ["savedmodel", "tflite"]}
START_TIMEOUT_S = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class Proc:
    """A subprocess in its own session (so its whole process group can be killed)."""

    name: str
    popen: subprocess.Popen
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, sig)
                self.popen.wait(timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


def spawn(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Proc:
    log = log_dir / f"{name}.log"
    popen = subprocess.Popen([sys.executable, *args], env=env, cwd=ROOT, stdout=open(log, "wb"),
                             stderr=subprocess.STDOUT, start_new_session=True)
    return Proc(name, popen, log)


def start_redis(port: int, log: Path, data_dir: Path | None = None) -> subprocess.Popen:
    """A real redis-server on 127.0.0.1:`port`, up when this returns. With `data_dir`, it keeps
    an append-only file there, fsynced on every write (so a restart, even after SIGKILL, loses
    nothing); without, nothing is persisted."""
    import redis

    persist = (["--dir", str(data_dir), "--appendonly", "yes", "--appendfsync", "always"]
               if data_dir else ["--appendonly", "no"])
    proc = subprocess.Popen(["/usr/bin/redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", *persist],
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    client = redis.Redis(port=port)

    def up() -> bool:
        assert proc.poll() is None, f"redis-server died: see {log}"
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    wait_until(up, 10, "redis-server")
    return proc


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAXPORT_")}
    env.update(PYTHONPATH=str(ROOT), KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONUNBUFFERED="1", JAXPORT_API_KEYS=",".join(f"{t}:{k}" for t, k in KEYS.items()),
               JAXPORT_MAX_UPLOAD_BYTES=str(MAX_UPLOAD_BYTES),
               JAXPORT_LITERTJS=os.environ.get("JAXPORT_LITERTJS", "0"))  # see tests/conftest.py
    env.update(extra)
    return env


@dataclass
class Stack:
    """One service deployment: env shared by its API(s) and workers."""

    env: dict[str, str]
    log_dir: Path
    workers: list[Proc] = field(default_factory=list)
    apis: list[Proc] = field(default_factory=list)

    def start_workers(self, n: int) -> None:
        first = len(self.workers)
        for i in range(first, first + n):
            self.workers.append(spawn(f"worker{i}", ["-m", "service", "worker"], self.env,
                                      self.log_dir))

    def wait_workers(self, n: int) -> None:
        import redis

        r = redis.Redis.from_url(self.env["JAXPORT_REDIS_URL"])

        def ready() -> bool:
            for w in self.workers:
                assert w.popen.poll() is None, f"{w.name} died:\n{w.tail()}"
            return len(list(r.scan_iter("jaxport:worker:*"))) >= n

        wait_until(ready, START_TIMEOUT_S, f"{n} warm worker(s)", interval=0.5)

    def start_api(self, name: str, **env: str) -> str:
        port = free_port()
        proc = spawn(name, ["-m", "service", "serve", "--port", str(port)], {**self.env, **env},
                     self.log_dir)
        self.apis.append(proc)
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            assert proc.popen.poll() is None, f"{name} died:\n{proc.tail()}"
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(up, 60, f"API {name}")
        return url

    def stop(self) -> None:
        for proc in [*self.apis, *self.workers]:
            proc.stop()


def client_for(url: str, tenant: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {KEYS[tenant]}"} if tenant else {}
    return httpx.Client(base_url=url, headers=headers, timeout=60)



# --- job helpers ---------------------------------------------------------------------------------

def submit(client: httpx.Client, path: Path, options: dict | None = None, **headers: str) -> httpx.Response:
    import json

    with open(path, "rb") as fh:
        data = {"options": json.dumps(options)} if options is not None else {}
        return client.post("/v1/jobs", files={"file": (path.name, fh)}, data=data, headers=headers)


def wait_job(client: httpx.Client, job_id: str, timeout: float = 180,
             until=lambda job: job["status"] in ("succeeded", "partial", "failed", "canceled"),
             interval: float = 0.3) -> dict:
    def done():
        job = client.get(f"/v1/jobs/{job_id}").json()
        return job if until(job) else None

    return wait_until(done, timeout, f"job {job_id}", interval=interval)
