"""A persistent Node process speaking the line protocol of `js/lines.mjs`, and its array wire format.

`NodeProcess` starts `node js/<script>` once and sends it one JSON request per line; replies
come back one per line, in order, with the request's `id`. The TF.js runner
(`jaxport.verify.tfjs`) and the LiteRT.js runner (`jaxport.targets.tflite`) are subclasses.

Arrays travel as `{"dtype", "shape", "data": base64 little-endian}` with wire dtypes float32,
int32 and bool (1 byte): `encode_array` casts floats to float32 and integers to int32 (the
dtypes both JS runtimes compute in), `decode_array` reads them back. Outputs may also be
complex64 (interleaved float32 real and imaginary parts).
"""

from __future__ import annotations

import base64
import collections
import json
import os
import queue
import shutil
import subprocess
import threading
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from jaxport.errors import TargetError

JS_DIR = Path(os.environ.get("JAXPORT_JS_DIR", Path(__file__).resolve().parents[2] / "js"))
INSTALL_HINT = "install the JS runtimes with `scripts/install-js` (runs `npm ci` in js/; needs Node >= 18)"

WIRE_DTYPES = {"float32": np.dtype("<f4"), "int32": np.dtype("<i4"), "bool": np.dtype(np.bool_),
               "complex64": np.dtype("<c8")}
_INT32 = np.iinfo(np.int32)


@dataclass(frozen=True)
class Timing:
    """Latency of `runs` timed runs after warm-up, outputs read back included."""

    runs: int
    median_ms: float
    min_ms: float
    max_ms: float


class NodeProcess:
    """One Node process running `js_dir/script`; thread-safe, one request at a time.

    Subclasses set `script`, `label` (the runtime's name in messages), `needs` (paths under
    `node_modules` that must exist) and `unavailable` (the `TargetError` subclass raised when
    Node or those packages are missing). `spawn_guard()` is entered around starting the
    process. If Node dies or a request exceeds `timeout_s`, the process is stopped and started
    again on the next request.
    """

    script = ""
    label = ""
    needs: tuple[str, ...] = ()
    unavailable: type[TargetError] = TargetError
    install_hint = INSTALL_HINT
    timeout_hint = ""

    def __init__(self, js_dir: Path = JS_DIR, *, node: str | None = None, timeout_s: float = 600.0,
                 env: dict[str, str] | None = None) -> None:
        self.js_dir = Path(js_dir)
        self.node = node or os.environ.get("JAXPORT_NODE") or shutil.which("node")
        self.timeout_s = timeout_s
        self.env = env
        self._proc: subprocess.Popen[str] | None = None
        self._owner_pid = os.getpid()
        self._replies: queue.Queue[str | None] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=40)
        self._stderr_pump: threading.Thread | None = None
        self._lock = threading.Lock()
        self._next_id = 0
        self.info: dict[str, Any] = {}  # the reply to the `ping` sent at start

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start Node and wait for its first `ping` reply (no-op when already running)."""
        with self._lock:
            self._ensure_started()

    def close(self) -> None:
        """Stop the process (closing stdin lets it finish the current request and exit)."""
        with self._lock:
            self._stop()

    def __enter__(self):  # noqa: ANN204 - the subclass
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ping(self) -> dict[str, Any]:
        """Check the process answers; returns what the script reports about its runtime."""
        return self.request({"op": "ping"})

    def spawn_guard(self) -> AbstractContextManager[object]:
        """A context entered while the process is spawned; none by default."""
        return nullcontext()

    # -- requests ----------------------------------------------------------------------------

    def request(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one request (an `op` and its fields) and return the reply, `ok` true or false.

        Raises `TargetError` when the process does not answer within `timeout_s`, exits, or
        breaks the protocol.
        """
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
            raise TargetError(f"{self.label} did not answer within {self.timeout_s:.0f} s",
                              self.timeout_hint, stage="verify") from None
        except OSError:
            line = None
        if line is None:
            self._stop()
            if self._stderr_pump is not None:
                self._stderr_pump.join(timeout=2)
            raise TargetError(f"the {self.label} runner (Node) exited: {self._stderr_tail()}",
                              self.install_hint, stage="verify")
        try:
            reply = json.loads(line)
        except ValueError:
            reply = {}
        if not isinstance(reply, dict) or reply.get("id") != request["id"]:
            self._stop()
            raise TargetError(f"the {self.label} runner broke protocol, it wrote: {line[:200]!r}",
                              stage="verify")
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
        script = self.js_dir / self.script
        if not self.node:
            raise self.unavailable("node is not installed (or not on PATH)", self.install_hint,
                                   stage="verify")
        missing = [n for n in self.needs if not (self.js_dir / "node_modules" / n).is_dir()]
        if missing or not script.is_file():
            raise self.unavailable(
                f"the {self.label} runtime is not installed in {self.js_dir}"
                + (f" (missing {', '.join(missing)})" if missing else ""),
                self.install_hint, stage="verify")
        self._replies = queue.Queue()
        self._stderr.clear()
        with self.spawn_guard():
            self._proc = subprocess.Popen(
                [self.node, str(script)], cwd=self.js_dir, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
                bufsize=1, env=None if self.env is None else {**os.environ, **self.env})
        threading.Thread(target=_pump, args=(self._proc.stdout, self._replies.put), daemon=True).start()
        # stderr is drained all the time (a full pipe would block Node); its tail explains exits.
        self._stderr_pump = threading.Thread(target=_pump, args=(self._proc.stderr, self._stderr.append),
                                             daemon=True)
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
            proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()

    def _stderr_tail(self) -> str:
        lines = [line.strip() for line in list(self._stderr) if line and line.strip()]
        return " | ".join(lines[-8:]) or "no message"


def _pump(stream: Any, sink: Callable[[str | None], None]) -> None:
    """Forward lines from a pipe; None marks end of stream."""
    for line in stream:
        sink(line)
    sink(None)


def encode_array(name: str, value: Any, runtime: str) -> dict[str, Any]:
    """`value` on the wire; raises `TargetError` for dtypes or values `runtime` cannot take."""
    array = np.asarray(value)
    if array.dtype == np.bool_:
        wire = "bool"
    elif np.issubdtype(array.dtype, np.integer):
        wire = "int32"
        if array.size and (array.min() < _INT32.min or array.max() > _INT32.max):
            raise TargetError(f"input {name} has values outside int32, which {runtime} computes integers in")
    elif np.issubdtype(array.dtype, np.floating) or array.dtype.name == "bfloat16":
        wire = "float32"
    else:
        raise TargetError(f"input {name} has dtype {array.dtype}, which {runtime} cannot take")
    data = np.ascontiguousarray(array, dtype=WIRE_DTYPES[wire])
    return {"dtype": wire, "shape": list(array.shape), "data": base64.b64encode(data.tobytes()).decode("ascii")}


def decode_array(spec: dict[str, Any], dtypes: dict[str, np.dtype] = WIRE_DTYPES) -> np.ndarray:
    """The array of a wire spec; `dtypes` maps the spec's `dtype` to numpy's."""
    array = np.frombuffer(base64.b64decode(spec["data"]), dtype=dtypes[spec["dtype"]])
    return array.reshape(spec["shape"]).copy()
