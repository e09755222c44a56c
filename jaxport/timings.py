"""The per-stage profile of a conversion: `report["timings"]` and the job record's `timings`.

Stages are flat names in the order they ran: `extract`, `load`, `compose`, `reference`, then
per target `<target>.build` and `<target>.verify` (and `tflite.litertjs`, the TFLite model's
LiteRT.js check, measured inside `tflite.verify`), with shared intermediate builds under their
own names (`lowering`: the plain-TF SavedModel TFLite and TF.js both use; `orbax`: the
SavedModel TFLite falls back to); a worker adds `download`, `packaging` and `upload`.

Times are exclusive: a stage measured while another is open is taken out of the outer one
(the lowering done inside `tflite.build` is `lowering`, not `tflite.build`), so the stages of
one process add up to its wall time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Timings:
    """Seconds per stage, exclusive of nested stages; a stage measured twice adds up."""

    def __init__(self, initial: dict[str, float] | None = None) -> None:
        self.seconds: dict[str, float] = dict(initial or {})
        self._open: list[float] = []  # per open stage, the nested seconds to take out

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Measure the body as stage `name` (also when it raises); it is listed from its start."""
        self.seconds.setdefault(name, 0.0)
        self._open.append(0.0)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - t0
            nested = self._open.pop()
            if self._open:
                self._open[-1] += elapsed
            self.seconds[name] = self.seconds.get(name, 0.0) + elapsed - nested

    def to_json(self) -> dict[str, float]:
        """{stage: seconds}, rounded to milliseconds, in the order the stages first ran."""
        return {name: round(s, 3) for name, s in self.seconds.items()}


def summary_line(timings: dict[str, float]) -> str:
    """`time: extract 0.1 s, load 3.2 s, ... (total 12.3 s)` for the CLI and `submit`."""
    parts = ", ".join(f"{name} {s:.1f} s" for name, s in timings.items())
    return f"time: {parts} (total {sum(timings.values()):.1f} s)"
