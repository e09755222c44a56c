"""The `s3://` backend end to end against moto's standalone S3 server over HTTP: uploads and
artifacts live in the bucket, downloads are 302s to presigned URLs fetched without our key.
A separate deployment (own Redis DB, one worker, one API) shares nothing with the file one.

The deployment reaches the bucket through a fault proxy (fault_proxy.FaultProxy), so tests can
take the endpoint down or make it answer 500 while jobs run."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import threading
import time

import boto3
import httpx
import pytest

from fault_proxy import DOWN, ERROR_500, PASS, FaultProxy
from jaxport.storage import ObjectNotFound, StorageError
from jaxport.storage.s3 import S3Storage
from svc_stack import FAST_TARGETS, Stack, base_env, client_for, free_port, submit, wait_job, wait_until

BUCKET = "jaxport-test"
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
       "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint(log_dir) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=open(log_dir / "moto.log", "wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code < 500
        except httpx.TransportError:
            return False

    wait_until(up, 90, "moto server")  # importing moto takes long on a busy machine
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def proxy(s3_endpoint) -> Iterator[FaultProxy]:
    """The address the deployment knows its S3 endpoint by, in front of moto."""
    host, port = s3_endpoint.removeprefix("http://").split(":")
    fault_proxy = FaultProxy((host, int(port)))
    yield fault_proxy
    fault_proxy.close()


@pytest.fixture
def healed(proxy) -> Iterator[FaultProxy]:
    """The proxy, passing traffic again after the test whatever it did."""
    yield proxy
    proxy.set(PASS)


def heal_after(proxy: FaultProxy, seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, proxy.set, args=(PASS,))
    timer.start()
    return timer


@pytest.fixture(scope="module")
def s3(s3_endpoint, monkeypatch_module):
    for k, v in AWS.items():
        monkeypatch_module.setenv(k, v)
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def s3_api(s3, proxy, redis_url, log_dir) -> Iterator[str]:
    # Calls give up after 3 s of failures here (30 s by default), so outages are quick to test.
    stack = Stack(base_env(JAXPORT_REDIS_URL=f"{redis_url}/1",
                           JAXPORT_STORAGE_URL=f"s3://{BUCKET}/artifacts",
                           JAXPORT_S3_ENDPOINT_URL=proxy.url, JAXPORT_STORAGE_RETRY_S="3", **AWS),
                  log_dir)
    stack.start_workers(1)
    try:
        yield stack.start_api("api-s3")
    finally:
        stack.stop()


def test_s3_job_with_presigned_downloads(s3, proxy, s3_api, tiny_keras):
    assert httpx.get(f"{s3_api}/readyz").json()["checks"] == {"redis": "ok", "storage": "ok"}
    with client_for(s3_api, "acme") as acme:
        job = submit(acme, tiny_keras, FAST_TARGETS).json()
        done = wait_job(acme, job["id"], timeout=300)
        assert done["status"] == "succeeded", done
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
        assert f"artifacts/jobs/{job['id']}/model.tflite" in keys
        # The worker drops the upload right after it records success: poll briefly for it.
        upload = f"artifacts/uploads/{job['id']}/"
        wait_until(lambda: not s3.list_objects_v2(Bucket=BUCKET, Prefix=upload).get("KeyCount"),
                   15, "the upload to be deleted")

        for artifact in done["artifacts"]:
            r = acme.get(f"/v1/jobs/{job['id']}/artifacts/{artifact['name']}")
            assert r.status_code == 302, r.text
            presigned = r.headers["location"]
            assert presigned.startswith(f"{proxy.url}/{BUCKET}/") and "Signature" in presigned
            body = httpx.get(presigned)  # no API key: the URL is the credential
            assert body.status_code == 200 and len(body.content) == artifact["bytes"]
            if artifact["name"] == "model.tflite":
                from ai_edge_litert.interpreter import Interpreter

                assert Interpreter(model_content=body.content).get_signature_list()

        cached = submit(acme, tiny_keras, FAST_TARGETS).json()  # server-side copies in the bucket
        assert cached["status"] == "succeeded" and cached["cached_from"] == job["id"]
        assert acme.delete(f"/v1/jobs/{cached['id']}").status_code == 204
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
        assert not [k for k in keys if f"/{cached['id']}/" in k]
        assert f"artifacts/jobs/{job['id']}/model.tflite" in keys


def test_submit_command_downloads_and_unpacks_the_bundle(s3_api, tiny_keras, tmp_path):
    """`submit -o` (a cache hit here: the same bytes and options as above) follows the job,
    downloads bundle.zip through the presigned redirect and unpacks the OUT layout."""
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "service", "submit", str(tiny_keras), "--server", s3_api,
         "--api-key", "key-acme-0123456789", "--targets", "savedmodel,tflite", "-o", str(out), "--json"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (out / "model.tflite").is_file() and (out / "report.json").is_file()
    assert (out / "savedmodel" / "saved_model.pb").is_file()
    assert '"status": "succeeded"' in result.stdout


def test_calls_ride_out_an_outage_and_500s(s3, healed, tmp_path):
    storage = S3Storage(BUCKET, "faults", endpoint_url=healed.url, retry_s=20)
    src = tmp_path / "blob"
    src.write_bytes(b"jaxport" * 1000)
    healed.set(DOWN)
    heal_after(healed, 1.5)
    assert storage.put_file("blob", src) == src.stat().st_size
    down_faults = healed.faults
    assert down_faults >= 2, "the endpoint refused the first attempts"
    assert s3.get_object(Bucket=BUCKET, Key="faults/blob")["Body"].read() == src.read_bytes()

    healed.set(ERROR_500)
    heal_after(healed, 1.5)
    storage.get_file("blob", tmp_path / "back")
    assert healed.faults > down_faults, "the endpoint answered 500 before it healed"
    assert (tmp_path / "back").read_bytes() == src.read_bytes()


def test_a_long_outage_is_a_named_failure_and_a_lasting_answer_is_not_retried(s3, healed):
    storage = S3Storage(BUCKET, "faults", endpoint_url=healed.url, retry_s=1)
    healed.set(ERROR_500)
    started = time.monotonic()
    with pytest.raises(StorageError) as failed:
        storage.size("anything")
    assert time.monotonic() - started >= 1, "it retried for its whole budget"
    assert failed.value.code == "storage_unavailable"
    assert "S3 head anything failed after" in failed.value.message
    assert "HTTP 500" in failed.value.message and "JAXPORT_STORAGE_RETRY_S" in failed.value.hint

    healed.set(PASS)
    faults = healed.faults
    with pytest.raises(ObjectNotFound):
        storage.size("no-such-object")
    missing = S3Storage("no-such-bucket", endpoint_url=healed.url, retry_s=5)
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist") as no_bucket:
        missing.ping()
    assert "after" not in no_bucket.value.message, "a missing bucket is not retried"
    assert healed.faults == faults


def test_an_outage_during_artifact_upload_fails_the_job_by_name(s3_api, healed, deep_keras,
                                                                tiny_keras):
    with client_for(s3_api, "acme") as acme:
        job = submit(acme, deep_keras, {**FAST_TARGETS, "name": "outage"}).json()
        wait_job(acme, job["id"], until=lambda j: j["status"] == "running"
                 and j["stage"] not in ("starting", "queued", "download"))
        healed.set(DOWN)  # for longer than the deployment's 3 s of retries
        failed = wait_job(acme, job["id"], timeout=300)
        assert failed["status"] == "failed", failed
        assert failed["error"]["code"] == "storage_unavailable", failed["error"]
        assert "S3 upload jobs/" in failed["error"]["message"] and failed["error"]["hint"]
        assert not failed.get("artifacts"), "the record names no artifact that is not stored"

        refused = submit(acme, tiny_keras, {**FAST_TARGETS, "name": "while-down"})
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "storage_unavailable"

        healed.set(PASS)
        after = wait_job(acme, submit(acme, tiny_keras, {**FAST_TARGETS, "name": "healed"})
                         .json()["id"], timeout=300)
        assert after["status"] == "succeeded", after


def test_sweeper_deletes_an_expired_job_from_the_bucket(s3, s3_endpoint, s3_api, redis_url,
                                                        tiny_keras, monkeypatch):
    """Last in this module: it sweeps every job of this deployment that finished before `old`."""
    from jaxport.jobs import JobStore
    from jaxport.storage import open_storage
    from workers.reaper import sweep_once

    with client_for(s3_api, "acme") as acme:
        old, kept = (wait_job(acme, submit(acme, tiny_keras, {**FAST_TARGETS, "name": n}).json()["id"],
                              timeout=300) for n in ("expires", "stays"))
        assert old["status"] == kept["status"] == "succeeded"
        store = JobStore.from_url(f"{redis_url}/1")
        monkeypatch.setenv("JAXPORT_S3_ENDPOINT_URL", s3_endpoint)
        storage = open_storage(f"s3://{BUCKET}/artifacts")
        finished = {j["id"]: store.r.zscore("jaxport:finished", j["id"]) for j in (old, kept)}
        assert finished[old["id"]] < finished[kept["id"]]
        swept = sweep_once(store, storage, ttl_s=60, now=finished[old["id"]] + 60)
        assert old["id"] in swept and kept["id"] not in swept
        assert acme.get(f"/v1/jobs/{old['id']}").status_code == 404
        assert acme.get(f"/v1/jobs/{kept['id']}").status_code == 200
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
        assert not [k for k in keys if f"/{old['id']}/" in k]
        assert f"artifacts/jobs/{kept['id']}/model.tflite" in keys
