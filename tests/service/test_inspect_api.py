"""`POST /v1/inspect` through the real stack (a warm Celery worker inspects): the same answer
as the local `inspect`, bad input as 4xx, and the job's upload checks."""

from __future__ import annotations

import re

import pytest

from jaxport.inspection import inspect_file
from service.client import Client, ClientError
from svc_stack import KEYS
import zoo


@pytest.fixture(scope="module")
def client(api_url) -> Client:
    return Client(api_url, KEYS["acme"], timeout=300)


@pytest.fixture(scope="module")
def bert(model_dir):
    return zoo.save(zoo.bert_backbone(), model_dir / "bert.keras")


@pytest.fixture(scope="module")
def blocked(model_dir):  # a model TF.js cannot run: an LU decomposition (`lu`)
    return zoo.save(zoo.det_head(), model_dir / "det.keras")


def _comparable(value, key: str = ""):
    """Without the timing; locations without their installation prefix (the worker's
    interpreter may see site-packages through another path of the same venv), layer paths
    without Keras's `_<n>` suffixes (its name counter differs between processes)."""
    if isinstance(value, dict):
        return {k: _comparable(v, k) for k, v in value.items() if k != "seconds"}
    if key == "at":
        return value.rsplit("site-packages/", 1)[-1]
    if key == "layer":
        return re.sub(r"_\d+(?=/|$)", "", value)
    return value


def test_keras_hub_backbone_as_the_local_inspect(client, bert):
    remote = client.inspect(bert)
    assert remote["archive"] == "bert.keras"
    assert _comparable(remote) == _comparable(inspect_file(bert, trusted=False))
    assert remote["verdict"]["tfjs"]["message"] == "will lower"


def test_unsupported_primitive_names_the_blocker(client, blocked):
    report = client.inspect(blocked, "serving_default")
    tfjs = report["verdict"]["tfjs"]
    assert not tfjs["ok"] and tfjs["blocking"]["primitive"] == "lu"
    assert report["verdict"]["tflite"]["path"] == "orbax"


def test_bad_input_is_4xx(client, acme, blocked, tmp_path):
    with pytest.raises(ClientError) as info:
        client.inspect(blocked, "nope")
    assert (info.value.status, info.value.code) == (400, "unknown_function")
    assert info.value.hint == "functions: serving_default"

    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(ClientError) as info:
        client.inspect(junk)
    assert (info.value.status, info.value.code) == (422, "bad_archive")

    with open(blocked, "rb") as fh:
        r = acme.post("/v1/inspect", files={"file": ("det.keras", fh)}, data={"targets": "x"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_upload"


def test_needs_a_key(api_url, blocked):
    with pytest.raises(ClientError) as info:
        Client(api_url).inspect(blocked)
    assert info.value.status == 401
