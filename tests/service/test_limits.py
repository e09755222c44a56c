"""Per-job limits and cancel: a job over its time or memory limit is killed and fails with a
clear error, alone; the workers go on converting. The limits are the operator's
(JAXPORT_JOB_TIMEOUT_S / JAXPORT_JOB_MAX_MEMORY_MB), stamped on each job by the API that
accepted it: here a second API with tight limits shares the Redis, storage and workers."""

from __future__ import annotations

from svc_stack import FAST_TARGETS, client_for, submit, wait_job


def test_job_over_time_limit_fails_alone_and_next_job_succeeds(stack, acme, tiny_keras,
                                                              deep_keras):
    # A warm worker converts the tiny model in under 2 s, so the job over its limit converts
    # a model that needs far longer than that anywhere.
    stack.wait_workers(2)
    with client_for(stack.start_api("api-2s", JAXPORT_JOB_TIMEOUT_S="2"), "acme") as tight:
        slow = submit(tight, deep_keras, {**FAST_TARGETS, "name": "over-time"}).json()
        assert slow["options"]["name"] == "over-time"
        alongside = submit(acme, tiny_keras, {**FAST_TARGETS, "name": "alongside"}).json()
        failed = wait_job(acme, slow["id"])
    assert failed["status"] == "failed", failed
    assert failed["error"]["code"] == "job_timeout", failed["error"]
    assert "time limit of 2 s" in failed["error"]["message"] and failed["error"]["hint"]
    assert wait_job(acme, alongside["id"])["status"] == "succeeded"
    after = submit(acme, tiny_keras, {**FAST_TARGETS, "name": "after-limit"}).json()
    assert wait_job(acme, after["id"])["status"] == "succeeded"


def test_job_over_memory_limit_fails_with_a_clear_error(stack, tiny_keras):
    # The conversion child starts as a fork of the warm worker (TF + JAX resident), far over
    # 150 MB, so the memory check stops it before the time limit does.
    with client_for(stack.start_api("api-150mb", JAXPORT_JOB_MAX_MEMORY_MB="150"), "acme") as tight:
        job = submit(tight, tiny_keras, {**FAST_TARGETS, "name": "over-memory"}).json()
        failed = wait_job(tight, job["id"])
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "job_memory_exceeded", failed["error"]
    assert "150 MB" in failed["error"]["message"]


def test_cancel_running_job(acme, deep_keras):
    job = submit(acme, deep_keras, {**FAST_TARGETS, "name": "cancel-me"}).json()
    wait_job(acme, job["id"], until=lambda j: j["status"] == "running")
    r = acme.delete(f"/v1/jobs/{job['id']}")
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    assert acme.get(f"/v1/jobs/{job['id']}").json()["status"] == "canceled"
    assert acme.delete(f"/v1/jobs/{job['id']}").status_code == 204  # now delete it
    assert acme.get(f"/v1/jobs/{job['id']}").status_code == 404
