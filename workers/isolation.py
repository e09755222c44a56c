"""Run one conversion in a child forked from the warm worker process, under a time limit, a
memory limit and a cancel check. Killing the child never harms the worker.

Memory is bounded twice: the parent polls the child's RSS (and its children's: `node`), and
the child runs under kernel limits (`jaxport.limits`: address space = budget + headroom, file
size), so one huge allocation or write fails at once instead of between two polls.

The child talks to the parent only through a pipe of JSON lines (`progress` messages, then one
`result` or `error`); it touches neither Redis nor storage, so no connection or lock is shared
across the fork. It runs in its own process group (TF.js verification starts `node`), and dies
with its parent (PR_SET_PDEATHSIG), so a SIGKILLed worker leaves no orphan converting on.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import select
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil

from jaxport.errors import JaxportError
from jaxport.limits import apply_limits, resource_error
from workers.warmup import forking

log = logging.getLogger("jaxport.worker")
POLL_S = 0.25
PR_SET_PDEATHSIG = 1

Send = Callable[[dict[str, Any]], None]


class JobLimitExceeded(JaxportError):
    """The job's process was killed by a limit; only this job fails."""

    http_status = 422


class JobTimeout(JobLimitExceeded):
    code = "job_timeout"


class JobMemoryExceeded(JobLimitExceeded):
    code = "job_memory_exceeded"


class JobAborted(JaxportError):
    """Stopped on request (cancel, or the lease passed to another worker)."""

    code = "job_aborted"


class ChildCrashed(JaxportError):
    """The conversion process died without an answer (a crash inside a native library)."""

    code = "conversion_crashed"
    http_status = 500


@dataclass(frozen=True)
class Limits:
    timeout_s: float
    max_memory_mb: int
    max_file_bytes: int | None = None


def run_isolated(work: Callable[[Send], dict], limits: Limits, *,
                 on_progress: Callable[[dict[str, Any]], None],
                 keep_going: Callable[[], bool], tick_s: float = 1.0) -> dict:
    """Fork, run `work(send)` in the child and return its dict.

    Raises the child's JaxportError (rebuilt with code/message/hint), JobTimeout,
    JobMemoryExceeded, JobAborted (when `keep_going()` returns False) or ChildCrashed.
    """
    read_fd, write_fd = os.pipe()
    with forking():  # never beside the pool process's warm-up import (workers.warmup)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_fd)
        _child_main(work, write_fd, limits)
    os.close(write_fd)
    try:
        os.setpgid(pid, pid)  # also done by the child: whichever runs first wins the race
    except OSError:
        pass
    try:
        return _supervise(pid, read_fd, limits, on_progress, keep_going, tick_s)
    finally:
        os.close(read_fd)
        _kill_group(pid)


def _child_main(work: Callable[[Send], dict], fd: int, limits: Limits) -> None:
    code = 0
    try:
        os.setpgid(0, 0)
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1):
            signal.signal(sig, signal.SIG_DFL)
        apply_limits(limits.max_memory_mb, limits.max_file_bytes)

        def send(message: dict[str, Any]) -> None:
            data = (json.dumps(message, default=str) + "\n").encode()
            while data:
                data = data[os.write(fd, data):]

        try:
            send({"type": "result", "value": work(send)})
        except BaseException as exc:
            named = exc if isinstance(exc, JaxportError) else resource_error(exc)
            if named is not None:
                send({"type": "error", "kind": type(named).__name__, "status": named.http_status,
                      **named.to_dict()})
            else:  # our bug or a library's: reported, not hidden
                send({"type": "crash", "message": f"{type(exc).__name__}: {exc}",
                      "traceback": traceback.format_exc()})
    except BaseException:
        code = 1
    finally:
        os._exit(code)


class ChildError(JaxportError):
    """A JaxportError raised inside the child, rebuilt in the parent with the same fields."""

    def __init__(self, message: dict[str, Any]) -> None:
        super().__init__(message["message"], message.get("hint", ""))
        self.code = message["code"]
        self.http_status = message.get("status", 422)


def _supervise(pid: int, fd: int, limits: Limits, on_progress: Callable[[dict[str, Any]], None],
               keep_going: Callable[[], bool], tick_s: float) -> dict:
    started = last_tick = time.monotonic()
    buffer = b""
    outcome: dict[str, Any] | None = None
    eof = False
    while not eof:
        ready, _, _ = select.select([fd], [], [], POLL_S)
        if ready:
            chunk = os.read(fd, 1 << 16)
            eof = not chunk
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                message = json.loads(line)
                if message["type"] == "progress":
                    on_progress(message)
                else:
                    outcome = message
        now = time.monotonic()
        if now - started > limits.timeout_s:
            raise JobTimeout(f"the conversion ran longer than the job time limit of "
                             f"{limits.timeout_s:g} s and was stopped",
                             "try fewer targets or a smaller model, or ask the operator to raise "
                             "JAXPORT_JOB_TIMEOUT_S")
        rss_mb = _tree_rss(pid) / 2**20
        if rss_mb > limits.max_memory_mb:
            raise JobMemoryExceeded(f"the conversion used {rss_mb:.0f} MB, over the job memory "
                                    f"limit of {limits.max_memory_mb} MB, and was stopped",
                                    "ask the operator to raise JAXPORT_JOB_MAX_MEMORY_MB")
        if now - last_tick >= tick_s:
            last_tick = now
            if not keep_going():
                raise JobAborted("the job was canceled")
    _, status = os.waitpid(pid, 0)
    if outcome is None:
        raise ChildCrashed(f"the conversion process died ({_describe(status)}) without a result",
                           "this is a bug in jaxport or a native library; the worker log has more")
    if outcome["type"] == "result":
        return outcome["value"]
    if outcome["type"] == "error":
        raise ChildError(outcome)
    log.error("conversion crashed in child %d:\n%s", pid, outcome["traceback"])
    raise ChildCrashed(f"the conversion failed unexpectedly: {outcome['message']}",
                       "this is a bug in jaxport; the worker log has the traceback")


def _tree_rss(pid: int) -> int:
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def _kill_group(pid: int) -> None:
    """SIGKILL the child's process group (no-op once it is gone) and reap the child."""
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.WEXITSTATUS(status)}"
