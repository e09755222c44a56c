"""The per-stage profile of a conversion: `report["timings"]` and the job record's `timings`.

Stages are flat names in the order they started: `extract`, `load`, `compose`, `reference`,
then per target `<target>.build` and `<target>.verify` (and `tflite.litertjs`, the TFLite
model's LiteRT.js check, measured inside `tflite.verify`), with shared intermediate builds under
their own names (`lowering`: the plain-TF SavedModel TFLite and TF.js both use; `orbax`: the
SavedModel TFLite falls back to); a worker adds `download`, `packaging` and `upload`.

Times are exclusive within a thread: a stage measured while another is open in the same thread
is taken out of the outer one (the lowering done inside `tflite.build` is `lowering`, not
`tflite.build`). The pipeline runs the reference and each target's verification in threads
beside the builds (`jaxport.pipeline`), so stages of different threads overlap in time and the
stages add up to more than the wall time; `report["seconds"]` is the wall time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class Timings:
    """Seconds per stage, exclusive of nested stages of the same thread; a stage measured twice
    adds up. Safe to use from several threads."""

    def __init__(self, initial: dict[str, float] | None = None) -> None:
        self.seconds: dict[str, float] = dict(initial or {})
        self.started = time.perf_counter()  # for `wall()`
        self._lock = threading.Lock()
        self._local = threading.local()  # .open: per open stage of this thread, nested seconds

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Measure the body as stage `name` (also when it raises); it is listed from its start."""
        with self._lock:
            self.seconds.setdefault(name, 0.0)
        opened = self._local.__dict__.setdefault("open", [])
        opened.append(0.0)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - t0
            nested = opened.pop()
            if opened:
                opened[-1] += elapsed
            with self._lock:
                self.seconds[name] = self.seconds.get(name, 0.0) + elapsed - nested

    def wall(self) -> float:
        """Seconds since this profile was made, rounded to milliseconds."""
        return round(time.perf_counter() - self.started, 3)

    def to_json(self) -> dict[str, float]:
        """{stage: seconds}, rounded to milliseconds, in the order the stages first started."""
        with self._lock:
            return {name: round(s, 3) for name, s in self.seconds.items()}


def summary_line(timings: dict[str, float], wall: float | None = None) -> str:
    """`time: extract 0.1 s, load 3.2 s, ... (12.3 s in all)` for the CLI and `submit`; with
    the stages' sum beside the wall time when they overlapped."""
    parts = ", ".join(f"{name} {s:.1f} s" for name, s in timings.items())
    total = sum(timings.values())
    if wall is None:
        return f"time: {parts} (total {total:.1f} s)"
    return f"time: {parts} ({wall:.1f} s in all; stages sum to {total:.1f} s, some ran side by side)"
