"""JS runtimes kept across conversions (jaxport.verify.kept): real Node, real headless Chromium
and LiteRT.js, real TF.js; sessions opened from forked processes as a worker's conversions do.

What must hold: each session runs the model it is handed (never one an earlier session
loaded, even at the same path with the same mtime), a client killed mid-request costs the
next session nothing, a runner that is gone is replaced by one of the conversion's own, and
a conversion's report says the browser was kept.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import jaxport
from jaxport.targets.tflite import LitertjsRunner
from jaxport.verify.kept import KeptRuntimes
from jaxport.verify.node import encode_array
from jaxport.verify.runtimes import TfliteRunner
from jaxport.verify.tfjs import TfjsRunner, shared_runner


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeptRuntimes]:
    runtimes = KeptRuntimes(tmp_path_factory.mktemp("kept"))
    assert runtimes.start() == {}  # Node and Chromium are installed here
    yield runtimes
    runtimes.close()
    assert "JAXPORT_LITERTJS_KEPT" not in os.environ and "JAXPORT_TFJS_KEPT" not in os.environ


def _scaled(params: dict, x: np.ndarray) -> dict:
    return {"y": x * params["s"] + 1.0}


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """Two .tflite files of the same size computing different functions (x*2+1, x*-3+1)."""
    files = []
    for s in (2.0, -3.0):
        out = tmp_path_factory.mktemp("m")
        jaxport.export(_scaled, {"s": np.float32(s)}, inputs={"x": "f32[b,4]"}, out_dir=out,
                       targets=["tflite"], litertjs=False)
        files.append((out / "model.tflite").read_bytes())
    assert len(files[0]) == len(files[1]) and files[0] != files[1]
    return files[0], files[1]


def _in_child(fn) -> int:
    """Run `fn()` in a forked process (as a worker's conversion); its exit code (0: passed)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            fn()
            code = 0
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


X = np.arange(8, dtype=np.float32).reshape(2, 4)


def test_each_session_runs_the_model_it_is_handed(kept: KeptRuntimes, two_models: tuple[bytes, bytes],
                                                  tmp_path: Path) -> None:
    """The second session overwrites the first's file in place, same size, same mtime: a
    runner that kept the first session's compiled model would answer x*2+1."""
    path = tmp_path / "model.tflite"
    seen = []
    for data, s in zip(two_models, (2.0, -3.0)):
        path.write_bytes(data)
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))

        def check(s: float = s) -> None:
            runner = LitertjsRunner(tmp_path / f"copies-{s}")
            runner.start()
            assert runner.kept
            got = runner.run(path, "serving_default", {"x": X}, {"y": (2, 4)})["y"]
            np.testing.assert_allclose(got, X * s + 1.0, rtol=1e-6)  # numpy, not the engine
            runner.close()

        assert _in_child(check) == 0
        seen.append(TfliteRunner(path).run("serving_default", {"x": X})["y"])
    np.testing.assert_allclose(seen[1], X * -3.0 + 1.0, rtol=1e-6)
    assert kept.runners["litertjs"].alive()


def test_a_client_killed_mid_request_costs_the_next_session_nothing(
        kept: KeptRuntimes, two_models: tuple[bytes, bytes], tmp_path: Path) -> None:
    path = tmp_path / "model.tflite"
    path.write_bytes(two_models[0])
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - a client that sends a request and dies waiting
        runner = LitertjsRunner(tmp_path / "dying")
        runner.start()
        request = {"id": 99, "op": "run", "model": str(path), "signature": "serving_default",
                   "inputs": {"x": encode_array("x", X, "LiteRT.js")}, "bench": {"warmup": 0, "runs": 20000}}
        runner._proc.stdin.write(json.dumps(request) + "\n")  # seconds of runs in the page
        runner._proc.stdin.flush()
        os.write(write, b"sent")
        signal.pause()
    os.close(write)
    assert os.read(read, 4) == b"sent"
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)

    def check() -> None:
        runner = LitertjsRunner(tmp_path / "next")
        runner.start()
        assert runner.kept
        got = runner.run(path, "serving_default", {"x": X}, {"y": (2, 4)})["y"]
        np.testing.assert_allclose(got, X * 2.0 + 1.0, rtol=1e-6)

    assert _in_child(check) == 0


def test_the_tfjs_runner_is_kept_too(kept: KeptRuntimes, tmp_path: Path) -> None:
    """Sessions run one at a time: this process's own TF.js session (its process-wide runner,
    which verified the export) ends before the child's can begin."""
    shared_runner().close()  # started by an earlier test of the session, before the kept one
    jaxport.export(_scaled, {"s": np.float32(0.5)}, inputs={"x": "f32[b,4]"}, out_dir=tmp_path,
                   targets=["tfjs"])
    assert shared_runner().kept
    shared_runner().close()

    def check() -> None:
        runner = TfjsRunner()
        runner.start()
        assert runner.kept
        np.testing.assert_allclose(runner.run(tmp_path / "tfjs", {"x": X})["y"], X * 0.5 + 1.0, rtol=1e-6)

    assert _in_child(check) == 0


def test_a_conversion_reports_the_kept_browser(kept: KeptRuntimes, tmp_path: Path) -> None:
    report = jaxport.export(_scaled, {"s": np.float32(2.0)}, inputs={"x": "f32[b,4]"},
                            out_dir=tmp_path / "ok", targets=["tflite"], litertjs=True)
    litertjs = report["targets"]["tflite"]["runtimes"]["litertjs"]
    assert litertjs["status"] == "ok" and litertjs["browser"] == "kept"
    assert litertjs["browser_start_seconds"] == 0.0


def test_a_runner_that_is_gone_is_replaced_by_the_conversions_own(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    runtimes = KeptRuntimes(tmp_path / "kept")
    runtimes.start()
    socket_path = runtimes.runners["litertjs"].socket_path
    runtimes.runners["litertjs"].proc.kill()  # died: the socket file stays, nobody answers
    runtimes.runners["litertjs"].proc.wait()
    try:
        runner = LitertjsRunner(tmp_path / "own")
        runner.start()
        assert not runner.kept and runner.info["ok"]
        runner.close()
        assert runtimes.start() == {}  # started again
        assert runtimes.runners["litertjs"].alive() and socket_path.exists()
    finally:
        runtimes.close()


def test_the_kept_runtimes_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from service.config import ConfigError, Settings

    monkeypatch.delenv("JAXPORT_KEPT_RUNTIMES", raising=False)
    assert Settings.from_env().kept_runtimes == ("tfjs", "litertjs")
    monkeypatch.setenv("JAXPORT_KEPT_RUNTIMES", " tfjs ")
    assert Settings.from_env().kept_runtimes == ("tfjs",)
    monkeypatch.setenv("JAXPORT_KEPT_RUNTIMES", "none")
    assert Settings.from_env().kept_runtimes == ()
    monkeypatch.setenv("JAXPORT_KEPT_RUNTIMES", "tfjs,chrome")
    with pytest.raises(ConfigError, match="names chrome; expected a comma list of tfjs, litertjs"):
        Settings.from_env()
