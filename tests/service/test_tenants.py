"""Operating for many tenants: per-tenant limits (active jobs, upload rate) answered 429 with
`Retry-After` while other tenants go on; identical uploads in flight convert once; finished
jobs drop their upload. Limits are the API's (a second API with tight limits shares the Redis,
storage and workers of the session's stack); tenants `initech` and `umbrella` are used only
here, each by one test (the counts are per tenant, whichever API took the upload)."""

from __future__ import annotations

import time
import uuid

import pytest

from svc_stack import FAST_TARGETS, client_for, submit, wait_job


@pytest.fixture
def unique() -> dict:
    """Options no other test uses, so no earlier job's result can answer them."""
    return {**FAST_TARGETS, "name": f"t-{uuid.uuid4().hex[:8]}"}


def test_tenant_over_its_active_jobs_gets_429_and_others_go_on(stack, tiny_keras, unique):
    url = stack.start_api("api-1active", JAXPORT_TENANT_MAX_ACTIVE_JOBS="1")
    with client_for(url, "initech") as initech, client_for(url, "globex") as globex:
        first = submit(initech, tiny_keras, unique)
        assert first.status_code == 202, first.text
        over = submit(initech, tiny_keras, {**unique, "name": unique["name"] + "-2"})
        assert over.status_code == 429, over.text
        assert int(over.headers["Retry-After"]) >= 1
        error = over.json()["error"]
        assert error["code"] == "too_many_requests"
        assert "limit" in error["message"] and "JAXPORT_TENANT_MAX_ACTIVE_JOBS" in error["hint"]
        other = submit(globex, tiny_keras, unique)  # another tenant is not held back
        assert other.status_code == 202, other.text
        assert wait_job(initech, first.json()["id"])["status"] == "succeeded"
        again = submit(initech, tiny_keras, {**unique, "name": unique["name"] + "-3"})
        assert again.status_code == 202, again.text  # the slot came back when the job finished
        for client, job in ((globex, other), (initech, again)):
            assert wait_job(client, job.json()["id"])["status"] == "succeeded"


def test_tenant_over_its_upload_rate_gets_429(stack, tmp_path):
    if time.time() % 60 > 50:  # the window is a calendar minute: start a fresh one
        time.sleep(61 - time.time() % 60)
    url = stack.start_api("api-2permin", JAXPORT_TENANT_MAX_UPLOADS_PER_MIN="2")
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    with client_for(url, "umbrella") as umbrella, client_for(url, "acme") as acme:
        codes = [submit(umbrella, junk).status_code for _ in range(2)]
        assert codes == [422, 422]  # refused uploads count too: the rate guards the bandwidth
        over = submit(umbrella, junk)
        assert over.status_code == 429, over.text
        assert 1 <= int(over.headers["Retry-After"]) <= 60
        assert "JAXPORT_TENANT_MAX_UPLOADS_PER_MIN" in over.json()["error"]["hint"]
        assert submit(acme, junk).status_code == 422  # acme has its own count


def test_identical_uploads_in_flight_convert_once(stack, acme, tiny_keras, storage_dir, unique):
    stack.wait_workers(2)
    first = submit(acme, tiny_keras, unique).json()
    second = submit(acme, tiny_keras, unique).json()
    assert first["status"] == second["status"] == "queued"  # neither answered from a cache
    done = {job["id"]: wait_job(acme, job["id"]) for job in (first, second)}
    assert {job["status"] for job in done.values()} == {"succeeded"}, done
    converted = [job for job in done.values() if job["cached_from"] is None]
    followers = [job for job in done.values() if job["cached_from"] is not None]
    assert len(converted) == 1 and len(followers) == 1, done
    assert followers[0]["cached_from"] == converted[0]["id"]
    assert followers[0]["attempts"] == 0  # it never started a conversion of its own
    assert followers[0]["targets"] == converted[0]["targets"]
    for job in done.values():
        tflite = acme.get(f"/v1/jobs/{job['id']}/artifacts/model.tflite")
        assert tflite.status_code == 200 and len(tflite.content) > 1000
        assert not (storage_dir / "uploads" / job["id"]).exists()  # dropped once terminal


def test_canceling_a_job_drops_its_upload(acme, tiny_keras, storage_dir, unique):
    job = submit(acme, tiny_keras, unique).json()
    assert (storage_dir / "uploads" / job["id"]).exists()
    assert acme.delete(f"/v1/jobs/{job['id']}").json()["status"] == "canceled"
    assert not (storage_dir / "uploads" / job["id"]).exists()
