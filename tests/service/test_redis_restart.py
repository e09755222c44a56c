"""Redis killed and restarted (append-only file on) while one job converts and two are queued:
the API answers 503 with Retry-After while Redis is away and recovers by itself, and every job
still ends `succeeded` — none is lost, none converts twice at once.

Its own deployment (one worker, one API, its own redis-server), so the session's stack never
sees Redis go away."""

from __future__ import annotations

import signal

import pytest

from svc_stack import (FAST_TARGETS, Stack, base_env, client_for, free_port, start_redis,
                       submit, wait_job)


@pytest.fixture(scope="module")
def restartable(tmp_path_factory, log_dir, storage_dir):
    data = tmp_path_factory.mktemp("redis-aof")
    port = free_port()
    procs = {"redis": start_redis(port, log_dir / "redis-aof.log", data)}
    stack = Stack(base_env(JAXPORT_REDIS_URL=f"redis://127.0.0.1:{port}/0",
                           JAXPORT_STORAGE_URL=f"file://{storage_dir}",
                           JAXPORT_JOB_TIMEOUT_S="300"), log_dir)
    stack.start_workers(1)

    def restart() -> None:
        procs["redis"] = start_redis(port, log_dir / "redis-aof.log", data)

    try:
        stack.wait_workers(1)
        url = stack.start_api("api-aof")
        yield stack, url, procs, restart
    finally:
        stack.stop()
        procs["redis"].terminate()
        procs["redis"].wait(10)


@pytest.mark.slow  # its own worker: ~50 s
def test_jobs_survive_a_redis_restart(restartable, deep_keras, tiny_keras):
    stack, url, procs, restart = restartable
    with client_for(url, "acme") as acme:
        running = submit(acme, deep_keras, {**FAST_TARGETS, "name": "through-restart"}).json()
        queued = [submit(acme, tiny_keras, {**FAST_TARGETS, "name": f"queued-{i}"}).json()
                  for i in range(2)]
        wait_job(acme, running["id"], until=lambda j: j["status"] == "running"
                 and j["stage"] not in ("starting", "queued"))

        procs["redis"].send_signal(signal.SIGKILL)  # a crash: only the append-only file is left
        procs["redis"].wait()
        away = [acme.get(f"/v1/jobs/{running['id']}"), submit(acme, tiny_keras, FAST_TARGETS)]
        for r in away:
            assert r.status_code == 503, r.text
            assert int(r.headers["Retry-After"]) >= 1
            assert r.json()["error"]["code"] and r.json()["error"]["hint"]
        restart()

        done = [wait_job(acme, job["id"], timeout=300) for job in [running, *queued]]
    for job in done:
        assert job["status"] == "succeeded", job
        assert job["artifacts"], job
    assert all(w.popen.poll() is None for w in stack.workers), "the worker survived the restart"
