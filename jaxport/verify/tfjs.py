"""Run TF.js graph models in their real runtime: `@tensorflow/tfjs` (cpu backend) under Node.

`TfjsRunner` starts `node js/run_model.mjs` once and sends it one JSON request per line
(protocol documented in that file), so a session pays Node's start-up (about a second) once
and can run any number of models. Use it as a context manager, or `shared_runner()` for one
process-wide runner that is closed at interpreter exit.

Inputs are cast to the dtypes TF.js computes in (floats -> float32, integers -> int32,
bool); outputs come back cast to the dtype of the model's signature.
"""

from __future__ import annotations

import atexit
import base64
import collections
import json
import os
import queue
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jaxport.errors import TargetError

JS_DIR = Path(os.environ.get("JAXPORT_JS_DIR", Path(__file__).resolve().parents[2] / "js"))
INSTALL_HINT = "install the TF.js runtime with `scripts/install-js` (runs `npm ci` in js/; needs Node >= 18)"

# model.json signature dtypes -> the numpy dtype callers get back.
_SIGNATURE_DTYPES = {
    "DT_FLOAT": np.float32,
    "DT_DOUBLE": np.float64,
    "DT_HALF": np.float16,
    "DT_INT8": np.int8,
    "DT_INT16": np.int16,
    "DT_INT32": np.int32,
    "DT_INT64": np.int64,
    "DT_UINT8": np.uint8,
    "DT_UINT16": np.uint16,
    "DT_UINT32": np.uint32,
    "DT_UINT64": np.uint64,
    "DT_BOOL": np.bool_,
}
_WIRE_DTYPES = {"float32": np.dtype("<f4"), "int32": np.dtype("<i4"), "bool": np.dtype(np.bool_)}
_INT32 = np.iinfo(np.int32)


class TfjsUnavailable(TargetError):
    """Node or the `js/` packages are missing: TF.js artifacts cannot be verified here."""

    code = "tfjs_runtime_missing"


@dataclass(frozen=True)
class Timing:
    """Latency of `runs` timed runs after warm-up, outputs read back included."""

    runs: int
    median_ms: float
    min_ms: float
    max_ms: float


class TfjsRunner:
    """A persistent Node process running TF.js graph models; thread-safe, one request at a time.

    `run` raises `TargetError` carrying Node's message when loading or running a model fails
    (for example an op the TF.js runtime does not implement); the process stays usable. If Node
    dies or a request exceeds `timeout_s`, the process is restarted on the next request.
    """

    def __init__(self, js_dir: Path = JS_DIR, *, node: str | None = None, timeout_s: float = 600.0) -> None:
        self.js_dir = Path(js_dir)
        self.node = node or os.environ.get("JAXPORT_NODE") or shutil.which("node")
        self.timeout_s = timeout_s
        self._proc: subprocess.Popen[str] | None = None
        self._owner_pid = os.getpid()
        self._replies: queue.Queue[str | None] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=40)
        self._stderr_pump: threading.Thread | None = None
        self._lock = threading.Lock()
        self._next_id = 0
        self.info: dict[str, Any] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start Node and wait until TF.js is ready (no-op when already running)."""
        with self._lock:
            self._ensure_started()

    def close(self) -> None:
        """Stop the Node process (closing stdin lets it finish the current request and exit)."""
        with self._lock:
            self._stop()

    def __enter__(self) -> "TfjsRunner":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ----------------------------------------------------------------------------

    def ping(self) -> dict[str, Any]:
        """Check the process answers; returns the TF.js version and backend."""
        return self._request({"op": "ping"})

    def run(self, model_dir: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph model in `model_dir` (model.json + shards) on named inputs once.

        Returns the signature's outputs by name, cast to the signature's dtypes.
        """
        outputs, _ = self._run(model_dir, inputs, None)
        return outputs

    def benchmark(
        self, model_dir: Path, inputs: dict[str, np.ndarray], *, warmup: int = 2, runs: int = 10
    ) -> tuple[dict[str, np.ndarray], Timing]:
        """Like `run`, then time `runs` runs after `warmup` untimed ones, all inside Node."""
        if runs < 1 or warmup < 0:
            raise ValueError(f"need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
        outputs, timing = self._run(model_dir, inputs, {"warmup": warmup, "runs": runs})
        assert timing is not None
        return outputs, Timing(**timing)

    def _run(
        self, model_dir: Path, inputs: dict[str, np.ndarray], bench: dict[str, int] | None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any] | None]:
        model_dir = Path(model_dir).resolve()
        if not (model_dir / "model.json").is_file():
            raise TargetError(f"no TF.js model at {model_dir} (model.json missing)", stage="verify")
        request: dict[str, Any] = {
            "op": "run",
            "model": str(model_dir),
            "inputs": {name: _encode(name, value) for name, value in inputs.items()},
        }
        if bench:
            request["bench"] = bench
        reply = self._request(request)
        if not reply["ok"]:
            action = "load" if reply["stage"] == "load" else "run"
            raise TargetError(
                f"TF.js could not {action} the model: {reply['error']}",
                "when the message names an op or kernel, the model uses something TF.js 4.22 "
                "(cpu backend) lacks",
                stage="verify",
            )
        outputs = {name: _decode(spec) for name, spec in reply["outputs"].items()}
        return outputs, reply.get("timing")

    def _request(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._ensure_started()
            return self._exchange(request)

    def _exchange(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdin is not None
        self._next_id += 1
        request = {"id": self._next_id, **request}
        try:
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
            line = self._replies.get(timeout=self.timeout_s)
        except queue.Empty:
            self._stop()
            raise TargetError(
                f"TF.js did not answer within {self.timeout_s:.0f} s",
                "the model may be too slow for the cpu backend",
                stage="verify",
            ) from None
        except OSError:
            line = None
        if line is None:
            self._stop()
            if self._stderr_pump is not None:
                self._stderr_pump.join(timeout=2)
            raise TargetError(
                f"the TF.js runner (Node) exited: {self._stderr_tail()}", INSTALL_HINT, stage="verify"
            )
        try:
            reply = json.loads(line)
        except ValueError:
            reply = {}
        if not isinstance(reply, dict) or reply.get("id") != request["id"]:
            self._stop()
            raise TargetError(f"the TF.js runner broke protocol, it wrote: {line[:200]!r}", stage="verify")
        return reply

    # -- process management (callers hold the lock) ------------------------------------------

    def _forget_if_forked(self) -> None:
        if self._owner_pid != os.getpid():
            # Inherited across fork (e.g. a prefork worker): the process is the parent's and the
            # threads reading its pipes did not survive; leave it to the parent.
            self._proc, self._owner_pid = None, os.getpid()

    def _ensure_started(self) -> None:
        self._forget_if_forked()
        if self._proc is not None and self._proc.poll() is None:
            return
        self._stop()
        script = self.js_dir / "run_model.mjs"
        if not self.node:
            raise TfjsUnavailable("node is not installed (or not on PATH)", INSTALL_HINT, stage="verify")
        if not (self.js_dir / "node_modules" / "@tensorflow" / "tfjs").is_dir() or not script.is_file():
            raise TfjsUnavailable(
                f"the TF.js runtime is not installed in {self.js_dir}", INSTALL_HINT, stage="verify"
            )
        self._replies = queue.Queue()
        self._stderr.clear()
        self._proc = subprocess.Popen(
            [self.node, str(script)],
            cwd=self.js_dir,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        threading.Thread(target=_pump, args=(self._proc.stdout, self._replies.put), daemon=True).start()
        # stderr is drained all the time (a full pipe would block Node); its tail explains exits.
        self._stderr_pump = threading.Thread(
            target=_pump, args=(self._proc.stderr, self._stderr.append), daemon=True
        )
        self._stderr_pump.start()
        self.info = self._exchange({"op": "ping"})

    def _stop(self) -> None:
        self._forget_if_forked()
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin:
                proc.stdin.close()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()

    def _stderr_tail(self) -> str:
        lines = [line.strip() for line in list(self._stderr) if line and line.strip()]
        return " | ".join(lines[-8:]) or "no message"


def _pump(stream: Any, sink: Any) -> None:
    """Forward lines from a pipe; None marks end of stream."""
    for line in stream:
        sink(line)
    sink(None)


def _encode(name: str, value: Any) -> dict[str, Any]:
    array = np.asarray(value)
    if array.dtype == np.bool_:
        wire = "bool"
    elif np.issubdtype(array.dtype, np.integer):
        wire = "int32"
        if array.size and (array.min() < _INT32.min or array.max() > _INT32.max):
            raise TargetError(f"input {name} has values outside int32, which TF.js computes integers in")
    elif np.issubdtype(array.dtype, np.floating) or array.dtype.name == "bfloat16":
        wire = "float32"
    else:
        raise TargetError(f"input {name} has dtype {array.dtype}, which TF.js cannot take")
    data = np.ascontiguousarray(array, dtype=_WIRE_DTYPES[wire])
    encoded = base64.b64encode(data.tobytes()).decode("ascii")
    return {"dtype": wire, "shape": list(array.shape), "data": encoded}


def _decode(spec: dict[str, Any]) -> np.ndarray:
    array = np.frombuffer(base64.b64decode(spec["data"]), dtype=_WIRE_DTYPES[spec["dtype"]])
    array = array.reshape(spec["shape"])
    target = _SIGNATURE_DTYPES.get(spec.get("signature_dtype", ""))
    return array.astype(target) if target is not None else array.copy()


_shared: TfjsRunner | None = None
_shared_lock = threading.Lock()


def shared_runner() -> TfjsRunner:
    """The process-wide runner, started on first use and closed at interpreter exit."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = TfjsRunner()
            atexit.register(_shared.close)
        _shared.start()
        return _shared
