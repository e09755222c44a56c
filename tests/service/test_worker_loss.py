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

STAGES = ("load", "trace", "savedmodel", "tflite", "tfjs")  # the order a conversion reports them in
KILLED_TARGETS = {"targets": ["savedmodel", "tflite", "tfjs"]}
# (a death after the artifacts are stored: the marker test below)


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


def test_a_worker_lost_after_storing_its_artifacts_is_finished_without_converting(
        stack, acme, tiny_keras, redis_url):
    """The last stage: a worker that stored every artifact and its completion marker, then died
    before recording success. Made here by turning a finished job back into a running one with
    no lease and no artifacts in its record, as that death leaves it."""
    from jaxport.jobs import JobStore

    stack.wait_workers(1)
    job = wait_job(acme, submit(acme, tiny_keras, {**FAST_TARGETS, "name": "died-after-upload"})
                   .json()["id"])
    assert job["status"] == "succeeded", job
    store = JobStore.from_url(f"{redis_url}/0")
    store.update(job["id"], {"status": "running", "stage": "tflite", "progress": 0.9,
                             "artifacts": [], "targets": {}}, allow_terminal=True)
    store.r.sadd("jaxport:active", job["id"])
    store.r.zrem("jaxport:finished", job["id"])
    done = wait_job(acme, job["id"], timeout=120)  # the lease reaper re-queues it
    assert done["status"] == "succeeded", done
    assert done["attempts"] == job["attempts"], "finished from the stored marker, not converted"
    assert done["artifacts"] == job["artifacts"] and done["targets"] == job["targets"]
    for artifact in done["artifacts"]:
        got = acme.get(f"/v1/jobs/{job['id']}/artifacts/{artifact['name']}")
        assert got.status_code == 200 and len(got.content) == artifact["bytes"]


@pytest.mark.slow  # a worker start and a conversion per stage
@pytest.mark.parametrize("stage", STAGES)
def test_a_worker_killed_in_each_stage_loses_nothing(stack, acme, deep_keras, stage):
    stack.start_workers(1)  # the replacement, warm before the kill
    stack.wait_workers(2)
    job = submit(acme, deep_keras, {**KILLED_TARGETS, "name": f"killed-in-{stage}"}).json()
    reached = STAGES[STAGES.index(stage):]
    running = wait_job(acme, job["id"], interval=0.05,
                       until=lambda j: j["status"] == "running" and j["stage"] in reached)
    kill_worker_running(stack, running)
    done = wait_job(acme, job["id"], timeout=300)
    assert done["status"] == "succeeded", (running["stage"], done)
    # One conversion after the kill, on the other worker: never two at once.
    assert done["attempts"] == 2 and done["worker"] != running["worker"]
    assert all(done["targets"][t]["status"] == "ok" for t in KILLED_TARGETS["targets"]), done["targets"]
