"""Conversions end to end through the real service: submit, poll or follow the SSE stream,
download every artifact and load it in its runtime; cache hits, Idempotency-Key, tenant
isolation, listing, Range downloads, delete."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from svc_stack import FAST_TARGETS, submit, wait_job

# The tiny job asks for the LiteRT.js check (the suite turns it off by default): it runs in the
# worker's conversion child, under the address-space limit Chromium cannot start under.
TINY = {**FAST_TARGETS, "litertjs": True}

TERMINAL = ("succeeded", "partial", "failed", "canceled")


@pytest.fixture(scope="module")
def tiny_job(acme, tiny_keras) -> dict:
    """A bare .keras converted to savedmodel + tflite, polled until done."""
    r = submit(acme, tiny_keras, TINY)
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["upload"]["bytes"] == tiny_keras.stat().st_size
    done = wait_job(acme, job["id"], timeout=300)
    assert done["status"] == "succeeded", done
    return done


def _download(client, job: dict, name: str, **headers) -> bytes:
    r = client.get(f"/v1/jobs/{job['id']}/artifacts/{name}", headers=headers)
    assert r.status_code in (200, 206), r.text
    return r.content


def test_bare_keras_job_and_every_artifact_loads(acme, tiny_job, tmp_path):
    assert {a["name"] for a in tiny_job["artifacts"]} == {
        "savedmodel.zip", "model.tflite", "report.json", "bundle.zip"}
    assert tiny_job["targets"]["savedmodel"]["status"] == "ok"
    assert tiny_job["targets"]["tflite"]["parity"]["passed"] is True
    # in LiteRT.js too, in the browser the worker keeps for its jobs (jaxport.verify.kept)
    litertjs = tiny_job["targets"]["tflite"]["runtimes"]["litertjs"]
    assert litertjs["status"] == "ok" and litertjs["browser"] == "kept"
    assert tiny_job["progress"] == 1.0 and tiny_job["error"] is None
    for artifact in tiny_job["artifacts"]:
        assert len(_download(acme, tiny_job, artifact["name"])) == artifact["bytes"]

    report = json.loads(_download(acme, tiny_job, "report.json"))
    assert report["targets"]["tflite"]["status"] == "ok"
    # the record's profile: the worker's stages around the report's
    stages = list(tiny_job["timings"])
    assert stages[0] == "download" and stages[-2:] == ["packaging", "upload"]
    assert stages[1:-2] == list(report["timings"]) and "savedmodel.verify" in stages

    x = np.random.default_rng(0).normal(size=(3, 8)).astype("float32")
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=_download(acme, tiny_job, "model.tflite"))
    runner = interpreter.get_signature_runner("serving_default")
    (tflite_out,) = runner(**{next(iter(runner.get_input_details())): x}).values()

    zipfile.ZipFile(io.BytesIO(_download(acme, tiny_job, "savedmodel.zip"))).extractall(tmp_path / "sm")
    import tensorflow as tf

    fn = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
    (sm_out,) = fn(**{next(iter(fn.structured_input_signature[1])): tf.constant(x)}).values()
    np.testing.assert_allclose(sm_out.numpy(), tflite_out, atol=1e-4)

    bundle = zipfile.ZipFile(io.BytesIO(_download(acme, tiny_job, "bundle.zip")))
    names = bundle.namelist()
    assert "model.tflite" in names and "report.json" in names
    assert any(n.startswith("savedmodel/") and n.endswith("saved_model.pb") for n in names)


def test_composite_archive_with_sse_stream(acme, composite_zip):
    r = submit(acme, composite_zip, {**FAST_TARGETS, "name": "composite"})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    events = []
    with acme.stream("GET", f"/v1/jobs/{job_id}/events", timeout=300) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if events[-1]["status"] in TERMINAL:
                    break
    assert events[-1]["status"] == "succeeded", events[-1]
    stages = [e["stage"] for e in events]
    assert {"savedmodel", "tflite"} <= set(stages), stages
    progress = [e["progress"] for e in events if e["status"] == "running"]
    assert progress == sorted(progress) and len(progress) >= 4
    assert events[-1]["functions"]["serving_default"]["inputs"]["images"]["shape"][1:] == [4, 16, 16, 3]
    # a finished job's stream answers its final record at once, then ends
    with acme.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
        lines = [line for line in stream.iter_lines() if line.startswith("data: ")]
    assert len(lines) == 1 and json.loads(lines[0][6:])["status"] == "succeeded"


def test_same_bytes_same_options_is_a_cache_hit(acme, tiny_job, tiny_keras):
    r = submit(acme, tiny_keras, TINY)
    assert r.status_code == 202
    job = r.json()
    assert job["id"] != tiny_job["id"]
    assert job["status"] == "succeeded" and job["cached_from"] == tiny_job["id"]
    assert job["targets"] == tiny_job["targets"] and job["attempts"] == 0
    assert _download(acme, job, "model.tflite") == _download(acme, tiny_job, "model.tflite")


def test_idempotency_key_returns_the_same_job(acme, globex, tiny_job, tiny_keras):
    first = submit(acme, tiny_keras, FAST_TARGETS, **{"Idempotency-Key": "order-42"})
    again = submit(acme, tiny_keras, FAST_TARGETS, **{"Idempotency-Key": "order-42"})
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = submit(globex, tiny_keras, {**FAST_TARGETS, "targets": ["savedmodel"]},
                   **{"Idempotency-Key": "order-42"})  # keys are per tenant
    assert other.status_code == 202 and other.json()["id"] != first.json()["id"]
    acme.delete(f"/v1/jobs/{first.json()['id']}")
    globex.delete(f"/v1/jobs/{other.json()['id']}")


def test_other_tenant_sees_404(acme, globex, tiny_job):
    job_id = tiny_job["id"]
    for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/events",
                 f"/v1/jobs/{job_id}/artifacts/model.tflite"):
        r = globex.get(path)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert globex.delete(f"/v1/jobs/{job_id}").status_code == 404
    assert job_id not in {j["id"] for j in globex.get("/v1/jobs").json()["jobs"]}
    assert acme.get(f"/v1/jobs/{job_id}").status_code == 200


def test_list_pages_with_a_cursor(acme, tiny_job, tiny_keras):
    for _ in range(2):  # cache hits: cheap jobs to page through
        assert submit(acme, tiny_keras, TINY).status_code == 202
    seen, cursor = [], None
    while True:
        page = acme.get("/v1/jobs", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        assert len(page["jobs"]) <= 2
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) >= 3 and tiny_job["id"] in seen
    created = [acme.get(f"/v1/jobs/{i}").json()["created_at"] for i in seen]
    assert created == sorted(created, reverse=True)


def test_range_downloads(acme, tiny_job):
    whole = _download(acme, tiny_job, "model.tflite")
    url = f"/v1/jobs/{tiny_job['id']}/artifacts/model.tflite"
    r = acme.get(url, headers={"Range": "bytes=4-11"})
    assert r.status_code == 206 and r.content == whole[4:12]
    assert r.headers["content-range"] == f"bytes 4-11/{len(whole)}"
    assert acme.get(url, headers={"Range": "bytes=-5"}).content == whole[-5:]
    assert acme.get(url, headers={"Range": f"bytes={len(whole) - 3}-"}).content == whole[-3:]
    r = acme.get(url, headers={"Range": f"bytes={len(whole)}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(whole)}"
    assert acme.get(url, headers={"Range": "bytes=0-1,5-6"}).content == whole  # multi: all of it
    r = acme.get(f"/v1/jobs/{tiny_job['id']}/artifacts/tfjs.zip")  # not requested, not built
    assert r.status_code == 404
    assert acme.get(f"/v1/jobs/{tiny_job['id']}/artifacts/secrets.txt").status_code == 404


def test_delete_finished_job_removes_it(acme, tiny_job, tiny_keras, storage_dir: Path):
    job = submit(acme, tiny_keras, TINY).json()  # a cache hit with its own artifacts
    assert (storage_dir / "jobs" / job["id"] / "model.tflite").is_file()
    assert acme.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert acme.get(f"/v1/jobs/{job['id']}").status_code == 404
    assert not (storage_dir / "jobs" / job["id"]).exists()
    assert acme.get(f"/v1/jobs/{tiny_job['id']}").status_code == 200


def test_onnx_job_serves_onnx_zip_that_runs_in_onnxruntime(acme, composite_zip, tmp_path):
    """The vmapped composite as ONNX through a worker: onnx.zip and bundle.zip carry model.onnx,
    whose outputs in onnxruntime match the composed JAX function."""
    r = submit(acme, composite_zip, {"targets": ["onnx"], "onnx_opset": 21})
    assert r.status_code == 202, r.text
    job = wait_job(acme, r.json()["id"], timeout=300)
    assert job["status"] == "succeeded", job
    assert job["targets"]["onnx"]["opset"] == 21 and job["targets"]["onnx"]["parity"]["passed"]
    assert {a["name"] for a in job["artifacts"]} == {"onnx.zip", "report.json", "bundle.zip"}
    members = zipfile.ZipFile(io.BytesIO(_download(acme, job, "onnx.zip")))
    assert members.namelist() == ["model.onnx"]
    assert "model.onnx" in zipfile.ZipFile(io.BytesIO(_download(acme, job, "bundle.zip"))).namelist()
    members.extractall(tmp_path)

    from jaxport.archive import extract_archive
    from jaxport.compose import load_program
    from jaxport.targets.onnx import OnnxRunner

    program = load_program(extract_archive(composite_zip, tmp_path / "src"), trusted=False)
    images = np.random.default_rng(4).standard_normal((3, 4, 16, 16, 3)).astype("float32")
    want = program.functions["serving_default"](program.params, {"images": images})
    got = OnnxRunner(tmp_path / "model.onnx").run({"images": images})
    np.testing.assert_allclose(got["score"], want["score"], atol=1e-4, rtol=1e-3)


def test_quantized_job_serves_both_tflite_models_and_the_figures(acme, tiny_keras, tmp_path):
    """A gate option through the API to the worker: the float model.tflite and the quantized
    model.int8-dynamic.tflite are both served, and the job carries the measured figures."""
    r = submit(acme, tiny_keras, {"targets": ["tflite"], "quantize": "int8-dynamic",
                                  "min_sqnr": 10, "min_top1": 0.5})
    assert r.status_code == 202, r.text
    job = wait_job(acme, r.json()["id"], timeout=300)
    assert job["status"] == "succeeded", job
    q = job["targets"]["tflite"]["quantization"]
    assert q["gate"] == {"min_sqnr_db": 10, "min_top1": 0.5, "passed": True, "failures": []}
    assert {a["name"] for a in job["artifacts"]} == {"model.tflite", "model.int8-dynamic.tflite",
                                                     "report.json", "bundle.zip"}
    data = _download(acme, job, "model.int8-dynamic.tflite")
    assert len(data) == q["bytes"] and q["float_bytes"] == len(_download(acme, job, "model.tflite"))
    (tmp_path / "q.tflite").write_bytes(data)
    from ai_edge_litert.interpreter import Interpreter

    x = np.random.default_rng(0).standard_normal((2, 8)).astype("float32")
    runner = Interpreter(model_path=str(tmp_path / "q.tflite")).get_signature_runner()
    assert next(iter(runner(features=x).values())).shape == (2, 4)
