"""A worker SIGKILLed mid-job: its conversion child dies with it, the lease reaper of the other
worker re-queues the job, and the job ends `succeeded` on the surviving worker.

Runs last (file order): it leaves the session with one worker."""

from __future__ import annotations

import os
import signal

import psutil

from svc_stack import FAST_TARGETS, submit, wait_job, wait_until


def test_sigkilled_worker_job_still_succeeds(stack, acme, deep_keras):
    # The deep model: a tiny one can finish before the kill lands.
    stack.wait_workers(2)
    job = submit(acme, deep_keras, {**FAST_TARGETS, "name": "survivor"}).json()
    running = wait_job(acme, job["id"], until=lambda j: j["status"] == "running"
                       and j["stage"] not in ("starting", "queued"))
    pool_pid = int(running["worker"].rsplit(":", 1)[1])
    victim = next(w for w in stack.workers if pool_pid in
                  {p.pid for p in psutil.Process(w.popen.pid).children(recursive=True)})
    conversion = psutil.Process(pool_pid).children()
    assert conversion, "the conversion runs in a child of the pool process"

    os.killpg(victim.popen.pid, signal.SIGKILL)  # the worker's whole process group
    victim.popen.wait()

    def gone(p: psutil.Process) -> bool:
        try:
            return p.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_until(lambda: all(gone(p) for p in conversion), 10, "the orphaned conversion to die")
    done = wait_job(acme, job["id"], timeout=300)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2 and done["worker"] != running["worker"]
