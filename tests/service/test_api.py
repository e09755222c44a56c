"""The HTTP surface without conversions: operations endpoints, auth, and the 4xx answers for
bad requests (nothing a client sends may produce a 500)."""

from __future__ import annotations

import io
import json
import re
import tarfile
import warnings
import zipfile

import httpx
import pytest

import zoo
from svc_stack import MAX_UPLOAD_BYTES, client_for, submit


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "hint"}, body
    return body["error"]


def test_operations_endpoints(api_url):
    assert httpx.get(f"{api_url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{api_url}/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"redis": "ok", "storage": "ok"}
    assert httpx.get(f"{api_url}/docs").status_code == 200
    spec = httpx.get(f"{api_url}/openapi.json").json()
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/events",
            "/v1/jobs/{job_id}/artifacts/{name}"} <= set(spec["paths"])
    metrics = httpx.get(f"{api_url}/metrics").text
    assert 'jaxport_http_requests_total{method="GET",route="/healthz",status="200"}' in metrics
    assert "jaxport_jobs_active " in metrics and "jaxport_workers_live " in metrics


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"},
                                     {"Authorization": "Basic a2V5LWFjbWU="}])
def test_bad_or_missing_key_is_401(api_url, headers):
    r = httpx.get(f"{api_url}/v1/jobs", headers=headers)
    assert r.status_code == 401 and error_of(r)["code"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"


def test_unknown_job_and_route_are_json_404(acme):
    r = acme.get("/v1/jobs/j_doesnotexist")
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    r = acme.get("/v1/nothing-here")
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    r = acme.get("/v1/jobs", params={"cursor": "not-a-number"})
    assert r.status_code == 422 and error_of(r)["code"] == "bad_request"


def _zip_bytes(files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _post_bytes(client: httpx.Client, name: str, data: bytes, **form: str) -> httpx.Response:
    return client.post("/v1/jobs", files={"file": (name, data)}, data=form)


def _encrypted_manifest_zip() -> bytes:
    """A zip whose jaxport.toml is flagged encrypted (zipfile refuses to read it)."""
    return zoo.flag_encrypted(_zip_bytes({"jaxport.toml": b"format = 1"}), "jaxport.toml")


ONE_MODEL = (b'format = 1\n[models]\nm = "m.keras"\n[functions.f]\ninputs = { x = "f32[b,2]" }\n'
             b'outputs = { y = "x" }\n')
TANH_STEP = b'[[functions.f.steps]]\nbind = "x"\nop = "tanh"\nargs = ["x"]\n'


def _zip_with_two_manifests() -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns on the duplicate name
        with zipfile.ZipFile(buf, "w") as zf:
            for name, data in [("jaxport.toml", ONE_MODEL + TANH_STEP), ("m.keras", b"x"),
                               ("jaxport.toml", b"format = 1")]:
                zf.writestr(name, data)
    return buf.getvalue()


def _targz_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


BAD_UPLOADS = {
    "not_an_archive": ("model.keras", b"this is plain text, not a model", 422, "bad_archive"),
    "empty": ("model.keras", b"", 422, "bad_archive"),
    "zip_without_manifest": ("models.zip", _zip_bytes({"readme.txt": b"hello"}), 422, "bad_archive"),
    "manifest_names_missing_model": (
        "set.zip", _zip_bytes({"jaxport.toml": b'format = 1\n[models]\nm = "m.keras"\n'
                                               b'[functions.f]\ninputs = { x = "f32[b,2]" }\n'
                                               b'outputs = { y = "y" }\n[[functions.f.steps]]\n'
                                               b'bind = "y"\ncall = "m"\nargs = ["x"]\n'}),
        422, "bad_manifest"),
    "encrypted_member": ("set.zip", _encrypted_manifest_zip(), 422, "bad_archive"),
    "two_manifests": ("set.zip", _zip_with_two_manifests(), 422, "bad_archive"),
    "tar_gz_bomb": ("set.tar.gz", _targz_bytes({"jaxport.toml": ONE_MODEL + TANH_STEP,
                                                "m.keras": b"\0" * (20 * 1024 * 1024)}),
                    422, "bad_archive"),
    "deep_toml": ("set.zip", _zip_bytes({"jaxport.toml": b"format = 1\nx = " + b"[" * 5000
                                                          + b"]" * 5000}), 422, "bad_manifest"),
    "thousands_of_steps": ("set.zip", _zip_bytes({"jaxport.toml": ONE_MODEL + TANH_STEP * 2000,
                                                  "m.keras": b"x"}), 422, "bad_manifest"),
    "tar_gz_garbage": ("set.tar.gz", b"\x1f\x8b" + b"\0" * 64, 422, "bad_archive"),
    "bad_toml": ("set.zip", _zip_bytes({"jaxport.toml": b"format = = 1"}), 422, "bad_manifest"),
    "zip_bomb": ("bomb.zip", _zip_bytes({"jaxport.toml": b"format = 1",
                                         "weights.bin": b"\0" * (20 * 1024 * 1024)}),
                 422, "bad_archive"),
}


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_bad_upload_is_4xx_before_queueing(acme, case):
    name, data, status, code = BAD_UPLOADS[case]
    before = acme.get("/v1/jobs").json()["jobs"]
    r = _post_bytes(acme, name, data)
    assert r.status_code == status, r.text
    assert error_of(r)["code"] in (code if isinstance(code, tuple) else (code,))
    assert acme.get("/v1/jobs").json()["jobs"] == before  # nothing was queued


def test_zip_bomb_is_small_on_the_wire():
    assert len(BAD_UPLOADS["zip_bomb"][1]) < 100_000
    assert len(BAD_UPLOADS["tar_gz_bomb"][1]) < 100_000


def test_too_many_form_fields_is_400(acme, tiny_keras):
    """Each field is capped in size; their number is capped too, while the body streams in."""
    fields = {f"f{i}": "x" for i in range(100)}
    r = _post_bytes(acme, "tiny.keras", tiny_keras.read_bytes(), **fields)
    assert r.status_code == 400, r.text
    error = error_of(r)
    assert error["code"] == "bad_upload" and re.search(r"more than \d+ form fields",
                                                       error["message"]), error
    assert error["hint"]


def test_oversized_upload_is_413(acme):
    r = _post_bytes(acme, "big.keras", b"PK\x03\x04" + b"x" * MAX_UPLOAD_BYTES)
    assert r.status_code == 413 and error_of(r)["code"] == "archive_too_large"


@pytest.mark.parametrize("options, code", [
    ("{not json", "bad_options"),
    (json.dumps({"targets": ["coreml"]}), "bad_options"),
    (json.dumps({"targets": ["onnx"], "onnx_opset": 5}), "bad_options"),
    (json.dumps({"trusted": True}), "bad_options"),  # trusted mode is the operator's choice
    (json.dumps(["savedmodel"]), "bad_options"),
    ("[" * 20000 + "]" * 20000, "bad_options"),
    (json.dumps({"targets": 5, "batch_sizes": "x"}), "bad_options"),
])
def test_bad_options_are_400(acme, tiny_keras, options, code):
    r = _post_bytes(acme, "tiny.keras", tiny_keras.read_bytes(), options=options)
    assert r.status_code == 400 and error_of(r)["code"] == code, r.text


@pytest.mark.parametrize("options, field", [
    ({"quantize": "int8", "min_sqnr": -1}, "min_sqnr"),
    ({"quantize": "int8", "min_sqnr": 250}, "min_sqnr"),
    ({"min_sqnr": True}, "min_sqnr"),
    ({"tfjs_quantize": "uint8", "min_top1": 1.5}, "min_top1"),
    ({"min_top1": "high"}, "min_top1"),
])
def test_gate_options_out_of_range_are_422_naming_the_field(acme, tiny_keras, options, field):
    r = _post_bytes(acme, "tiny.keras", tiny_keras.read_bytes(), options=json.dumps(options))
    assert r.status_code == 422, r.text
    error = error_of(r)
    assert error["code"] == "bad_options" and error["message"].startswith(f"{field} must be")


def test_malformed_requests_are_400(acme, tiny_keras):
    r = acme.post("/v1/jobs", content=b"raw", headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 400 and error_of(r)["code"] == "bad_upload"
    r = acme.post("/v1/jobs", data={"options": "{}"}, files={"other": ("x", b"y")})
    assert r.status_code == 400 and error_of(r)["code"] == "bad_upload"
    r = acme.post("/v1/jobs", content=b"--xx\r\nbroken", headers={
        "Content-Type": "multipart/form-data; boundary=xx"})
    assert r.status_code == 400 and error_of(r)["code"] == "bad_upload"
    r = submit(acme, tiny_keras, None, **{"Idempotency-Key": "k" * 300})
    assert r.status_code == 400


def test_no_keys_means_local_tenant_without_auth(stack):
    url = stack.start_api("api-open", JAXPORT_API_KEYS="")
    with client_for(url, None) as c:
        assert c.get("/v1/jobs").status_code == 200
    log = next(p for p in stack.apis if p.name == "api-open").tail(200)
    assert "auth off" in log


def test_redis_down_is_503_not_500(stack, tiny_keras):
    from svc_stack import free_port

    url = stack.start_api("api-no-redis", JAXPORT_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    with client_for(url, "acme") as c:
        assert c.get("/healthz").status_code == 200
        ready = c.get("/readyz")
        assert ready.status_code == 503 and error_of(ready)["code"] == "not_ready"
        for r in (c.get("/v1/jobs"), submit(c, tiny_keras, {"targets": ["tflite"]})):
            assert r.status_code == 503 and error_of(r)["code"] == "service_unavailable"
            assert r.headers["retry-after"] == "5"
