"""The result cache (jaxport.jobs.store) against a real Redis: a verdict is reused only for the
same tenant, bytes, options and jaxport version."""

from __future__ import annotations

import jaxport
from jaxport.jobs import JobStore, new_job_id, new_record
from jaxport.options import ConvertOptions


def test_cache_key_holds_the_options_and_the_jaxport_version(redis_url, monkeypatch) -> None:
    store = JobStore.from_url(f"{redis_url}/5")
    options = ConvertOptions(targets=["tflite"]).to_json()
    upload = {"sha256": "ab" * 32, "bytes": 1, "filename": "m.keras", "key": "uploads/x/m.keras"}
    record = new_record(new_job_id(), "acme", options, upload, {})
    record["status"] = "succeeded"
    store.create(record)
    store.remember_result(record)
    assert store.cached_job("acme", upload["sha256"], options)["id"] == record["id"]
    assert store.cached_job("acme", upload["sha256"], {**options, "atol": 1e-6}) is None
    assert store.cached_job("globex", upload["sha256"], options) is None
    monkeypatch.setattr(jaxport, "__version__", "99.0.0")  # a release with a fixed bug
    assert store.cached_job("acme", upload["sha256"], options) is None
