"""docker-compose.yml and the Dockerfile cannot be run here (no Docker): check that the compose
file parses, has the services and properties the deployment needs, and that every command,
module, file and JAXPORT_* variable they use exists in the code."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from jaxport.cli import build_parser
from service import commands

ROOT = Path(__file__).resolve().parents[2]
CODE_DIRS = ("jaxport", "service", "workers")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _code_text() -> str:
    return "\n".join(p.read_text() for d in CODE_DIRS for p in (ROOT / d).rglob("*.py"))


def test_compose_has_the_services(compose):
    services = compose["services"]
    assert {"api", "worker", "redis", "minio", "minio-bucket"} <= set(services)
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker  # --scale worker=N works
    assert "--appendonly" in services["redis"]["command"]
    assert "redis-data:/data" in services["redis"]["volumes"]
    assert "mc mb" in " ".join(services["minio-bucket"]["entrypoint"])
    for name in ("api", "worker", "redis", "minio"):
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
    assert services["api"]["depends_on"]["minio-bucket"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("service, run", [("api", commands.cmd_serve), ("worker", commands.cmd_worker)])
def test_compose_commands_exist(compose, service, run):
    command = compose["services"][service]["command"]
    assert command[0] == "jaxport"
    assert build_parser().parse_args(command[1:]).run is run


def test_compose_health_checks_use_real_code(compose):
    worker_check = compose["services"]["worker"]["healthcheck"]["test"]
    assert worker_check[1:3] == ["python", "-m"] and importlib.util.find_spec(worker_check[3])
    api_check = " ".join(compose["services"]["api"]["healthcheck"]["test"])
    path = re.search(r"127\.0\.0\.1:8000(/\w+)", api_check).group(1)
    from service.app import create_app
    from service.config import Settings

    app = create_app(Settings(storage_url="file:///tmp/jaxport-deploy-test"))
    assert path in app.openapi()["paths"]


def test_every_jaxport_variable_is_read_by_the_code(compose):
    code = _code_text()
    env = compose["x-jaxport-env"]
    names = [k for k in env if k.startswith("JAXPORT_")]
    assert {"JAXPORT_REDIS_URL", "JAXPORT_STORAGE_URL", "JAXPORT_S3_ENDPOINT_URL",
            "JAXPORT_API_KEYS"} <= set(names)
    for name in names:
        assert f'"{name}"' in code, f"{name} is set in docker-compose.yml but read nowhere"
    assert env["JAXPORT_ALLOW_TRUSTED_CODE"] == "0"


def test_dockerfile_copies_what_exists_and_runs_a_real_command():
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    for line in lines:
        if line.startswith("COPY") and "--from" not in line:
            *sources, _ = shlex.split(line)[1:]
            for src in sources:
                assert (ROOT / src).exists(), f"Dockerfile copies missing {src}"
    assert any(line.startswith("FROM python:3.11") for line in lines)
    assert any("setup_20.x" in line for line in lines) and any("npm ci" in line for line in lines)
    cmd = next(line for line in lines if line.startswith("CMD"))
    argv = json.loads(cmd[len("CMD"):])  # the exec (JSON array) form
    assert argv[0] == "jaxport" and build_parser().parse_args(argv[1:]).run is commands.cmd_serve
