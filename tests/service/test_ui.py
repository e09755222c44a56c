"""The web UI in headless Chromium over the real service stack: the archive dropped on the
page, every option reaching the job, the inspect preview, live progress from the SSE stream,
the target cards and chart, downloads, the shell commands, the job list (paging, cancel,
delete), and the models tried in the browser with TF.js and LiteRT.js, an image classifier
checked against Keras itself. Screenshots of the main states go to test-artifacts/screenshots/
(CI keeps that folder). Also the `/v1/jobs/{id}/tfjs/{path}` route and the runtime files."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from svc_stack import KEYS, ROOT, client_for, submit, wait_job

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
# Every option the page sends differs from its default, so each one is seen reaching the job.
UI_OPTIONS = {"targets": ["savedmodel", "tflite", "tfjs", "onnx"], "tfjs_quantize": "float16",
              "tfjs_shard_bytes": 65536, "onnx_opset": 21, "atol": 0.0002, "rtol": 0.002,
              "min_sqnr": 25.0, "min_top1": 0.25, "litertjs": True, "tolerance": "elementwise",
              "batch_sizes": [1, 2], "seed": 3, "name": "ui"}
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
    r = submit(acme, tiny_keras, UI_OPTIONS)
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
    page.on("console", lambda m: print(f"console {m.type}: {m.text}"[:500]))
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


def _page(browser: Browser, api_url: str, tenant: str = "acme", **kwargs) -> tuple[Page, list[str]]:
    """A page of the UI with `tenant`'s key saved and its problems watched."""
    page = browser.new_page(viewport={"width": 1280, "height": 900}, **kwargs)
    page.add_init_script(f"localStorage.setItem('jaxport.apiKey', '{KEYS[tenant]}')")
    problems = _watch(page, api_url)
    page.goto(f"{api_url}/")
    return page, problems


def _shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _drop(page: Page, selector: str, path: Path, mime: str) -> None:
    """Drop `path` on `selector` as a browser does: a `drop` event whose DataTransfer holds it."""
    transfer = page.evaluate_handle(
        """([name, mime, bytes]) => {
             const t = new DataTransfer();
             t.items.add(new File([new Uint8Array(bytes)], name, { type: mime }));
             return t;
           }""", [path.name, mime, list(path.read_bytes())])
    page.dispatch_event(selector, "dragenter", {"dataTransfer": transfer})
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def _fill_options(page: Page, options: dict) -> None:
    """Set the form's option fields to `options` (as a user would)."""
    for target in ("savedmodel", "tflite", "tfjs", "onnx"):
        box = page.locator(f"input[name=target][value={target}]")
        box.check() if target in options["targets"] else box.uncheck()
    for key, value in options.items():
        if key == "targets":
            continue
        field = page.locator(f"#opt-{key}")
        if field.evaluate("e => e.tagName") == "SELECT":
            field.select_option(json.dumps(value) if isinstance(value, bool) else value)
        else:
            field.fill(", ".join(map(str, value)) if isinstance(value, list) else str(value))


def _convert(page: Page, path: Path, options: dict, status: str = "succeeded") -> None:
    """Choose `path`, set `options` in the form, press Convert and wait for `status`."""
    page.set_input_files("#file", str(path))
    _fill_options(page, options)
    page.click("#submit")
    expect(page.locator("#job-status")).to_have_text(status, timeout=JOB_TIMEOUT_MS)


def _unlabelled(page: Page) -> list[str]:
    """Form controls and buttons a screen reader would announce without a name."""
    return page.eval_on_selector_all(
        "input, select, button",
        """nodes => nodes.filter(n => !(n.labels?.length || n.getAttribute("aria-label")
                                        || (n.tagName === "BUTTON" && n.textContent.trim())))
                        .map(n => n.outerHTML.slice(0, 120))""")


def _stages(page: Page) -> list[str]:
    return page.eval_on_selector_all("#timeline li", "items => items.map(i => i.dataset.stage)")


def test_ui_shows_api_errors_and_saves_the_key(browser, api_url):
    page = browser.new_page()
    page.goto(f"{api_url}/")
    expect(page.locator("#error")).to_contain_text("missing API key")
    page.fill("#api-key", KEYS["acme"])
    page.click("#key-form button")
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator("#key-state")).to_have_text("key saved")
    assert _unlabelled(page) == []
    page.focus("#api-key")  # Tab goes on to Save key, the archive, then the first option
    active = "(e => `${e.tagName}:${e.id || e.value || e.textContent}`)(document.activeElement)"
    for expected in ("BUTTON:Save key", "INPUT:file", "INPUT:savedmodel"):
        page.keyboard.press("Tab")
        assert page.evaluate(active) == expected
    page.reload()
    assert page.input_value("#api-key") == KEYS["acme"]
    page.fill("#api-key", "not-a-key")
    page.click("#key-form button")
    expect(page.locator("#error")).to_contain_text("unknown API key")
    page.close()


def test_ui_refuses_an_option_out_of_range_with_its_reason(browser, api_url, tiny_keras):
    page, problems = _page(browser, api_url)
    page.set_input_files("#file", str(tiny_keras))
    page.fill("#opt-onnx_opset", "30")
    expect(page.locator("#cmd-curl")).to_have_text("(Opset must be from 17 to 26, got 30)")
    page.fill("#opt-onnx_opset", "23")
    page.fill("#opt-batch_sizes", "1, 0")
    page.click("#submit")
    expect(page.locator("#error")).to_contain_text("Batch sizes must be at least 1, got 0")
    assert page.locator("#job").is_hidden()
    page.close()
    assert problems == []


def test_ui_drop_options_live_progress_cards_and_downloads(browser, api_url, acme, tiny_keras):
    """The archive dropped on the page, every option set in the form reaching the job, progress
    from the SSE stream only, one card per target, the chart, downloads and the shell lines."""
    page, problems = _page(browser, api_url, accept_downloads=True)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(f"{r.method} {r.url}"))
    expect(page.locator("input[name=target][value=onnx]")).not_to_be_checked()  # on request
    _drop(page, "#drop", tiny_keras, "application/octet-stream")
    expect(page.locator("#file-name")).to_contain_text("tiny.keras")
    expect(page.locator("#inspect-verdict")).to_contain_text("tfjs: will lower", timeout=JOB_TIMEOUT_MS)
    _fill_options(page, UI_OPTIONS)
    curl, cli = page.text_content("#cmd-curl"), page.text_content("#cmd-cli")
    _shot(page, "1-archive-dropped-options-and-inspect")
    page.click("#submit")
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=JOB_TIMEOUT_MS)
    job_id = page.text_content("#job-id")
    job = acme.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["cached_from"] is None, job
    assert {k: job["options"][k] for k in UI_OPTIONS} == UI_OPTIONS
    assert page.locator("#job-progress").evaluate("p => p.value") == 1
    _shot(page, "2-job-succeeded-cards-and-chart")

    # live progress: the stream's stages, and no GET of the job itself (no polling)
    assert f"GET {api_url}/v1/jobs/{job_id}/events" in requests
    assert f"GET {api_url}/v1/jobs/{job_id}" not in requests, requests
    stages = _stages(page)
    assert stages[-1] == "done" and {"load", "trace", "tflite", "tfjs", "onnx"} <= set(stages), stages
    assert "server-sent events" in page.text_content("#job-feed")
    assert all(re.fullmatch(r"\d+\.\d s", s) for s in page.eval_on_selector_all(
        "#timeline li .seconds", "s => s.slice(0, -1).map(e => e.textContent)"))

    # a card per target: status, source, bytes, seconds, parity per output with its batch sizes
    for name, target in job["targets"].items():
        card = page.locator(f".card[data-target={name}]")
        assert card.locator(".fact-status").text_content() == target["status"] == "ok"
        assert card.locator(".fact-source").text_content() == str(target.get("source") or "—")
        assert card.locator(".fact-build").text_content() == f"{target['seconds']:.1f} s"
        assert "batch sizes 1, 2" in card.locator(".parity").text_content()
        for output, parity in target["parity"]["outputs"].items():
            row = _table(page, f".card[data-target={name}] .parity")[output]
            assert row[0] == "yes" and row[1] == (f"{parity['rel_err']:.2e}".replace("e-0", "e-")
                                                  if parity["rel_err"] else "0.00e+0"), row
        bar = page.locator(f".panel-bytes rect[data-target={name}]")
        assert int(bar.get_attribute("data-value")) == target["bytes"]
        err = page.locator(f".panel-error rect[data-target={name}]")
        assert float(err.get_attribute("data-value")) == target["parity"]["max_rel_err"]

    with page.expect_download() as download:
        page.click("text=Download model.tflite")
    saved = Path(download.value.path()).read_bytes()
    assert saved == acme.get(f"/v1/jobs/{job_id}/artifacts/model.tflite").content
    with page.expect_download() as download:
        page.click("text=Download onnx.zip")
    saved = Path(download.value.path()).read_bytes()
    assert saved == acme.get(f"/v1/jobs/{job_id}/artifacts/onnx.zip").content

    # the page's curl and `jaxport submit` lines, run as shown: the same options again
    env = {**os.environ, "JAXPORT_API_KEY": KEYS["acme"]}
    answer = subprocess.run(["bash", "-c", curl], cwd=tiny_keras.parent, env=env,
                            capture_output=True, text=True, timeout=60, check=True)
    by_curl = json.loads(answer.stdout)
    cli_args = shlex.split(cli)
    assert cli_args[0] == "jaxport"
    run = subprocess.run([str(Path(sys.executable).parent / "jaxport"), *cli_args[1:], "--json"],
                         cwd=tiny_keras.parent, env={**env, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    by_cli = json.loads(run.stdout)
    for other in (by_curl, by_cli):
        assert other["options"] == job["options"], (other["options"], job["options"])
    assert problems == []
    page.close()


def test_ui_polls_when_the_event_stream_fails(browser, api_url, tfjs_job):
    """With the SSE route unreachable (the network drops it), the page polls the job instead."""
    page = browser.new_page()
    page.add_init_script(f"localStorage.setItem('jaxport.apiKey', '{KEYS['acme']}')")
    page.route("**/v1/jobs/*/events", lambda route: route.abort("connectionreset"))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{api_url}/")
    page.click(f"#jobs button.link:text('{tfjs_job['id']}')")
    expect(page.locator("#job-status")).to_have_text("succeeded")
    expect(page.locator("#job-feed")).to_contain_text("the event stream failed")
    expect(page.locator("#job-feed")).to_contain_text(": polling")
    assert f"{api_url}/v1/jobs/{tfjs_job['id']}" in requests
    assert len(page.locator(".card").all()) == 4
    page.close()


def test_ui_shows_the_reports_warnings(browser, api_url, model_dir):
    """A model whose output is constant converts fine, and the page says its check cannot tell."""
    import zoo

    x = zoo.keras.Input((4,), name="x")
    dense = zoo.keras.layers.Dense(2, kernel_initializer="zeros", bias_initializer="zeros")
    path = zoo.save(zoo.keras.Model(x, dense(x), name="constant"), model_dir / "constant.keras")
    page, _ = _page(browser, api_url)
    _convert(page, path, {"targets": ["savedmodel"]})
    expect(page.locator("#job-warnings")).to_be_visible()
    expect(page.locator("#job-warnings")).to_contain_text("the output is constant")
    page.close()


def test_ui_shows_a_failed_target_with_its_hint(browser, api_url, model_dir):
    """The LU model cannot lower for TF.js: its card shows the error and the hint."""
    import zoo

    blocked = model_dir / "det-ui.keras"
    if not blocked.exists():
        zoo.save(zoo.det_head(), blocked)
    page, _ = _page(browser, api_url)
    _convert(page, blocked, {"targets": ["tfjs"]}, "failed")
    card = page.locator(".card[data-target=tfjs]")
    expect(card.locator(".fact-status")).to_have_text("failed")
    expect(card.locator(".failure")).to_contain_text(re.compile(
        r"primitive lu .* has no lowering: linear algebra .* \[lowering_unsupported\] \(stage tfjs\)"))
    expect(card.locator(".failure .hint")).to_contain_text("hint: compute the decomposition outside")
    expect(page.locator("#job-error")).to_contain_text("[target_failed]")
    _shot(page, "3-job-failed-error-with-hint")
    page.close()


# --- trying models in the browser ----------------------------------------------------------------

def _png(path: Path, pixels: np.ndarray) -> Path:
    """Write `pixels` (h, w, 3 uint8) as a PNG file (zlib and struct: no imaging library)."""
    h, w, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def classifier(model_dir):
    """keras.applications MobileNetV3Small (weights=None, 32x32, 10 classes, softmax), its
    preprocessing inside (it takes 0-255 pixels), BatchNorm statistics calibrated."""
    import zoo

    model = zoo.keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3), weights=None, classes=10, minimalistic=True)
    model = zoo.with_real_bn(model, calibration=zoo.images(model))
    return model, zoo.save(model, model_dir / "mnv3-small.keras")


def _outputs(page: Page, runtime: str) -> dict[str, np.ndarray]:
    return {o["name"]: np.array(o["values"], np.float32) for o in page.eval_on_selector_all(
        f".run-{runtime} .output",
        "nodes => nodes.map(n => ({name: n.dataset.output, values: JSON.parse(n.dataset.values)}))")}


def _top5(page: Page, runtime: str) -> list[tuple[int, float]]:
    return [(int(c), float(s)) for c, s in page.eval_on_selector_all(
        f".run-{runtime} .top5 li", "items => items.map(i => [i.dataset.class, i.dataset.score])")]


# The browser runtimes against Keras on the CPU: the rule the job verified its unquantized
# artifacts with (atol 1e-4, rtol 1e-3 of the largest score). Both runtimes compute in float32
# (TF.js's WebGL backend on float32 textures, LiteRT.js on XNNPack), only in another op order.
ATOL, RTOL = 1e-4, 1e-3


def _close(got: np.ndarray, want: np.ndarray) -> bool:
    return float(np.abs(got - want).max()) <= ATOL + RTOL * float(np.abs(want).max())


def _check_top5(top5: list[tuple[int, float]], want: np.ndarray) -> None:
    """The page's top 5 are Keras's top 5, in order, up to ties closer than the tolerance."""
    assert len(top5) == 5
    ranked = np.sort(want)[::-1]
    bound = ATOL + RTOL * float(np.abs(want).max())
    for k, (index, score) in enumerate(top5):
        assert abs(score - want[index]) <= bound, (k, index, score, want)
        assert abs(want[index] - ranked[k]) <= 2 * bound, (k, index, want)


def test_ui_tries_an_image_classifier_with_tfjs_and_litertjs(browser, api_url, acme, classifier,
                                                            tmp_path):
    """A picture dropped on the try-out, resized to 32x32: TF.js and LiteRT.js give Keras's
    scores on the very pixels the page fed, and the same top 5."""
    model, path = classifier
    page, problems = _page(browser, api_url)
    _convert(page, path, {"targets": ["tflite", "tfjs"], "name": "ui-image"})
    block = page.locator(".tryout[data-function=serving_default]")
    expect(block.locator(".picture-drop")).to_contain_text("pixels scaled to [0, 255]: pixel values")

    rng = np.random.default_rng(7)  # a 96x80 picture of smooth colour blobs
    yy, xx = np.mgrid[0:80, 0:96] / 16.0
    picture = np.stack([np.sin(xx + c) * np.cos(yy * (c + 1)) for c in range(3)], -1)
    picture = ((picture + 1) * 127.5 + rng.normal(0, 4, picture.shape)).clip(0, 255).astype(np.uint8)
    _drop(page, ".tryout[data-function=serving_default] .picture-drop",
          _png(tmp_path / "blobs.png", picture), "image/png")
    expect(block.locator(".picture-drop")).to_contain_text("blobs.png (96×80) resized to 32×32")
    block.locator("button.run-model").click()
    expect(block.locator(".run-tfjs .top5 li")).to_have_count(5, timeout=120_000)
    expect(block.locator(".run-litert .top5 li")).to_have_count(5, timeout=120_000)
    _shot(page, "4-tryout-image-tfjs-and-litertjs")

    fed = np.array(page.eval_on_selector(
        ".tryout[data-function=serving_default] canvas",
        "c => Array.from(c.getContext('2d').getImageData(0, 0, 32, 32).data)"), np.float32)
    pixels = fed.reshape(1, 32, 32, 4)[..., :3]  # RGBA -> the RGB the page fed, 0..255
    assert abs(pixels.mean() - picture.mean()) < 10  # the picture, resized
    want = np.asarray(model(pixels, training=False))[0]
    for runtime in ("tfjs", "litert"):
        got = _outputs(page, runtime)["predictions"]
        assert got.shape == want.shape and _close(got, want), (runtime, got, want)
        _check_top5(_top5(page, runtime), want)
    assert _close(_outputs(page, "litert")["predictions"], _outputs(page, "tfjs")["predictions"])
    assert "LiteRT.js, " in block.locator(".run-litert .runtime").text_content()
    assert re.search(r"run \d+\.\d ms", block.locator(".run-litert .timing").text_content())
    assert re.search(r"run \d+\.\d ms", block.locator(".run-tfjs .timing").text_content())
    assert "TF.js vs LiteRT.js on the same input: predictions: max |Δ|" in block.locator(".agreement").text_content()
    assert _unlabelled(page) == []  # the job's cards, list and try-out included
    assert problems == []
    page.close()


def test_ui_runs_random_inputs_in_both_runtimes(browser, api_url, acme, tfjs_job):
    """A non-image model runs on random inputs; both runtimes agree with each other."""
    page, problems = _page(browser, api_url)
    page.click(f"#jobs button.link:text('{tfjs_job['id']}')")
    block = page.locator(".tryout[data-function=serving_default]")
    expect(block).to_contain_text("inputs: random")
    block.locator("button.run-model").click()
    expect(block.locator(".run-litert .timing")).to_contain_text("run ", timeout=120_000)
    expect(block.locator(".run-tfjs .timing")).to_contain_text("run ")
    ((out_name, out_spec),) = tfjs_job["functions"]["serving_default"]["outputs"].items()
    assert f"{out_name}: shape [1, {out_spec['shape'][1]}] float32" in block.locator(".run-tfjs").text_content()
    tfjs, litert = _outputs(page, "tfjs")[out_name], _outputs(page, "litert")[out_name]
    # TF.js runs float16 weights here (the job's tfjs_quantize), LiteRT.js the float32 model
    assert tfjs.shape == litert.shape == (out_spec["shape"][1],)
    assert float(np.abs(tfjs - litert).max()) <= 0.05 + 0.05 * float(np.abs(litert).max())
    assert problems == []
    page.close()


# --- the job list ----------------------------------------------------------------------------------

def test_ui_job_list_pages_cancels_and_deletes(browser, api_url, tiny_keras):
    """Tenant hooli (only this test) with 6 jobs: pages of 5, a running job canceled and a
    finished one deleted from the list, both seen through the API."""
    with client_for(api_url, "hooli") as hooli:
        first = submit(hooli, tiny_keras, {"targets": ["savedmodel"], "name": "list"}).json()
        assert wait_job(hooli, first["id"])["status"] == "succeeded"
        for _ in range(4):  # identical uploads: answered at once from the first
            assert submit(hooli, tiny_keras, {"targets": ["savedmodel"], "name": "list"}).status_code == 202
        slow = submit(hooli, tiny_keras, {"targets": ["savedmodel", "tflite", "tfjs", "onnx"],
                                          "name": "list-cancel"}).json()
        page, problems = _page(browser, api_url, "hooli")
        page.select_option("#page-size", "5")
        rows = page.locator("#jobs tbody tr")
        expect(rows).to_have_count(5)
        expect(page.locator("#page-state")).to_have_text("jobs 1–5")
        assert rows.first.get_attribute("data-job") == slow["id"]
        newest = [r.get_attribute("data-job") for r in rows.all()]
        page.click("#page-older")
        expect(page.locator("#page-state")).to_have_text("jobs 6–6")
        assert [r.get_attribute("data-job") for r in rows.all()] == [first["id"]]
        assert page.locator("#page-older").is_disabled()
        page.click("#page-newer")
        expect(page.locator("#page-state")).to_have_text("jobs 1–5")
        assert [r.get_attribute("data-job") for r in rows.all()] == newest
        assert page.locator("#page-newer").is_disabled()
        _shot(page, "5-job-list-paged")

        page.click(f"button[aria-label='Cancel job {slow['id']}']")
        expect(page.locator(f"tr[data-job={slow['id']}] .status")).to_have_text("canceled")
        assert hooli.get(f"/v1/jobs/{slow['id']}").json()["status"] == "canceled"
        doomed = newest[1]
        page.click(f"button[aria-label='Delete job {doomed}']")
        expect(page.locator(f"tr[data-job={doomed}]")).to_have_count(0)
        assert hooli.get(f"/v1/jobs/{doomed}").status_code == 404
        expect(rows).to_have_count(5)  # the next older job moved up
        assert problems == []
        page.close()


def test_ui_serves_its_files_and_the_tfjs_bundle(api_url):
    page = httpx.get(f"{api_url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for name, media in [("app.js", "text/javascript"), ("options.js", "text/javascript"),
                        ("jobs.js", "text/javascript"), ("chart.js", "text/javascript"),
                        ("tryout.js", "text/javascript"), ("inspect.js", "text/javascript"),
                        ("style.css", "text/css"), ("tf.min.js", "text/javascript"),
                        ("litertjs/core.js", "text/javascript"),
                        ("litertjs/wasm-utils.js", "text/javascript"),
                        ("litertjs/wasm/litert_wasm_internal.js", "text/javascript"),
                        ("litertjs/wasm/litert_wasm_compat_internal.wasm", "application/wasm")]:
        r = httpx.get(f"{api_url}/ui/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(media), name
    for script in re.findall(r'src="(/ui/[^"]+)"', page.text):  # every script the page names
        assert httpx.get(f"{api_url}{script}").status_code == 200, script
    for path in ("/ui/nope.js", "/ui/..%2Fapp.py", "/ui/", "/ui/litertjs/index.js.map",
                 "/ui/litertjs/wasm/..%2F..%2Fcore.js", "/ui/litertjs/wasm/nope.wasm"):
        r = httpx.get(f"{api_url}{path}")
        assert r.status_code == 404 and error_of(r)["code"] == "not_found", path
    assert httpx.get(f"{api_url}/docs").status_code == 200


def test_js_runtimes_missing_are_503(stack, tmp_path):
    url = stack.start_api("api-no-js", JAXPORT_JS_DIR=str(tmp_path))
    for name in ("tf.min.js", "litertjs/core.js", "litertjs/wasm/litert_wasm_internal.wasm"):
        r = httpx.get(f"{url}/ui/{name}")
        assert r.status_code == 503 and error_of(r)["code"] == "service_unavailable", name
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
    whose LU decomposition has no lowering is blocked for TF.js, the tiny MLP lowers everywhere."""
    import zoo

    blocked = zoo.save(zoo.det_head(), model_dir / "det-ui.keras")
    page = browser.new_page()
    page.add_init_script(f"localStorage.setItem('jaxport.apiKey', '{KEYS['acme']}')")
    problems = _watch(page, api_url)
    page.goto(f"{api_url}/")
    page.set_input_files("#file", str(blocked))
    verdict = page.locator("#inspect-verdict")
    expect(verdict).to_contain_text("tfjs: blocked: ", timeout=JOB_TIMEOUT_MS)
    text = verdict.text_content()
    assert "savedmodel: will build" in text and "tflite: orbax path: " in text
    assert "lu at an unknown location has no lowering rule" in text, text
    expect(page.locator("#inspect-state")).to_contain_text("det-ui.keras")
    page.click("#inspect-functions summary")
    prims = _table(page, "#inspect-functions table.primitives")
    assert prims["lu"][1] == "none" and prims["lu"][3].startswith("blocked")

    page.set_input_files("#file", str(tiny_keras))
    expect(verdict).to_contain_text("tfjs: will lower", timeout=JOB_TIMEOUT_MS)
    assert "tflite: lowered path" in verdict.text_content()
    assert page.locator("#job").is_hidden()  # nothing was submitted
    assert problems == []
    page.close()
