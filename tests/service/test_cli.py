"""The CLI's client commands against the real stack (Redis, Celery workers, the HTTP API), run
as the installed `jaxport` would run them: `python -m jaxport.cli`, which finds the service's
commands through the `jaxport.commands` entry point. The entry point is made visible here by a
dist-info written for the test (the same metadata `pip install` writes), so the test does not
depend on how the package was installed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from svc_stack import FAST_TARGETS, KEYS, ROOT, base_env, submit, wait_job

# A job that keeps a warm worker busy for many seconds while a command starts (a warm worker
# converts the composite with three targets at two batch sizes in about 3 s).
SLOW_JOB = {"targets": ["savedmodel", "tflite", "tfjs"], "batch_sizes": list(range(1, 13))}

TERMINAL = ("succeeded", "partial", "failed", "canceled")


def _dist_info(where: Path, name: str, entry_points: str) -> Path:
    info = where / f"{name}-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0\n")
    (info / "entry_points.txt").write_text(f"[jaxport.commands]\n{entry_points}\n")
    return where


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    return _dist_info(tmp_path_factory.mktemp("plugin"), "jaxport_service_test",
                      "service = service.commands:register")


def run_cli(plugin_path: Path, *argv: str, server: str | None = None, timeout: float = 300,
            **env: str) -> subprocess.CompletedProcess:
    extra = ["--server", server, "--api-key", KEYS["acme"]] if server else []
    environ = base_env(PYTHONPATH=f"{ROOT}:{plugin_path}", **env)
    return subprocess.run([sys.executable, "-m", "jaxport.cli", *argv, *extra], env=environ,
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_version_comes_from_package_metadata(plugin_path):
    result = run_cli(plugin_path, "--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"jaxport {metadata.version('jaxport')}"


def test_help_lists_the_service_commands_found_by_entry_point(plugin_path, tmp_path):
    listed = run_cli(plugin_path, "--help").stdout
    for command in ("convert", "inspect", "submit", "jobs", "status", "download", "cancel"):
        assert command in listed
    broken = _dist_info(tmp_path, "broken_plugin", "broken = no_such_module:register")
    result = run_cli(broken, "frobnicate")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[0].startswith("error: no command 'frobnicate' (")
    assert "broken (no_such_module:register): ModuleNotFoundError" in result.stderr
    assert result.stderr.splitlines()[1].startswith("hint: ")


def test_submit_wait_shows_progress_and_the_target_table(plugin_path, api_url, tiny_keras):
    result = run_cli(plugin_path, "submit", str(tiny_keras), "--targets", "savedmodel,tflite",
                     "--options", '{"name": "cli-table"}', "--wait", server=api_url)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("job j_")
    assert re.search(r"^\[ *\d+%  *[\d.]+s\] \w+: ", result.stderr, re.M), result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("job j_") and " succeeded: done (100%)" in lines[0]
    rows = {line.split()[0]: line for line in lines[1:]
            if line.split()[:1] in (["savedmodel"], ["tflite"])}
    assert set(rows) == {"savedmodel", "tflite"}
    assert rows["tflite"].split()[1] == "ok" and "max err ÷ scale" in rows["tflite"]
    assert " lowered " in rows["tflite"] and "model.tflite" in rows["tflite"]
    assert lines[-1].endswith("/artifacts/report.json")


def test_submit_json_is_the_raw_record(plugin_path, api_url, acme, tiny_keras):
    result = run_cli(plugin_path, "submit", str(tiny_keras), "--targets", "savedmodel,tflite",
                     "--options", '{"name": "cli-table"}', "--wait", "--json", server=api_url)
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)
    assert job == acme.get(f"/v1/jobs/{job['id']}").json()


@pytest.fixture(scope="module")
def done_job(acme, tiny_keras) -> dict:
    job = submit(acme, tiny_keras, {**FAST_TARGETS, "name": "cli-done"}).json()
    return wait_job(acme, job["id"], timeout=300)


def test_jobs_lists_and_pages(plugin_path, api_url, acme, done_job):
    result = run_cli(plugin_path, "jobs", "--limit", "1", server=api_url)
    assert result.returncode == 0, result.stderr
    header, first, *rest = result.stdout.splitlines()
    newest = acme.get("/v1/jobs", params={"limit": 1}).json()
    assert header.split()[:3] == ["id", "status", "stage"]
    assert first.split()[:2] == [newest["jobs"][0]["id"], newest["jobs"][0]["status"]]
    assert rest == [f"next: --cursor {newest['next_cursor']}"]
    listed = json.loads(run_cli(plugin_path, "jobs", "--limit", "200", "--json", server=api_url).stdout)
    assert done_job["id"] in {j["id"] for j in listed["jobs"]}


def test_status_and_watch(plugin_path, api_url, acme, composite_zip, done_job):
    result = run_cli(plugin_path, "status", done_job["id"], server=api_url)
    assert result.returncode == 0 and f"job {done_job['id']} succeeded" in result.stdout
    assert "tflite      ok" in result.stdout

    job = submit(acme, composite_zip, {**SLOW_JOB, "name": "cli-watch"}).json()
    watched = run_cli(plugin_path, "status", job["id"], "--watch", "--json", server=api_url)
    events = [json.loads(line) for line in watched.stdout.splitlines()]
    assert watched.returncode == 0, watched.stderr
    assert events[0]["status"] in ("queued", "running") and events[-1]["status"] == "succeeded"
    assert len({(e["stage"], e["progress"]) for e in events}) >= 3  # it saw the job move

    again = run_cli(plugin_path, "status", job["id"], "--watch", server=api_url)
    assert again.returncode == 0 and "tflite      ok" in again.stdout


def test_download_bundle_and_one_artifact(plugin_path, api_url, acme, done_job, tmp_path):
    out = tmp_path / "bundle"
    result = run_cli(plugin_path, "download", done_job["id"], "-o", str(out), server=api_url)
    assert result.returncode == 0, result.stderr
    assert (out / "savedmodel" / "saved_model.pb").is_file()
    report = json.loads((out / "report.json").read_text())
    assert report["targets"] == done_job["targets"]

    tflite = tmp_path / "m.tflite"
    result = run_cli(plugin_path, "download", done_job["id"], "--artifact", "model.tflite",
                     "-o", str(tflite), server=api_url)
    assert result.returncode == 0, result.stderr
    assert tflite.read_bytes() == acme.get(f"/v1/jobs/{done_job['id']}/artifacts/model.tflite").content


def test_cancel_then_delete(plugin_path, api_url, acme, composite_zip):
    job = submit(acme, composite_zip, {**SLOW_JOB, "name": "cli-cancel"}).json()
    result = run_cli(plugin_path, "cancel", job["id"], server=api_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"job {job['id']} canceled"
    assert acme.get(f"/v1/jobs/{job['id']}").json()["status"] == "canceled"

    refused = run_cli(plugin_path, "cancel", job["id"], server=api_url)
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [f"error: job {job['id']} already ended (canceled)",
                                           "hint: pass --delete to delete it and its artifacts"]
    deleted = run_cli(plugin_path, "cancel", job["id"], "--delete", server=api_url)
    assert deleted.returncode == 0 and deleted.stdout.strip() == f"job {job['id']} deleted"
    gone = run_cli(plugin_path, "status", job["id"], server=api_url)
    assert gone.returncode == 2 and gone.stderr.startswith(f"error: 404 no job '{job['id']}'")
    assert "hint: list your jobs with GET /v1/jobs" in gone.stderr


def test_unreachable_server_is_one_line(plugin_path):
    result = run_cli(plugin_path, "jobs", "--server", "http://127.0.0.1:9")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: cannot reach http://127.0.0.1:9")
