"""The target table: each deploy format registers its build and its runtime check here.

A target module (one file per format, as `keras/src/export/` has) ends with
`register(Target(name, build, verify))`:

- `build(ctx) -> (path, fields)`: write the artifact under `ctx.out_dir`; `fields` are the
  target's own report.json fields (`quantize`, TFLite's `source`, ...).
- `verify(ctx, path) -> Parity | Verdict`: run the artifact in its real runtime on every case
  (`ctx.parity(run, quantized=...)`) and compare with the JAX reference. A target checked in
  more than one runtime returns a `Verdict`: the parity that is the target's `parity`, its
  own fields (TFLite's `runtimes`), warnings, and the failure of another runtime.

Both raise `JaxportError` subclasses (`TargetError`, `LoweringError`) for failures a user can
act on; the pipeline records them and goes on with the other targets.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from jaxport.errors import LoweringError, TargetError, first_line
from jaxport.options import ConvertOptions
from jaxport.program import Program
from jaxport.samples import Samples
from jaxport.timings import Timings
from jaxport.verify.compare import Parity


@dataclass
class Case:
    """One check: a function's inputs at one batch size and the JAX reference outputs."""

    function: str
    batch: int
    inputs: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]


@dataclass
class BuildContext:
    """What the targets of one conversion share: the program, the cases, and cached builds."""

    program: Program
    out_dir: Path
    work_dir: Path
    options: ConvertOptions
    cases: list[Case]
    samples: Samples = field(default_factory=Samples)
    timings: Timings = field(default_factory=Timings)  # shared builds add `orbax`, `lowering`
    _orbax: Path | None = None
    _lowered: Path | LoweringError | None = None

    def orbax_savedmodel(self) -> Path:
        """The orbax SavedModel: the `savedmodel` target's directory, or built in the work dir."""
        if self._orbax is None:
            from jaxport.targets.savedmodel import export_savedmodel

            with self.timings.stage("orbax"):
                self._orbax = export_savedmodel(self.program, self.work_dir / "orbax")
        return self._orbax

    def lowered_savedmodel(self) -> Path:
        """The plain-TF SavedModel from our lowering; raises the (cached) `LoweringError`.

        A crash inside the lowering is our bug, but it is reported the same way (as a
        `LoweringError` naming the exception) so that TFLite can still fall back to orbax.
        """
        if self._lowered is None:
            from jaxport.lowering import lower_program

            try:
                path = self.work_dir / "lowered"
                with self.timings.stage("lowering"):
                    lower_program(self.program).save(path)
                self._lowered = path
            except LoweringError as exc:
                self._lowered = exc
            except Exception as exc:  # noqa: BLE001 - see docstring
                traceback.print_exc()
                self._lowered = LoweringError(
                    f"the lowering crashed: {type(exc).__name__}: {first_line(exc)}",
                    "this is a jaxport bug; please report it with the model")
        if isinstance(self._lowered, LoweringError):
            raise self._lowered
        return self._lowered

    def parity(self, run: Callable[[Case], dict[str, np.ndarray]], *, quantized: bool) -> Parity:
        """Run every case through `run` (the artifact in its runtime) and compare with JAX."""
        o = self.options
        parity = Parity(atol=o.quantized_atol if quantized else o.atol,
                        rtol=o.quantized_rtol if quantized else o.rtol, rule=o.tolerance,
                        quantized=quantized, batch_sizes=sorted({c.batch for c in self.cases}))
        for case in self.cases:
            got = run(case)
            for name, want in case.expected.items():
                if name not in got:
                    raise TargetError(f"{case.function}: output {name!r} missing from the "
                                      f"artifact (it has {sorted(got)})", stage="verify")
                parity.add(f"{case.function}/{name}", case.batch, got[name], want)
        return parity


@dataclass
class Verdict:
    """What `verify` found beyond the target's `parity`.

    `fields` go into the target's report entry; `warnings` into report.json's `warnings`
    (prefixed with the target); `failure`, when set, fails the target although `parity`
    passed (a second runtime computed something else).
    """

    parity: Parity
    fields: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    failure: TargetError | None = None


@dataclass(frozen=True)
class Target:
    name: str
    build: Callable[[BuildContext], tuple[Path, dict]]
    verify: Callable[[BuildContext, Path], Parity | Verdict]


TARGETS: dict[str, Target] = {}


def register(target: Target) -> Target:
    """Add `target` to the table the pipeline iterates; a name registers once."""
    if target.name in TARGETS:
        raise ValueError(f"target {target.name!r} is registered twice")
    TARGETS[target.name] = target
    return target
