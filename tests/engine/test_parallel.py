"""Two conversion processes (jaxport.parallel): the split, the fork guard, the forked child's
answers, and a CLI conversion whose SavedModel came from the forked process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from jaxport.errors import ModelLoadError
from jaxport.parallel import Forked, SideProcessFailed, default_processes, fork_is_safe, split_targets
from tests import zoo

ROOT = Path(__file__).resolve().parents[2]


def test_split_targets_keeps_the_lowered_targets_together() -> None:
    assert split_targets(["savedmodel", "tflite", "tfjs"], 2) == (["savedmodel"], ["tflite", "tfjs"])
    assert split_targets(["savedmodel", "tflite", "tfjs", "onnx"], 2) == (
        ["savedmodel", "onnx"], ["tflite", "tfjs"])
    assert split_targets(["savedmodel", "tflite"], 1) == ([], ["savedmodel", "tflite"])
    assert split_targets(["tflite", "tfjs"], 2) == ([], ["tflite", "tfjs"])  # nothing to split off
    assert split_targets(["savedmodel"], 2) == ([], ["savedmodel"])


def test_processes_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JAXPORT_CONVERSION_PROCESSES", "1")
    assert default_processes() == 1
    monkeypatch.setenv("JAXPORT_CONVERSION_PROCESSES", "3")
    with pytest.raises(Exception, match="JAXPORT_CONVERSION_PROCESSES='3' is not 1 or 2"):
        default_processes()


def test_jobs_side_by_side_share_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """On 2 cores one job at a time gets two processes; two jobs at once get one each."""
    monkeypatch.delenv("JAXPORT_CONVERSION_PROCESSES", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert default_processes(jobs_at_once=1) == 2
    assert default_processes(jobs_at_once=2) == 1
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert default_processes() == 1


def test_no_fork_once_jax_has_run() -> None:
    """This test process has started JAX's backend (the suite runs models in-process): forking
    it would copy locks held by threads the child does not have."""
    jnp.ones(2).block_until_ready()
    assert not fork_is_safe()


def test_forked_child_answers_raises_and_dies_by_name() -> None:
    messages: list[dict] = []

    def answers(send, receive) -> dict:
        send({"stage": "load"})
        told = receive()
        send({"stage": "savedmodel", "told": told})
        return {"answer": 42 + told["n"]}

    child = Forked(answers, on_message=messages.append)
    child.tell({"n": 1})
    assert child.result() == {"answer": 43}
    assert messages == [{"stage": "load"}, {"stage": "savedmodel", "told": {"n": 1}}]

    def waits_in_vain(send, receive) -> dict:
        return receive()  # this process tells nothing and waits for the answer

    with pytest.raises(SideProcessFailed, match="stopped talking to it"):
        Forked(waits_in_vain).result()

    def bad_model(send, receive) -> dict:
        raise ModelLoadError("model.keras is not a Keras file", "save it with model.save")

    with pytest.raises(SideProcessFailed, match="model.keras is not a Keras file") as raised:
        Forked(bad_model).result()
    assert raised.value.code == ModelLoadError.code and raised.value.hint == "save it with model.save"
    with pytest.raises(SideProcessFailed, match=r"died \(exit code 3\)"):
        Forked(lambda send, receive: os._exit(3)).result()


def test_cli_converts_in_two_processes(tmp_path: Path) -> None:
    """A fresh CLI process forks: the SavedModel is built and verified in the second process,
    TFLite in the first; both artifacts land in -o and compute what Keras computes."""
    import keras

    model = zoo.dense_head()
    path = zoo.save(model, tmp_path / "head.keras")
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "jaxport.cli", "convert", str(path), "-o", str(out),
                             "--targets", "savedmodel,tflite", "--no-litertjs"],
                            capture_output=True, text=True, timeout=600, cwd=ROOT,
                            env={**os.environ, "JAXPORT_CONVERSION_PROCESSES": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["processes"] == 2
    assert list(report["targets"])[:2] == ["savedmodel", "tflite"]
    assert {"savedmodel.build", "savedmodel.verify", "tflite.build", "tflite.verify"} <= set(report["timings"])
    assert not (out / "side-out").exists()

    x = np.random.default_rng(1).normal(size=(3, 8)).astype("float32")
    want = np.asarray(model(x))
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    serving = tf.saved_model.load(str(out / report["targets"]["savedmodel"]["path"])).signatures["serving_default"]
    (got_sm,) = serving(**{model.inputs[0].name: tf.constant(x)}).values()
    runner = Interpreter(model_path=str(out / "model.tflite")).get_signature_runner("serving_default")
    (got_tflite,) = runner(**{next(iter(runner.get_input_details())): x}).values()
    np.testing.assert_allclose(got_sm.numpy(), want, atol=1e-5)
    np.testing.assert_allclose(got_tflite, want, atol=1e-5)
