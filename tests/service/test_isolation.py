"""The conversion child's kernel limits (workers.isolation + jaxport.limits): an allocation or
a file over the job's limits fails at once with a named error, not a crash, and the worker
process that forked the child is untouched."""

from __future__ import annotations

import resource
from pathlib import Path

import numpy as np
import pytest

from workers.isolation import ChildError, Limits, run_isolated


def _run(work, **limits):
    return run_isolated(work, Limits(timeout_s=60, **limits), on_progress=lambda m: None,
                        keep_going=lambda: True)


def test_an_allocation_past_the_address_space_limit_fails_at_once():
    """The child runs under RLIMIT_AS: asking for all of it at once (never touched, so the RSS
    poll cannot see it) is refused with a named error, not granted or crashed."""
    def work(send):
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY:
            return {"limited": False}
        return {"bytes": np.empty(soft, dtype=np.uint8).nbytes}  # more than what is left

    # A budget far above what the forked test process holds: only the kernel limit can refuse.
    with pytest.raises(ChildError) as info:
        _run(work, max_memory_mb=256 * 1024)
    assert info.value.code == "resource_limit_exceeded"
    assert "memory" in str(info.value) and "--max-memory-mb" in info.value.hint
    assert _run(lambda send: {"bytes": np.ones(2**20).nbytes}, max_memory_mb=256 * 1024) == {
        "bytes": 2**23}


def test_a_file_over_the_cap_fails_with_a_named_error(tmp_path: Path):
    def work(send):
        (tmp_path / "big").write_bytes(b"x" * (2 * 2**20))
        return {}

    with pytest.raises(ChildError) as info:
        _run(work, max_memory_mb=8192, max_file_bytes=2**20)
    assert info.value.code == "resource_limit_exceeded"
    assert "file" in str(info.value) and "JAXPORT_JOB_MAX_FILE_MB" in info.value.hint
    assert (tmp_path / "big").stat().st_size <= 2**20
