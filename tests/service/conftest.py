"""A real jaxport service for the end-to-end tests: redis-server, two Celery worker processes,
the API under uvicorn, all as subprocesses on free ports, started once per session.

Workers import TensorFlow and JAX at start (~15 s, more on a busy machine), so tests share
them; each test makes its submissions distinct with a unique `name` option where it needs a
fresh conversion rather than a cache hit.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zoo  # noqa: E402  (shared real test models)
from svc_stack import Stack, base_env, client_for, free_port, start_redis  # noqa: E402


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory, log_dir) -> Iterator[str]:
    port = free_port()
    proc = start_redis(port, log_dir / "redis.log")
    url = f"redis://127.0.0.1:{port}"
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def storage_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("storage")


@pytest.fixture(scope="session")
def stack(redis_url, storage_dir, log_dir) -> Iterator[Stack]:
    """Two workers and one API on file storage (workers start first: they are slow)."""
    s = Stack(base_env(JAXPORT_REDIS_URL=f"{redis_url}/0",
                       JAXPORT_STORAGE_URL=f"file://{storage_dir}",
                       JAXPORT_JOB_TIMEOUT_S="300"), log_dir)
    s.start_workers(2)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="session")
def api_url(stack) -> str:
    """The API; the workers may still be warming up (jobs queue meanwhile)."""
    return stack.start_api("api")


@pytest.fixture(scope="session")
def acme(api_url) -> Iterator[httpx.Client]:
    with client_for(api_url, "acme") as c:
        yield c


@pytest.fixture(scope="session")
def globex(api_url) -> Iterator[httpx.Client]:
    with client_for(api_url, "globex") as c:
        yield c


# --- real models ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_keras(model_dir) -> Path:
    """A bare .keras file: an MLP, 8 features -> 4 classes."""
    return zoo.save(_mlp(8, 4, "tiny"), model_dir / "tiny.keras")


@pytest.fixture(scope="session")
def deep_keras(model_dir) -> Path:
    """A bare .keras file that takes many seconds to convert on any machine (100 Dense layers:
    hundreds of ops to export, lower and check), for tests that need a job to run long."""
    x = zoo.keras.Input((8,), name="features")
    h = x
    for _ in range(100):
        h = zoo.keras.layers.Dense(16, activation="tanh")(h)
    return zoo.save(zoo.keras.Model(x, zoo.keras.layers.Dense(4)(h), name="deep"),
                    model_dir / "deep.keras")


def _mlp(features: int, classes: int, name: str):
    x = zoo.keras.Input((features,), name="features")
    h = zoo.keras.layers.Dense(16, activation="relu")(x)
    return zoo.keras.Model(x, zoo.keras.layers.Dense(classes)(h), name=name)


@pytest.fixture(scope="session")
def composite_zip(model_dir) -> Path:
    """The seed blog's composite: a CNN vmapped over a set of 4 images, mean-pooled, a head."""
    embed = zoo.save(zoo.small_cnn(16, 8, name="embed"), model_dir / "embed.keras")
    head = zoo.save(_mlp(8, 4, "head"), model_dir / "head.keras")
    return zoo.make_zip(model_dir / "set.zip", {"jaxport.toml": zoo.SET_MANIFEST.encode(),
                                                "embed.keras": embed, "head.keras": head})


