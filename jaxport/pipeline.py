"""The engine's one workflow: source → Program → targets → verification → report.json.

`convert_archive` (CLI, service) and `convert_program` (library) both end here. Each
requested target is built, then run in its own runtime on the same inputs as JAX at every
batch size; a target that fails is recorded with its stage and a hint and does not stop the
others. Progress is reported as `progress(stage, fraction, message)`, fraction over the job.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from jaxport import __version__
from jaxport.archive import extract_archive
from jaxport.errors import JaxportError, LoweringError, TargetError, first_line
from jaxport.options import ALL_TARGETS, ConvertOptions
from jaxport.program import Program
from jaxport.verify.compare import Parity
from jaxport.verify.inputs import load_samples, make_inputs

ProgressFn = Callable[[str, float, str], None]
REPORT_NAME = "report.json"


def _no_progress(stage: str, fraction: float, message: str) -> None:
    pass


def convert_archive(archive: Path, out_dir: Path, options: ConvertOptions,
                    progress: ProgressFn | None = None) -> dict:
    """Convert a model archive into `out_dir`; return (and write) the report.

    Raises `JaxportError` when the input itself is bad (archive, manifest, models, shapes);
    target failures are recorded in the report instead.
    """
    progress = progress or _no_progress
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="jaxport-src-") as tmp:
        progress("load", 0.0, f"checking {Path(archive).name}")
        source = extract_archive(Path(archive), Path(tmp))
        from jaxport.compose import load_program  # imports keras and jax: after cheap checks

        progress("load", 0.05, f"loading {len(source.models)} model(s)")
        program = load_program(source, trusted=options.trusted)
        samples = load_samples(source.samples)
    timings = {"load": round(time.perf_counter() - t0, 3)}
    return convert_program(program, out_dir, options, progress, samples, timings)


@dataclass
class _Case:
    function: str
    batch: int
    inputs: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]


@dataclass
class _Build:
    """State shared by the target builders of one conversion."""

    program: Program
    out_dir: Path
    work_dir: Path
    options: ConvertOptions
    cases: list[_Case]
    samples: dict[str, np.ndarray]
    _orbax: Path | None = None
    _lowered: Path | LoweringError | None = None
    notes: dict[str, dict] = field(default_factory=dict)

    def orbax_savedmodel(self) -> Path:
        """The orbax SavedModel: the `savedmodel` target's directory, or built in the work dir."""
        if self._orbax is None:
            from jaxport.targets.savedmodel import export_savedmodel

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


def convert_program(program: Program, out_dir: Path, options: ConvertOptions,
                    progress: ProgressFn | None = None,
                    samples: dict[str, np.ndarray] | None = None,
                    timings: dict[str, float] | None = None) -> dict:
    """Build, verify and report every requested target of `program` into `out_dir`.

    `timings` (seconds per stage already done, e.g. `load`) is completed with `reference`
    (JAX reference outputs) and reported beside the per-target `seconds`.
    """
    progress = progress or _no_progress
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    progress("trace", 0.1, "computing reference outputs in JAX")
    t0 = time.perf_counter()
    cases = _reference_cases(program, options, samples or {})
    timings = {**(timings or {}), "reference": round(time.perf_counter() - t0, 3)}
    report = {
        "jaxport_version": __version__,
        "functions": program.signature_json(),
        "targets": {},
        "timings": timings,
    }
    with tempfile.TemporaryDirectory(prefix="jaxport-work-") as tmp:
        build = _Build(program, out_dir, Path(tmp), options, cases, samples or {})
        requested = [t for t in ALL_TARGETS if t in options.targets]
        for i, target in enumerate(requested):
            span = (0.2 + 0.8 * i / len(requested), 0.8 / len(requested))
            report["targets"][target] = _run_target(target, build, progress, span)
        for target in ALL_TARGETS:
            if target not in requested:
                report["targets"][target] = {"status": "skipped", "error": None,
                                             "reason": "not requested"}
    progress("done", 1.0, "finished")
    (out_dir / REPORT_NAME).write_text(json.dumps(report, indent=2, default=_json_default))
    return report


def _json_default(value: object) -> object:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _reference_cases(program: Program, options: ConvertOptions,
                     samples: dict[str, np.ndarray]) -> list[_Case]:
    cases = []
    for name, function in program.functions.items():
        for run, batch in enumerate(options.batch_sizes):
            inputs = make_inputs(function, batch, run, samples, options.seed)
            cases.append(_Case(name, batch, inputs, function(program.params, inputs)))
    return cases


def _run_target(target: str, build: _Build, progress: ProgressFn,
                span: tuple[float, float]) -> dict:
    start, width = span
    builder, verifier = TARGETS[target]
    result: dict = {"status": "failed", "path": None, "bytes": None, "seconds": None,
                    "verify_seconds": None, "parity": None, "error": None}
    stage = target
    try:
        progress(target, start, f"building {target}")
        t0 = time.perf_counter()
        path, extra = builder(build)
        result["seconds"] = round(time.perf_counter() - t0, 3)
        result.update(extra)
        result["path"] = str(path.relative_to(build.out_dir))
        result["bytes"] = _size(path)
        stage = "verify"
        progress(target, start + width / 2, f"verifying {target} in its runtime")
        t0 = time.perf_counter()
        parity = verifier(build, path)
        result["verify_seconds"] = round(time.perf_counter() - t0, 3)
        result["parity"] = parity.to_json()
        if not parity.passed:
            raise TargetError(
                f"parity failed: max abs err {parity.max_abs_err:.3g} at {parity.worst} "
                f"(atol {parity.atol}, rtol {parity.rtol})",
                "the artifact computes something different from JAX; report this model",
                stage="verify")
        result["status"] = "ok"
    except JaxportError as exc:
        result["error"] = {"message": str(exc), "stage": getattr(exc, "stage", "") or stage,
                           "hint": exc.hint, "code": exc.code}
    except Exception as exc:  # noqa: BLE001 - one target's crash must not stop the others
        traceback.print_exc()
        result["error"] = {"message": f"internal error: {type(exc).__name__}: {exc}"[:500],
                           "stage": stage, "hint": "this is a jaxport bug; please report it",
                           "code": "internal"}
    progress(target, start + width, f"{target}: {result['status']}")
    return result


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _parity(build: _Build, quantized: bool, run: Callable[[_Case], dict[str, np.ndarray]]) -> Parity:
    o = build.options
    parity = Parity(atol=o.quantized_atol if quantized else o.atol,
                    rtol=o.quantized_rtol if quantized else o.rtol,
                    batch_sizes=sorted({c.batch for c in build.cases}))
    for case in build.cases:
        got = run(case)
        for name, want in case.expected.items():
            if name not in got:
                raise TargetError(f"{case.function}: output {name!r} missing from the artifact "
                                  f"(it has {sorted(got)})", stage="verify")
            parity.add(f"{case.function}/{name}@batch{case.batch}", got[name], want)
    return parity


# --- savedmodel ------------------------------------------------------------------------------

def _build_savedmodel(build: _Build) -> tuple[Path, dict]:
    from jaxport.targets.savedmodel import export_savedmodel

    path = export_savedmodel(build.program, build.out_dir / "savedmodel")
    build._orbax = path
    return path, {}


def _verify_savedmodel(build: _Build, path: Path) -> Parity:
    from jaxport.verify.runtimes import SavedModelRunner

    runner = SavedModelRunner(path)
    return _parity(build, False, lambda c: runner.run(c.function, c.inputs))


# --- tflite ----------------------------------------------------------------------------------

def _calibration(build: _Build):
    for name, function in build.program.functions.items():
        for i in range(8):
            yield name, make_inputs(function, 1, i, build.samples, build.options.seed + 7 + i)


def _build_tflite(build: _Build) -> tuple[Path, dict]:
    """From the lowered plain-TF graph (fast) when it lowers and converts; else from orbax."""
    from jaxport.targets.tflite import export_tflite

    def convert(saved_model: Path) -> Path:
        return export_tflite(
            saved_model, build.out_dir / "model.tflite",
            signatures=list(build.program.functions), quantize=build.options.quantize,
            calibration=_calibration(build) if build.options.quantize == "int8" else None)

    extra: dict = {"quantize": build.options.quantize}
    try:
        path = convert(build.lowered_savedmodel())
        extra["source"] = "lowered"
    except (LoweringError, TargetError) as lowered_exc:
        reason = f"lowered graph: {lowered_exc}"
        try:
            path = convert(build.orbax_savedmodel())
        except TargetError as exc:
            raise TargetError(f"{exc}; before that, {reason}", exc.hint, stage="tflite") from None
        extra.update(source="orbax", source_reason=reason)
    return path, extra


def _verify_tflite(build: _Build, path: Path) -> Parity:
    from jaxport.verify.runtimes import TfliteRunner

    runner = TfliteRunner(path)
    return _parity(build, bool(build.options.quantize), lambda c: runner.run(c.function, c.inputs))


# --- tfjs ------------------------------------------------------------------------------------

def _tfjs_dir(build: _Build, function: str) -> Path:
    base = build.out_dir / "tfjs"
    return base if len(build.program.functions) == 1 else base / function


def _build_tfjs(build: _Build) -> tuple[Path, dict]:
    from jaxport.targets.tfjs import export_tfjs

    saved_model = build.lowered_savedmodel()
    out = build.out_dir / "tfjs"
    if out.exists():
        shutil.rmtree(out)
    for name in build.program.functions:
        export_tfjs(saved_model, _tfjs_dir(build, name), signature=name,
                    quantization=build.options.tfjs_quantize,
                    shard_bytes=build.options.tfjs_shard_bytes)
    return out, {"quantize": build.options.tfjs_quantize}


def _verify_tfjs(build: _Build, path: Path) -> Parity:
    from jaxport.verify.tfjs import shared_runner

    runner = shared_runner()
    return _parity(build, bool(build.options.tfjs_quantize),
                   lambda c: runner.run(_tfjs_dir(build, c.function), c.inputs))


TARGETS: dict[str, tuple[Callable[[_Build], tuple[Path, dict]], Callable[[_Build, Path], Parity]]] = {
    "savedmodel": (_build_savedmodel, _verify_savedmodel),
    "tflite": (_build_tflite, _verify_tflite),
    "tfjs": (_build_tfjs, _verify_tfjs),
}
