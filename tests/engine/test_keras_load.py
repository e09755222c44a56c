"""Models load without running the initializers their saved weights overwrite
(`keras_models.weights_from_file`), and come out as a plain `keras.saving.load_model` makes
them: every saved weight equal, every unsaved variable (seed generator states) initialized by
its own initializer, not left as the zero placeholder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from jaxport.keras_models import load_keras_model
from tests import zoo

ROOT = Path(__file__).resolve().parents[2]
MODELS = {
    "mobilenet_v2": lambda: zoo.with_real_bn(zoo.mobilenet_v2()),
    "bert_backbone": zoo.bert_backbone,
    "lstm_gru": zoo.lstm_model,
    "multi_io": zoo.multi_io_model,
}


def _values(model: keras.Model) -> list[np.ndarray]:
    return [np.asarray(v.value) for v in model.variables]


@pytest.mark.parametrize("name", list(MODELS))
def test_load_matches_a_plain_keras_load(name: str, tmp_path: Path) -> None:
    path = zoo.save(MODELS[name](), tmp_path / f"{name}.keras")
    ours = _values(load_keras_model(path, trusted=False).model)
    plain, again = (_values(keras.saving.load_model(path, compile=False)) for _ in range(2))
    assert len(ours) == len(plain)
    for mine, want, other in zip(ours, plain, again):
        if np.array_equal(want, other):  # a saved weight (or a deterministic initial value)
            np.testing.assert_array_equal(mine, want)
        else:  # drawn anew on every load (dropout seed states): drawn, not left as zeros
            assert mine.shape == want.shape and np.any(mine != 0)


# Loads a model in a fresh process (nothing compiled yet) and prints how many XLA compiles it took.
COUNT_COMPILES = r"""
import sys
import jax

compiles = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, secs, **_: compiles.append(event)
    if event == "/jax/core/compile/backend_compile_duration" else None)
import keras
from jaxport.keras_models import load_keras_model

if sys.argv[2] == "ours":
    load_keras_model(sys.argv[1], trusted=False)
else:
    keras.saving.load_model(sys.argv[1], compile=False)
print(len(compiles))
"""


def test_loading_compiles_no_initializers(tmp_path: Path) -> None:
    path = zoo.save(zoo.mobilenet_v2(), tmp_path / "mobilenet.keras")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": "jax"}
    counts = {}
    for how in ("ours", "plain"):
        proc = subprocess.run([sys.executable, "-c", COUNT_COMPILES, str(path), how], env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        counts[how] = int(proc.stdout.split()[-1])
    assert counts["plain"] >= 20 and counts["ours"] <= 2, counts


# Loads each .keras file given in a fresh process; prints whether keras_hub was imported after each.
LOAD_AND_SAY_HUB = r"""
import sys
from jaxport.keras_models import load_keras_model

for path in sys.argv[1:]:
    load_keras_model(path, trusted=False)
    print("keras_hub" in sys.modules)
"""


def test_keras_hub_is_imported_only_for_a_model_that_names_it(tmp_path: Path) -> None:
    """keras_hub costs ~2 s to import: a plain Keras model loads without it, a keras_hub
    backbone after it (its layers must be registered to deserialize)."""
    plain = zoo.save(zoo.multi_io_model(), tmp_path / "plain.keras")
    hub = zoo.save(zoo.bert_backbone(), tmp_path / "bert.keras")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": "jax"}
    proc = subprocess.run([sys.executable, "-c", LOAD_AND_SAY_HUB, str(plain), str(hub)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-2:] == ["False", "True"]
