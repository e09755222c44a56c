"""Two conversion processes: the targets split in two groups, converted side by side.

Most of a conversion is Python (tracing, building TF graphs, loading SavedModels), so threads
share one core. `convert_archive` therefore forks once, after the imports and before anything
runs in JAX or TensorFlow, and the two processes each load the program, compute the reference
and build and verify their group of targets (`split_targets`): `savedmodel` and `onnx` in one,
`tflite` and `tfjs` (which share the lowered graph) in the other. Loading is paid twice, on two
cores at once; the JAX reference is computed once, in this process, and handed to the other
(`Forked.tell`); memory is about twice one process's.

A fork is only safe before a runtime has started: `fork_is_safe()` says whether this process
has started JAX's backend or TensorFlow's eager context, or runs other Python threads. When it
has (a library caller that used JAX already, a test process), the conversion runs in one
process.

The number of processes is `JAXPORT_CONVERSION_PROCESSES` (1 or 2); by default 2 where the
conversion's share of the cores is at least 2: a worker converting `JAXPORT_WORKER_CONCURRENCY`
jobs at once on 2 cores gives each job one process, so the machine is not oversubscribed.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import threading
import traceback
from typing import Callable

from jaxport.errors import JaxportError

GROUPS = (("savedmodel", "onnx"), ("tflite", "tfjs"))
"""Targets that go together; the first group runs in the forked process."""
PR_SET_PDEATHSIG = 1


class SideProcessFailed(JaxportError):
    """The forked conversion process died or failed outside its targets."""

    code = "conversion_crashed"
    http_status = 500


def default_processes(jobs_at_once: int = 1) -> int:
    """`JAXPORT_CONVERSION_PROCESSES`, else 2 where this conversion's share of the cores (with
    `jobs_at_once` conversions running on the machine) is 2 or more, else 1."""
    value = os.environ.get("JAXPORT_CONVERSION_PROCESSES", "").strip()
    if value:
        if value not in ("1", "2"):
            raise JaxportError(f"JAXPORT_CONVERSION_PROCESSES={value!r} is not 1 or 2",
                               "set it to 1 (one process) or 2 (targets split in two)")
        return int(value)
    return 2 if (os.cpu_count() or 1) // max(1, jobs_at_once) >= 2 else 1


def split_targets(targets: list[str], processes: int) -> tuple[list[str], list[str]]:
    """(the forked process's targets, this process's targets), in the order given. The first
    is empty when one process is asked for, or when one group holds every target."""
    side = [t for t in targets if t in GROUPS[0]]
    main = [t for t in targets if t not in GROUPS[0]]
    if processes < 2 or not side or not main:
        return [], list(targets)
    return side, main


def fork_is_safe() -> bool:
    """True while no JAX backend, no TensorFlow eager context and no other Python thread exist
    in this process (their locks and threads would not survive a fork)."""
    if threading.active_count() > 1:
        return False
    xla_bridge = sys.modules.get("jax._src.xla_bridge")
    if xla_bridge is not None and getattr(xla_bridge, "_backends", None):
        return False
    context = sys.modules.get("tensorflow.python.eager.context")
    if context is not None:
        current = getattr(context, "_context", None)
        if current is not None and getattr(current, "_context_handle", None) is not None:
            return False
    return True


class Forked:
    """`work(send, receive)` running in a forked child. The child's `send(message)` calls reach
    `on_message` in this process (from a reader thread) as they come; this process's
    `tell(message)` calls reach the child's `receive()`, which waits for the next one and raises
    `SideProcessFailed` once this process has stopped telling (`result()`). `result()` waits
    for the dict `work` returned."""

    def __init__(self, work: Callable[[Callable[[dict], None], Callable[[], dict]], dict],
                 on_message: Callable[[dict], None] = lambda message: None) -> None:
        read_fd, write_fd = os.pipe()  # child -> this process
        tell_read, tell_write = os.pipe()  # this process -> child
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - runs in the child
            os.close(read_fd)
            os.close(tell_write)
            _answer(work, write_fd, tell_read)
        os.close(write_fd)
        os.close(tell_read)
        self._tell = os.fdopen(tell_write, "wb")
        self._answer: dict | None = None
        self._reaped = False  # once reaped, its pid may belong to another process
        self._reader = threading.Thread(target=self._read, args=(read_fd, on_message),
                                        name="jaxport-side", daemon=True)
        self._reader.start()

    def tell(self, message: dict) -> None:
        """Send `message` to the child's `receive()`; nothing when the child is gone."""
        try:
            self._tell.write((json.dumps(message, default=str) + "\n").encode())
            self._tell.flush()
        except (BrokenPipeError, ValueError):  # the child died, or result() closed the pipe
            pass

    def _read(self, fd: int, on_message: Callable[[dict], None]) -> None:
        with os.fdopen(fd, "rb") as pipe:
            for line in pipe:
                if not line.endswith(b"\n"):
                    break  # cut off: the child died mid-line
                answer = json.loads(line)
                if "message" in answer:
                    on_message(answer["message"])
                else:
                    self._answer = answer

    def result(self) -> dict:
        """The child's dict; raises the child's `JaxportError` (as `SideProcessFailed` with its
        code, message and hint) or `SideProcessFailed` when it died without an answer."""
        self._close_tell()
        self._reader.join()
        _, status = os.waitpid(self.pid, 0)
        self._reaped = True
        answer = self._answer
        if answer is None:
            how = (f"killed by signal {signal.Signals(os.WTERMSIG(status)).name}"
                   if os.WIFSIGNALED(status) else f"exit code {os.WEXITSTATUS(status)}")
            raise SideProcessFailed(f"the conversion process of the other targets died ({how})",
                                    "set JAXPORT_CONVERSION_PROCESSES=1 to convert in one process; "
                                    "a crash in a native library is a bug to report")
        if "result" in answer:
            return answer["result"]
        error = SideProcessFailed(answer["message_text"], answer.get("hint", ""))
        error.code = answer.get("code", SideProcessFailed.code)
        error.http_status = answer.get("status", 500)
        raise error

    def kill(self) -> None:
        """Stop the child (no-op once `result()` reaped it) and reap it."""
        self._close_tell()
        if self._reaped:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass

    def _close_tell(self) -> None:
        try:
            self._tell.close()
        except BrokenPipeError:
            pass


def _receiver(fd: int) -> Callable[[], dict]:  # pragma: no cover - runs in the child
    pipe = os.fdopen(fd, "rb")
    lock = threading.Lock()

    def receive() -> dict:
        with lock:
            line = pipe.readline()
        if not line.endswith(b"\n"):
            raise SideProcessFailed("the conversion process that forked this one stopped talking to it",
                                    "a bug to report, unless that process failed first")
        return json.loads(line)

    return receive


def _answer(work: Callable[[Callable[[dict], None], Callable[[], dict]], dict], fd: int,
            tell_fd: int) -> None:  # pragma: no cover
    """Run `work(send, receive)` in the child, writing each message and then one answer to `fd`
    as JSON lines, reading what the parent tells from `tell_fd`; never returns. The child dies with its parent, so an interrupted conversion leaves
    no orphan."""
    code = 0
    lock = threading.Lock()

    def write(line: dict) -> None:
        data = (json.dumps(line, default=str) + "\n").encode()
        with lock:
            while data:
                data = data[os.write(fd, data):]

    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        try:
            answer: dict = {"result": work(lambda message: write({"message": message}),
                                           _receiver(tell_fd))}
        except JaxportError as exc:
            answer = {"code": exc.code, "message_text": str(exc), "hint": exc.hint,
                      "status": exc.http_status}
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, not hidden
            traceback.print_exc()
            answer = {"message_text": f"the conversion process of the other targets failed: "
                                      f"{type(exc).__name__}: {exc}"[:500],
                      "hint": "this is a jaxport bug; please report it"}
        write(answer)
    except BaseException:  # noqa: BLE001
        code = 1
    finally:
        os._exit(code)
