"""The web UI in headless Chromium over the real service stack (upload, live status, download,
the TF.js model run in the browser), and the `/v1/jobs/{id}/tfjs/{path}` file route."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from svc_stack import KEYS, submit, wait_job

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ALL_TARGETS = {"targets": ["savedmodel", "tflite", "tfjs", "onnx"], "name": "ui"}
JOB_TIMEOUT_MS = 300_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium from Debian, driven by playwright (its own browsers are never used)."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/bootstrap (it apt-get installs chromium)",
                    pytrace=False)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def tfjs_job(acme, tiny_keras) -> dict:
    """The tiny model with every target; a cache hit when the browser test converted it first."""
    r = submit(acme, tiny_keras, ALL_TARGETS)
    assert r.status_code == 202, r.text
    job = wait_job(acme, r.json()["id"], timeout=300)
    assert job["status"] == "succeeded", job
    return job


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "hint"}, body
    return body["error"]


def _watch(page: Page, origin: str) -> list[str]:
    """Console errors, page errors, failed or 4xx/5xx requests and requests leaving `origin`."""
    problems: list[str] = []
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url} {r.failure}"))
    page.on("response", lambda r: r.status >= 400 and problems.append(f"{r.status}: {r.url}"))
    page.on("request", lambda r: r.url.startswith((origin, "blob:", "data:"))
            or problems.append(f"left the server: {r.url}"))
    return problems


def _table(page: Page, selector: str) -> dict[str, list[str]]:
    rows = page.eval_on_selector_all(
        f"{selector} tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
    return {row[0]: row[1:] for row in rows}


def test_ui_shows_api_errors_and_saves_the_key(browser, api_url):
    page = browser.new_page()
    page.goto(f"{api_url}/")
    expect(page.locator("#error")).to_contain_text("missing API key")
    page.fill("#api-key", KEYS["acme"])
    page.click("#key-form button")
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator("#key-state")).to_have_text("key saved")
    page.reload()
    assert page.input_value("#api-key") == KEYS["acme"]
    page.fill("#api-key", "not-a-key")
    page.click("#key-form button")
    expect(page.locator("#error")).to_contain_text("unknown API key")
    page.close()


def test_ui_converts_downloads_and_runs_tfjs_in_the_browser(browser, api_url, acme, tiny_keras):
    page = browser.new_page(accept_downloads=True)
    page.add_init_script(f"localStorage.setItem('jaxport.apiKey', '{KEYS['acme']}')")
    problems = _watch(page, api_url)
    page.goto(f"{api_url}/")

    page.set_input_files("#file", str(tiny_keras))
    page.fill("#job-name", ALL_TARGETS["name"])
    expect(page.locator("input[name=target][value=onnx]")).not_to_be_checked()  # on request
    page.check("input[name=target][value=onnx]")
    page.click("#submit")
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=JOB_TIMEOUT_MS)
    job_id = page.text_content("#job-id")
    job = acme.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["options"]["name"] == "ui"
    assert page.locator("#job-progress").evaluate("p => p.value") == 1
    assert job_id in page.text_content("#jobs tbody")

    targets = _table(page, "#targets")  # status, tflite source, parity passed, max abs err, ...
    assert set(targets) == {"savedmodel", "tflite", "tfjs", "onnx"}
    for name in ("tflite", "tfjs", "onnx"):
        assert targets[name][0] == "ok" and targets[name][2] == "yes", targets
    assert targets["tflite"][1] == job["targets"]["tflite"]["source"]

    with page.expect_download() as download:
        page.click("text=Download model.tflite")
    saved = Path(download.value.path()).read_bytes()
    assert saved == acme.get(f"/v1/jobs/{job_id}/artifacts/model.tflite").content
    with page.expect_download() as download:
        page.click("text=Download onnx.zip")
    saved = Path(download.value.path()).read_bytes()
    assert saved == acme.get(f"/v1/jobs/{job_id}/artifacts/onnx.zip").content

    page.click("button.run-tfjs")
    result = page.locator("#tfjs-result")
    expect(result).to_contain_text("run time", timeout=60_000)
    ((out_name, out_spec),) = job["functions"]["serving_default"]["outputs"].items()
    shape = ", ".join("1" if isinstance(d, str) else str(d) for d in out_spec["shape"])
    assert f"output {out_name}: shape [{shape}] float32" in result.text_content()
    assert re.search(r"run time \d+(\.\d)? ms", result.text_content())
    assert problems == []
    page.close()


def test_ui_shows_the_reports_warnings(browser, api_url, model_dir):
    """A model whose output is constant converts fine, and the page says its check cannot tell."""
    import zoo

    x = zoo.keras.Input((4,), name="x")
    dense = zoo.keras.layers.Dense(2, kernel_initializer="zeros", bias_initializer="zeros")
    path = zoo.save(zoo.keras.Model(x, dense(x), name="constant"), model_dir / "constant.keras")
    page = browser.new_page()
    page.add_init_script(f"localStorage.setItem('jaxport.apiKey', '{KEYS['acme']}')")
    page.goto(f"{api_url}/")
    page.set_input_files("#file", str(path))
    for target in ("tflite", "tfjs"):
        page.uncheck(f"input[name=target][value={target}]")
    page.click("#submit")
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=JOB_TIMEOUT_MS)
    expect(page.locator("#job-warnings")).to_be_visible()
    expect(page.locator("#job-warnings")).to_contain_text("the output is constant")
    page.close()


def test_ui_serves_its_files_and_the_tfjs_bundle(api_url):
    page = httpx.get(f"{api_url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for name, media in [("app.js", "text/javascript"), ("style.css", "text/css"),
                        ("tf.min.js", "text/javascript")]:
        r = httpx.get(f"{api_url}/ui/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(media), name
    for path in ("/ui/nope.js", "/ui/..%2Fapp.py", "/ui/"):
        r = httpx.get(f"{api_url}{path}")
        assert r.status_code == 404 and error_of(r)["code"] == "not_found", path
    assert httpx.get(f"{api_url}/docs").status_code == 200


def test_tfjs_bundle_missing_is_503(stack, tmp_path):
    url = stack.start_api("api-no-js", JAXPORT_JS_DIR=str(tmp_path))
    r = httpx.get(f"{url}/ui/tf.min.js")
    assert r.status_code == 503 and error_of(r)["code"] == "service_unavailable"
    assert "scripts/install-js" in error_of(r)["hint"]


def test_tfjs_route_serves_members_of_tfjs_zip(acme, tfjs_job):
    job_id = tfjs_job["id"]
    stored = zipfile.ZipFile(io.BytesIO(acme.get(f"/v1/jobs/{job_id}/artifacts/tfjs.zip").content))
    names = stored.namelist()
    assert "model.json" in names and any(n.endswith(".bin") for n in names), names
    for name in names:
        r = acme.get(f"/v1/jobs/{job_id}/tfjs/{name}")
        assert r.status_code == 200 and r.content == stored.read(name), name
        media = "application/json" if name.endswith(".json") else "application/octet-stream"
        assert r.headers["content-type"] == media


@pytest.mark.parametrize("path", ["nope.json", "", "../tfjs.zip", "..%2F..%2Freport.json",
                                  "/etc/passwd", "model.json/", "%00", "a" * 2000])
def test_tfjs_route_unknown_member_is_404(acme, tfjs_job, path):
    r = acme.get(f"/v1/jobs/{tfjs_job['id']}/tfjs/{path}")
    assert r.status_code == 404 and error_of(r)["code"] == "not_found", r.text


def test_tfjs_route_other_tenant_and_no_tfjs_are_404(acme, globex, tiny_keras, tfjs_job):
    r = globex.get(f"/v1/jobs/{tfjs_job['id']}/tfjs/model.json")
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    queued = submit(acme, tiny_keras, {"targets": ["tflite"], "name": "ui-no-tfjs"}).json()
    r = acme.get(f"/v1/jobs/{queued['id']}/tfjs/model.json")
    assert r.status_code == 404 and "has no TF.js model" in error_of(r)["message"]
    assert acme.delete(f"/v1/jobs/{queued['id']}").status_code in (200, 204)


def test_ui_inspect_preview_before_convert(browser, api_url, model_dir, tiny_keras):
    """Choosing a file shows what `POST /v1/inspect` says, before Convert is pressed: a model
    whose FFT has no lowering is blocked for TF.js, the tiny MLP lowers everywhere."""
    import zoo

    mel = zoo.save(zoo.mel_classifier(), model_dir / "mel-ui.keras")
    page = browser.new_page()
    page.add_init_script(f"localStorage.setItem('jaxport.apiKey', '{KEYS['acme']}')")
    problems = _watch(page, api_url)
    page.goto(f"{api_url}/")
    page.set_input_files("#file", str(mel))
    verdict = page.locator("#inspect-verdict")
    expect(verdict).to_contain_text("tfjs: blocked: ", timeout=JOB_TIMEOUT_MS)
    text = verdict.text_content()
    assert "savedmodel: will build" in text and "tflite: orbax path: " in text
    # Keras numbers the layer (mel_spectrogram_1) when this process made a mel model before
    assert re.search(r"\(in mel_spectrogram(_\d+)?\) has no lowering rule", text), text
    expect(page.locator("#inspect-state")).to_contain_text("mel-ui.keras")
    page.click("#inspect-functions summary")
    prims = _table(page, "#inspect-functions table.primitives")
    assert prims["fft"][1] == "none" and prims["fft"][3].startswith("blocked")

    page.set_input_files("#file", str(tiny_keras))
    expect(verdict).to_contain_text("tfjs: will lower", timeout=JOB_TIMEOUT_MS)
    assert "tflite: lowered path" in verdict.text_content()
    assert page.locator("#job").is_hidden()  # nothing was submitted
    assert problems == []
    page.close()
