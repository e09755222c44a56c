"""The `s3://` backend end to end against moto's standalone S3 server over HTTP: uploads and
artifacts live in the bucket, downloads are 302s to presigned URLs fetched without our key.
A separate deployment (own Redis DB, one worker, one API) shares nothing with the file one."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import boto3
import httpx
import pytest

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
def s3_api(s3, s3_endpoint, redis_url, log_dir) -> Iterator[str]:
    stack = Stack(base_env(JAXPORT_REDIS_URL=f"{redis_url}/1",
                           JAXPORT_STORAGE_URL=f"s3://{BUCKET}/artifacts",
                           JAXPORT_S3_ENDPOINT_URL=s3_endpoint, **AWS), log_dir)
    stack.start_workers(1)
    try:
        yield stack.start_api("api-s3")
    finally:
        stack.stop()


def test_s3_job_with_presigned_downloads(s3, s3_endpoint, s3_api, tiny_keras):
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
            assert presigned.startswith(f"{s3_endpoint}/{BUCKET}/") and "Signature" in presigned
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
