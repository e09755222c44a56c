"""Kernel limits for a process that converts untrusted input: address space and file size.

Memory is also watched from outside (the worker polls the conversion's RSS), but a poll can
come too late for one huge allocation or write. With these limits the kernel refuses it at
once: an allocation over the budget raises `MemoryError`, a file over the cap fails with
`EFBIG` (SIGXFSZ is ignored so the write returns an error instead of killing the process).
`resource_error` turns either into a named error.

The address-space limit is the memory budget plus `ADDRESS_HEADROOM_MB`: TensorFlow, XLA and
their thread pools reserve several GB of address space they never touch (a warm worker's
VSZ is about RSS + 3 GB), which must not count against the user's model.

Chromium (the LiteRT.js check) does not start under any address-space limit: V8 and its WASM
memories reserve tens of GB they never touch. `address_space_lifted` raises the soft limit back
to the hard one (which `apply_limits` never lowers) while such a child is spawned, so the child
runs without it; its memory is still counted by the worker's RSS poll, which sums the whole
process tree of the conversion.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from jaxport.errors import JaxportError

ADDRESS_HEADROOM_MB = 16 * 1024
DEFAULT_MAX_FILE_MB = 16 * 1024
MEMORY_HINT = ("give it more memory: jaxport convert --max-memory-mb, or the service's "
               "JAXPORT_JOB_MAX_MEMORY_MB; or convert a smaller model")
FILE_HINT = ("allow bigger files: jaxport convert --max-file-mb, or the service's "
             "JAXPORT_JOB_MAX_FILE_MB")


class ResourceLimitExceeded(JaxportError):
    """The conversion needed more memory or a bigger file than its limit allows."""

    code = "resource_limit_exceeded"
    http_status = 422


def apply_limits(max_memory_mb: int | None, max_file_bytes: int | None) -> None:
    """Lower this process's RLIMIT_AS to `max_memory_mb` + headroom and RLIMIT_FSIZE to
    `max_file_bytes` (None leaves one as it is). Only the soft limits change."""
    if max_memory_mb is not None:
        _lower(resource.RLIMIT_AS, (max_memory_mb + ADDRESS_HEADROOM_MB) * 2**20)
    if max_file_bytes is not None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        _lower(resource.RLIMIT_FSIZE, max_file_bytes)


def _lower(which: int, value: int) -> None:
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    if soft == resource.RLIM_INFINITY or value < soft:
        resource.setrlimit(which, (value, hard))


_spawn_lock = threading.Lock()


@contextmanager
def address_space_lifted() -> Iterator[None]:
    """Within the block, RLIMIT_AS's soft limit is the hard limit; afterwards it is restored.

    For spawning a child that cannot run under the address-space limit (it inherits the lifted
    limit); the other threads of this process get the higher limit for those milliseconds.
    """
    with _spawn_lock:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
        try:
            yield
        finally:
            if soft != hard:
                resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def resource_error(exc: BaseException) -> ResourceLimitExceeded | None:
    """The named error for a refused allocation or an over-size file, else None."""
    if isinstance(exc, MemoryError):
        return ResourceLimitExceeded("the conversion tried to allocate more memory than its limit "
                                     "allows", MEMORY_HINT)
    # TensorFlow's C++ file writers report EFBIG in the message of their own error types.
    if (isinstance(exc, OSError) and exc.errno == errno.EFBIG) or os.strerror(errno.EFBIG) in str(exc):
        return ResourceLimitExceeded("the conversion tried to write a file larger than its limit "
                                     "allows", FILE_HINT)
    return None
