"""A persistent Node process speaking the line protocol of `js/lines.mjs`, and its array wire format.

`NodeProcess` starts `node js/<script>` once and sends it one JSON request per line; replies
come back one per line, in order, with the request's `id`. The TF.js runner
(`jaxport.verify.tfjs`) and the LiteRT.js runner (`jaxport.targets.tflite`) are subclasses.

A long-lived process (a worker) can keep a runner across conversions: `start_kept()` starts
the script serving sessions on a Unix socket (`js/lines.mjs --listen`) and names the socket in
the subclass's `kept_env`; a `NodeProcess` made where that variable names a live socket opens a
session there instead of starting Node (and a browser) of its own, and starts its own when the
kept runner does not answer.

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
import socket
import subprocess
import threading
import time
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
KEPT_PING_TIMEOUT_S = 20.0
"""How long a session waits for a kept runner's first answer (it may still be finishing a
request of a conversion that was killed) before starting a runner of its own."""


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
    kept_env = ""  # the variable naming a kept runner's socket (`start_kept`)

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
        self.kept = False  # True while this is a session of a kept runner

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

    def _exchange(self, request: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdin is not None
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        self._next_id += 1
        request = {"id": self._next_id, **request}
        try:
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
            line = self._replies.get(timeout=timeout_s)
        except queue.Empty:
            self._stop()
            raise TargetError(f"{self.label} did not answer within {timeout_s:.0f} s",
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
        kept = os.environ.get(self.kept_env) if self.kept_env else None
        if kept and self._open_session(Path(kept)):
            return
        self._check_installed()
        self._replies = queue.Queue()
        self._stderr.clear()
        with self.spawn_guard():
            self._proc = subprocess.Popen(
                [self.node, str(self.js_dir / self.script)], cwd=self.js_dir, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
                bufsize=1, env=self._env())
        threading.Thread(target=_pump, args=(self._proc.stdout, self._replies.put), daemon=True).start()
        # stderr is drained all the time (a full pipe would block Node); its tail explains exits.
        self._stderr_pump = threading.Thread(target=_pump, args=(self._proc.stderr, self._stderr.append),
                                             daemon=True)
        self._stderr_pump.start()
        self.info = self._exchange({"op": "ping"})

    def _env(self) -> dict[str, str] | None:
        return None if self.env is None else {**os.environ, **self.env}

    def _check_installed(self) -> None:
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

    def _open_session(self, path: Path) -> bool:
        """Open a session of the kept runner at `path`; False (nothing open) when it does not
        answer a ping within `KEPT_PING_TIMEOUT_S`."""
        try:
            session = _Session(path)
        except OSError:
            return False
        self._replies = queue.Queue()
        self._stderr.clear()
        self._proc = session  # type: ignore[assignment] - the part of Popen used here
        self._stderr_pump = None  # the runner's stderr goes to its log
        threading.Thread(target=_pump, args=(session.stdout, self._replies.put), daemon=True).start()
        try:
            self.info = self._exchange({"op": "ping"}, timeout_s=KEPT_PING_TIMEOUT_S)
        except TargetError:
            self._stop()
            return False
        self.kept = True
        return True

    def start_kept(self, socket_path: Path, log_path: Path) -> "KeptRunner":
        """Start this runner's script serving sessions on the Unix socket `socket_path` (its
        stderr appended to `log_path`); `KeptRunner.ready()` waits until it answers. Leaves no
        thread running, so the calling process may fork after it. The caller sets `kept_env`
        to the socket for the processes that should use it. Raises `unavailable` when the
        runtime is not installed.
        """
        self._check_installed()
        socket_path = Path(socket_path)
        socket_path.unlink(missing_ok=True)
        with open(log_path, "ab") as log, self.spawn_guard():
            proc = subprocess.Popen([self.node, str(self.js_dir / self.script), "--listen", str(socket_path)],
                                    cwd=self.js_dir, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=log, env=self._env())
        return KeptRunner(self, proc, socket_path, Path(log_path))

    def _stop(self) -> None:
        self._forget_if_forked()
        proc, self._proc, self.kept = self._proc, None, False
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


class KeptRunner:
    """A runner serving sessions on `socket_path` (`NodeProcess.start_kept`); `info` is the
    reply to the ping `ready()` sent."""

    def __init__(self, runner: NodeProcess, proc: subprocess.Popen, socket_path: Path,
                 log_path: Path) -> None:
        self.runner, self.proc, self.socket_path, self.log_path = runner, proc, socket_path, log_path
        self.info: dict[str, Any] = {}

    def ready(self, timeout_s: float = 120.0) -> None:
        """Wait until it answers a ping (no thread); on failure stop it and raise the runner's
        `unavailable` error."""
        runner = self.runner
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.info = _ping_once(self.socket_path, max(0.1, deadline - time.monotonic()))
                break
            except OSError as exc:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise runner.unavailable(f"the kept {runner.label} runner did not start ({exc}); "
                                             f"see {self.log_path}", runner.install_hint,
                                             stage="verify") from None
                time.sleep(0.1)
        if not self.info.get("ok"):
            self.close()
            raise runner.unavailable(f"the kept {runner.label} runner cannot run: "
                                     f"{self.info.get('error', 'no reason given')}", runner.install_hint,
                                     stage="verify")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        """Stop it (closing stdin ends it; killed after 10 s) and remove the socket."""
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.terminate()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self.socket_path.unlink(missing_ok=True)


class _Session:
    """A connection to a kept runner, shaped like the part of `Popen` `NodeProcess` uses
    (`stdin`, `stdout`, `poll`, `wait`, `kill`); closing it ends the session, not the runner."""

    stderr = None

    def __init__(self, path: Path) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.settimeout(5.0)
            self._sock.connect(str(path))
            self._sock.settimeout(None)
        except OSError:
            self._sock.close()
            raise
        self.stdin = self._sock.makefile("w", encoding="utf-8", newline="\n")
        self.stdout = self._sock.makefile("r", encoding="utf-8")
        self._closed = False

    def poll(self) -> int | None:
        """0 once closed here or by the runner (nothing left to read and the peer gone)."""
        if not self._closed:
            try:
                if self._sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                    self._closed = True
            except BlockingIOError:
                pass  # open, nothing to read
            except OSError:
                self._closed = True
        return 0 if self._closed else None

    def wait(self, timeout: float | None = None) -> int:
        if not self._closed:
            self._closed = True
            try:
                self._sock.shutdown(socket.SHUT_RDWR)  # the reader thread sees the end
            except OSError:
                pass
            self._sock.close()
        return 0

    def kill(self) -> None:
        self.wait()


def _ping_once(path: Path, timeout_s: float) -> dict[str, Any]:
    """One session of the kept runner at `path` that only pings it (no thread); OSError when
    it does not answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(path))
        sock.sendall(b'{"id": 1, "op": "ping"}\n')
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the runner closed the session")
            data += chunk
    return json.loads(data)


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
