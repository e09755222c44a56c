"""Retention: a job that finished more than JAXPORT_JOB_TTL_S ago is swept with its artifacts
and upload; running jobs and recent ones stay. Real Redis (its own DB) and the file backend
here; tests/service/test_s3.py sweeps a real job out of an S3 bucket."""

from __future__ import annotations

import time

import pytest

from jaxport.jobs import JobStore, artifact_key, new_record
from jaxport.storage import open_storage
from workers.reaper import sweep_once


@pytest.fixture
def store(redis_url):
    store = JobStore.from_url(f"{redis_url}/2")
    store.r.flushdb()
    return store


def _job(store, storage, tmp_path, job_id: str, status: str):
    upload = {"sha256": "cd" * 32, "bytes": 3, "filename": "m.keras", "key": f"uploads/{job_id}/m.keras"}
    record = new_record(job_id, "acme", {"targets": ["tflite"]}, upload, {})
    (tmp_path / "blob").write_bytes(b"abc")
    storage.put_file(upload["key"], tmp_path / "blob")
    storage.put_file(artifact_key(job_id, "model.tflite"), tmp_path / "blob")
    store.create(record)
    if status != "queued":
        store.update(job_id, {"status": status})
    return record


def test_sweep_deletes_only_what_expired(store, tmp_path):
    storage = open_storage(f"file://{tmp_path / 'storage'}")
    old = _job(store, storage, tmp_path, "j_old", "succeeded")
    time.sleep(0.05)
    cut = time.time()
    time.sleep(0.05)
    _job(store, storage, tmp_path, "j_recent", "failed")
    _job(store, storage, tmp_path, "j_running", "running")

    assert sweep_once(store, storage, ttl_s=3600, now=cut + 3600) == ["j_old"]
    with pytest.raises(KeyError):
        store.get(old["id"])
    assert not storage.exists(artifact_key("j_old", "model.tflite"))
    assert not storage.exists("uploads/j_old/m.keras")
    assert store.list("acme", 10, None)[0] and {r["id"] for r in store.list("acme", 10, None)[0]} == {
        "j_recent", "j_running"}
    for kept in ("j_recent", "j_running"):
        assert storage.exists(artifact_key(kept, "model.tflite"))

    # Much later, the finished one goes too; the running one never does.
    assert sweep_once(store, storage, ttl_s=3600, now=time.time() + 7200) == ["j_recent"]
    assert store.get("j_running")["status"] == "running"
    assert sweep_once(store, storage, ttl_s=3600, now=time.time() + 7200) == []


def test_sweep_forgets_a_record_deleted_meanwhile(store, tmp_path):
    storage = open_storage(f"file://{tmp_path / 'storage'}")
    record = _job(store, storage, tmp_path, "j_gone", "canceled")
    store.r.delete(f"jaxport:job:{record['id']}")  # as if deleted behind the index's back
    assert sweep_once(store, storage, ttl_s=0, now=time.time() + 1) == ["j_gone"]
    assert store.finished_before(time.time() + 1) == []
    assert not storage.exists(artifact_key("j_gone", "model.tflite"))
