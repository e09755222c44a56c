"""The target table: each deploy format registers its build and its runtime check here.

A target module (one file per format, as `keras/src/export/` has) ends with
`register(Target(name, build, verify))`:

- `build(ctx) -> (path, fields)`: write the artifact under `ctx.out_dir`; `fields` are the
  target's own report.json fields (`quantize`, TFLite's `source`, ...).
- `prepare(ctx)` (optional): start, in the background (`ctx.prestart`), the runtime processes
  `verify` will take with `ctx.runtime` (a browser, Node), so that they start while the job
  loads, traces and builds. Called at the start of the conversion.
- `verify(ctx, path) -> Parity | Verdict`: run the artifact in its real runtime on every case
  (`ctx.parity(run)`) and compare with the JAX reference. A target checked in more than one
  runtime returns a `Verdict`: the parity that is the target's `parity`, its own fields
  (TFLite's `runtimes`), warnings, and the failure of another runtime.
- `quantize(ctx, path) -> dict` (optional, with `quantize_option`, the `ConvertOptions` field
  naming the mode): when that option is set, build a quantized artifact beside the float one
  at `path`, measure it on every case (`ctx.accuracy(run)`) and return
  `ctx.quantization_report(...)`. Runs only after the float artifact passed its parity check.

The pipeline builds the targets one after another in its own thread and verifies (then
quantizes) them one after another in a second thread, so `build` of one target runs beside
`verify` of the one before (the shared builds, `orbax_savedmodel` and `lowered_savedmodel`,
are made under a lock, once).

`build`, `verify` and `quantize` raise `JaxportError` subclasses (`TargetError`, `LoweringError`) for failures a user can
act on; the pipeline records them and goes on with the other targets.
"""

from __future__ import annotations

import threading
import traceback
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from jaxport.errors import LoweringError, TargetError, first_line
from jaxport.options import ConvertOptions
from jaxport.program import Program
from jaxport.samples import Samples
from jaxport.timings import Timings
from jaxport.verify.accuracy import Accuracy, gate
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
    """What the targets of one conversion share: the program, the cases, cached builds and
    started runtimes.

    `reference` is the list of cases, or a `Future` of it while the JAX reference is still
    being computed: `cases` waits for it (and raises what computing it raised). Builds never
    need the cases, so they run while the reference is computed. Runtimes (`prestart`,
    `runtime`) are processes verification talks to; `close()` stops this conversion's own.
    """

    program: Program
    out_dir: Path
    work_dir: Path
    options: ConvertOptions
    reference: list[Case] | Future
    samples: Samples = field(default_factory=Samples)
    timings: Timings = field(default_factory=Timings)  # shared builds add `orbax`, `lowering`
    _orbax: Path | None = None
    _lowered: Path | LoweringError | None = None
    _builds: threading.RLock = field(default_factory=threading.RLock)
    _runtimes: dict[str, Future] = field(default_factory=dict)

    @property
    def cases(self) -> list[Case]:
        """The verification cases with JAX's outputs (waits for the reference run)."""
        if isinstance(self.reference, Future):
            return self.reference.result()
        return self.reference

    def prestart(self, name: str, start: Callable[[], Any], *, owned: bool = True) -> None:
        """Run `start()` in a background thread (once per name); `runtime(name, start)` takes
        its result. An `owned` runtime is this conversion's: `release` and `close` call its
        `close()`; a shared one (a process-wide runner) is left running. The thread is a daemon."""
        with self._builds:
            if name in self._runtimes:
                return
            future: Future = Future()
            self._runtimes[name] = future
            future.owned = owned  # type: ignore[attr-defined]

        def run() -> None:
            try:
                future.set_result(start())
            except BaseException as exc:  # noqa: BLE001 - handed to whoever takes the runtime
                future.set_exception(exc)

        threading.Thread(target=run, name=f"jaxport-start-{name}", daemon=True).start()

    def runtime(self, name: str, start: Callable[[], Any], *, owned: bool = True) -> Any:
        """The runtime `name`: prestarted, or started now with `start()`; raises what starting
        it raised (and starts it afresh on the next call)."""
        self.prestart(name, start, owned=owned)
        future = self._runtimes[name]
        try:
            return future.result()
        except BaseException:
            with self._builds:
                if self._runtimes.get(name) is future:
                    del self._runtimes[name]
            raise

    def release(self, name: str) -> None:
        """Close the owned runtime `name` now (once it has started), and forget it."""
        with self._builds:
            future = self._runtimes.pop(name, None)
        if future is None or not future.owned:  # type: ignore[attr-defined]
            return
        try:
            runtime = future.result()
        except BaseException:  # noqa: BLE001 - it never started: nothing to close
            return
        runtime.close()

    def close(self) -> None:
        """Close every owned runtime of this conversion (waiting for those still starting)."""
        for name in list(self._runtimes):
            self.release(name)

    def orbax_savedmodel(self) -> Path:
        """The orbax SavedModel: the `savedmodel` target's directory, or built in the work dir."""
        with self._builds:
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
        with self._builds:
            return self._lowered_locked()

    def _lowered_locked(self) -> Path:
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

    def parity(self, run: Callable[[Case], dict[str, np.ndarray]]) -> Parity:
        """Run every case through `run` (the artifact in its runtime) and compare with JAX."""
        o = self.options
        parity = Parity(atol=o.atol, rtol=o.rtol, rule=o.tolerance,
                        batch_sizes=sorted({c.batch for c in self.cases}))
        for case in self.cases:
            got = _outputs(run, case, "verify")
            for name, want in case.expected.items():
                parity.add(f"{case.function}/{name}", case.batch, got[name], want)
        return parity

    def accuracy(self, run: Callable[[Case], dict[str, np.ndarray]]) -> Accuracy:
        """Run every case through `run` (a quantized artifact) and measure it against JAX."""
        accuracy = Accuracy()
        for case in self.cases:
            try:
                got = _outputs(run, case, "quantize")
            except TargetError as exc:  # the runtime refused the quantized artifact
                raise TargetError(f"the quantized artifact: {exc}", exc.hint,
                                  stage="quantize") from None
            for name, want in case.expected.items():
                accuracy.add(f"{case.function}/{name}", got[name], want)
        return accuracy

    def quantization_report(self, mode: str, accuracy: Accuracy, **fields: object) -> dict:
        """The `quantization` field of a target: `fields`, the figures and the gate's verdict.

        `gate.failures` lists the outputs below `min_sqnr` (or the mode's default) or
        `min_top1`; the pipeline fails the target when it is not empty.
        """
        o = self.options
        floor = o.sqnr_floor(mode)
        failures = gate(accuracy, floor, o.min_top1)
        return {"mode": mode, **fields, "outputs": accuracy.to_json(),
                "gate": {"min_sqnr_db": floor, "min_top1": o.min_top1,
                         "passed": not failures, "failures": failures}}


def _outputs(run: Callable[[Case], dict[str, np.ndarray]], case: Case,
             stage: str) -> dict[str, np.ndarray]:
    """`run(case)`, checked to hold every output JAX has."""
    got = run(case)
    missing = sorted(set(case.expected) - set(got))
    if missing:
        raise TargetError(f"{case.function}: output {missing[0]!r} missing from the artifact "
                          f"(it has {sorted(got)})", stage=stage)
    return got


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
    quantize: Callable[[BuildContext, Path], dict] | None = None
    quantize_option: str = ""  # the ConvertOptions field that asks `quantize` to run
    prepare: Callable[[BuildContext], None] | None = None
    # Its build changes JAX for the whole process while it runs (jax2onnx swaps jax.numpy
    # functions for its own primitives): the pipeline runs it with no JAX work beside it.
    exclusive: bool = False

    def quantization(self, options: ConvertOptions) -> str | None:
        """The quantization mode the options ask of this target, or None."""
        return getattr(options, self.quantize_option) if self.quantize is not None else None


TARGETS: dict[str, Target] = {}


def register(target: Target) -> Target:
    """Add `target` to the table the pipeline iterates; a name registers once."""
    if target.name in TARGETS:
        raise ValueError(f"target {target.name!r} is registered twice")
    TARGETS[target.name] = target
    return target
