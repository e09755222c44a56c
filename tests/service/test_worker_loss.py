"""A worker SIGKILLed mid-job: its conversion child dies with it, the lease reaper of the other
worker re-queues the job, and the job ends `succeeded` on the surviving worker.

Runs last (file order): it kills the session's workers (the per-stage test starts a
replacement before each kill, so two stay)."""

from __future__ import annotations

import os
import signal

import psutil
import pytest

from svc_stack import FAST_TARGETS, Stack, submit, wait_job, wait_until

STAGES = ("load", "trace", "savedmodel", "tflite")  # the order a conversion reports them in


def _gone(p: psutil.Process) -> bool:
    try:
        return p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def kill_worker_running(stack: Stack, job: dict) -> None:
    """SIGKILL the whole worker (process group) whose pool process runs `job`; return when its
    conversion child is dead too."""
    pool_pid = int(job["worker"].rsplit(":", 1)[1])
    victim = next(w for w in stack.workers if pool_pid in
                  {p.pid for p in psutil.Process(w.popen.pid).children(recursive=True)})
    conversion = psutil.Process(pool_pid).children()
    assert conversion, "the conversion runs in a child of the pool process"
    os.killpg(victim.popen.pid, signal.SIGKILL)
    victim.popen.wait()
    stack.workers.remove(victim)
    wait_until(lambda: all(_gone(p) for p in conversion), 10, "the orphaned conversion to die")


def test_sigkilled_worker_job_still_succeeds(stack, acme, deep_keras):
    # The deep model: a tiny one can finish before the kill lands.
    stack.wait_workers(2)
    job = submit(acme, deep_keras, {**FAST_TARGETS, "name": "survivor"}).json()
    running = wait_job(acme, job["id"], until=lambda j: j["status"] == "running"
                       and j["stage"] not in ("starting", "queued"))
    kill_worker_running(stack, running)
    done = wait_job(acme, job["id"], timeout=300)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2 and done["worker"] != running["worker"]


@pytest.mark.slow  # a worker start and a conversion per stage
@pytest.mark.parametrize("stage", STAGES)
def test_a_worker_killed_in_each_stage_loses_nothing(stack, acme, deep_keras, stage):
    stack.start_workers(1)  # the replacement, warm before the kill
    stack.wait_workers(2)
    job = submit(acme, deep_keras, {**FAST_TARGETS, "name": f"killed-in-{stage}"}).json()
    reached = STAGES[STAGES.index(stage):]
    running = wait_job(acme, job["id"], interval=0.05,
                       until=lambda j: j["status"] == "running" and j["stage"] in reached)
    kill_worker_running(stack, running)
    done = wait_job(acme, job["id"], timeout=300)
    assert done["status"] == "succeeded", (running["stage"], done)
    # One conversion after the kill, on the other worker: never two at once.
    assert done["attempts"] == 2 and done["worker"] != running["worker"]
    assert all(done["targets"][t]["status"] == "ok" for t in FAST_TARGETS["targets"]), done["targets"]
