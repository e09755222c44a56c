"""The engine's one workflow: source → Program → reference → targets → verification → report.json.

`convert_archive` (CLI, service) and `convert_program` (library) both end here:

1. samples.npz is resolved against the program (unknown keys and misfit arrays are refused);
2. goldens, when samples.npz has them, are checked against the composed JAX function first: a
   mismatch fails every target without building it (`report["reference"]`);
3. the JAX reference is computed on the verification inputs (`report["inputs"]` says where
   they come from) and looked at for checks that cannot tell (`report["warnings"]`);
4. each requested target (`jaxport.targets.TARGETS`) is built, then run in its own runtime on
   the same inputs at every batch size; a target that fails is recorded with its stage and a
   hint and does not stop the others;
5. a target asked to quantize (`quantize`, `tfjs_quantize`) then builds the quantized artifact
   beside the float one, measures it against the reference (`targets.<t>.quantization`) and
   fails at stage `quantize` when it falls below the accuracy gate (`min_sqnr`, `min_top1`).

Progress is reported as `progress(stage, fraction, message)`, fraction over the job.
"""

from __future__ import annotations

import json
import tempfile
import threading
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from jaxport import __version__
from jaxport.archive import extract_archive
from jaxport.errors import JaxportError, ReferenceFailed, ReferenceMismatch, TargetError, first_line
from jaxport.limits import resource_error
from jaxport.options import ALL_TARGETS, ConvertOptions
from jaxport.program import Program
from jaxport.samples import Samples, read, resolve
from jaxport.targets import TARGETS, BuildContext, Case, Verdict
from jaxport.timings import Timings
from jaxport.verify.checks import check_goldens, nonfinite_weights, reference_warnings
from jaxport.verify.compare import Parity
from jaxport.verify.inputs import feed, make_inputs

ProgressFn = Callable[[str, float, str], None]
SamplesArg = Samples | Mapping[str, np.ndarray] | str | Path | None
REPORT_NAME = "report.json"


def _no_progress(stage: str, fraction: float, message: str) -> None:
    pass


def convert_archive(archive: Path, out_dir: Path, options: ConvertOptions,
                    progress: ProgressFn | None = None, samples: SamplesArg = None) -> dict:
    """Convert a model archive into `out_dir`; return (and write) the report.

    `samples` (a path or arrays) replaces the archive's own samples.npz. Raises `JaxportError`
    when the input itself is bad (archive, manifest, models, shapes, samples) and
    `MissingExtra` when a requested target's optional part is not installed; target failures
    are recorded in the report instead.
    """
    options.require_installed()
    progress = progress or _no_progress
    timings = Timings()
    with tempfile.TemporaryDirectory(prefix="jaxport-src-") as tmp:
        progress("load", 0.0, f"checking {Path(archive).name}")
        with timings.stage("extract"):
            source = extract_archive(Path(archive), Path(tmp))
        with timings.stage("import"):  # keras and jax: after the cheap checks; ~0 when warm
            from jaxport.compose import load_program
            from jaxport.keras_models import import_keras

            import_keras()

        progress("load", 0.05, f"loading {len(source.models)} model(s)")
        program = load_program(source, trusted=options.trusted, timings=timings)
        if samples is None:
            samples = read(source.samples)
    return convert_program(program, out_dir, options, progress, samples, timings)


def convert_program(program: Program, out_dir: Path, options: ConvertOptions,
                    progress: ProgressFn | None = None, samples: SamplesArg = None,
                    timings: Timings | None = None) -> dict:
    """Check, build, verify and report every requested target of `program` into `out_dir`.

    `samples`: a `samples.npz` path, its arrays, or resolved `Samples`. `timings` holds the
    stages already done (`extract`, `load`, `compose`); this adds `reference` and each target's
    stages (`jaxport.timings`), reported as `report["timings"]` beside the per-target `seconds`.
    """
    options.require_installed()
    progress = progress or _no_progress
    timings = timings or Timings()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    samples = _resolve_samples(samples, program)
    feeds = {name: feed(f, samples) for name, f in program.functions.items()}
    report: dict = {
        "jaxport_version": __version__,
        "functions": program.signature_json(),
        "inputs": {name: f.to_json() for name, f in feeds.items()},
        "warnings": [w for f in feeds.values() for w in f.warnings],
        "targets": {},
        "timings": {},
    }
    report["warnings"] += [f"weight {w} holds NaN or Inf" for w in nonfinite_weights(program)]
    requested = [t for t in ALL_TARGETS if t in options.targets]
    with timings.stage("reference"):
        mismatch = _check_goldens(program, samples, options, report, progress)
        if mismatch is None:
            progress("trace", 0.1, "computing reference outputs in JAX")
            cases = reference_cases(program, options, samples)
            report["warnings"] += reference_warnings(program, cases, options.atol)
    with tempfile.TemporaryDirectory(prefix="jaxport-work-") as tmp:
        if mismatch is None:
            ctx = BuildContext(program, out_dir, Path(tmp), options, cases, samples, timings)
        for i, target in enumerate(requested):
            span = (0.2 + 0.8 * i / len(requested), 0.8 / len(requested))
            report["targets"][target] = (_failed(mismatch, "reference") if mismatch is not None
                                         else _run_target(target, ctx, progress, span))
            result = report["targets"][target]
            report["warnings"] += [f"{target}: {w}" for w in result.get("warnings", [])]
            report["warnings"] += result.get("quantization", {}).get("warnings", [])
    for target in ALL_TARGETS:
        if target not in requested:
            report["targets"][target] = {"status": "skipped", "error": None,
                                         "reason": "not requested"}
    progress("done", 1.0, "finished")
    report["timings"] = timings.to_json()
    (out_dir / REPORT_NAME).write_text(json.dumps(report, indent=2, default=_json_default))
    return report


def _resolve_samples(samples: SamplesArg, program: Program) -> Samples:
    if isinstance(samples, Samples):
        return samples
    if isinstance(samples, (str, Path)):
        samples = read(Path(samples))
    return resolve(samples or {}, program)


def _check_goldens(program: Program, samples: Samples, options: ConvertOptions, report: dict,
                   progress: ProgressFn) -> ReferenceMismatch | None:
    """Record the goldens check in `report["reference"]`; the error when it fails."""
    if not samples.expected:
        return None
    progress("trace", 0.05, "checking the JAX function against samples.npz's expected outputs")
    try:
        results = check_goldens(program, samples, options.atol, options.rtol, options.tolerance)
    except TargetError as exc:  # a golden of another shape than the output
        raise ReferenceMismatch(f"samples.npz: {exc}", "compute the expected outputs with the "
                                "same model and inputs") from None
    except Exception as exc:  # noqa: BLE001 - the user's function failed on the sample inputs
        raise ReferenceFailed(f"the JAX function fails on samples.npz's inputs: "
                              f"{type(exc).__name__}: {first_line(exc)}",
                              "check the sample inputs against the declared inputs") from None
    report["reference"] = {name: parity.to_json() for name, parity in results.items()}
    failed = [p for p in results.values() if not p.passed]
    if not failed:
        return None
    return ReferenceMismatch(
        f"the composed JAX function does not reproduce samples.npz's expected outputs: "
        f"{failed[0].failure()}",
        "the manifest computes another function than the one the goldens came from: check the "
        "order of `args` (positional args follow model.inputs; the table form binds by name), "
        "the bound outputs, and that Keras and keras_hub match the versions that made the goldens")


def _failed(exc: JaxportError, stage: str) -> dict:
    return {"status": "failed", "path": None, "bytes": None, "seconds": None,
            "verify_seconds": None, "parity": None,
            "error": {"message": str(exc), "stage": stage, "hint": exc.hint, "code": exc.code}}


def _json_default(value: object) -> object:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def reference_cases(program: Program, options: ConvertOptions, samples: Samples) -> list[Case]:
    """The verification cases: each function at each batch size, with JAX's outputs.

    Raises `ReferenceFailed` when JAX itself cannot run the function on the inputs, or does not
    finish within `options.reference_timeout` seconds.
    """
    cases = []
    for name, function in program.functions.items():
        for run, batch in enumerate(options.batch_sizes):
            inputs = make_inputs(function, batch, run, samples, options.seed)
            shapes = ", ".join(f"{k}={list(v.shape)}" for k, v in inputs.items())
            try:
                expected = _run_bounded(lambda: function(program.params, inputs), options.reference_timeout)
            except TimeoutError:
                raise ReferenceFailed(
                    f"function {name!r} does not finish in JAX within {options.reference_timeout:g} s on "
                    f"verification inputs ({shapes}); a while_loop whose condition stays true on them?",
                    "give real inputs (samples.npz, or samples= in jaxport.export) on which it "
                    "terminates, or state input ranges") from None
            except Exception as exc:  # noqa: BLE001 - the user's function failed on these inputs
                raise ReferenceFailed(
                    f"function {name!r} fails in JAX on verification inputs ({shapes}): "
                    f"{type(exc).__name__}: {first_line(exc)}",
                    "give real inputs in samples.npz, or state input ranges") from None
            cases.append(Case(name, batch, inputs, expected))
    return cases


def _run_bounded(fn: Callable[[], Any], timeout: float) -> Any:
    """`fn()`, or `TimeoutError` after `timeout` seconds. XLA's CPU runtime runs the program in
    the calling thread and cannot be interrupted, so `fn` runs in a daemon thread that is left
    behind (still computing until the process exits) when it does not finish."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=target, name="jaxport-reference", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(timeout)
    if "error" in result:
        raise result["error"]
    return result["value"]


def _run_target(target: str, ctx: BuildContext, progress: ProgressFn,
                span: tuple[float, float]) -> dict:
    start, width = span
    entry = TARGETS[target]
    result: dict = {"status": "failed", "path": None, "bytes": None, "seconds": None,
                    "verify_seconds": None, "parity": None, "error": None}
    stage = target
    try:
        progress(target, start, f"building {target}")
        with ctx.timings.stage(f"{target}.build"):
            path, fields = entry.build(ctx)
        result["seconds"] = ctx.timings.to_json()[f"{target}.build"]
        result.update(fields)
        result["path"] = str(path.relative_to(ctx.out_dir))
        result["bytes"] = _size(path)
        stage = "verify"
        progress(target, start + width / 2, f"verifying {target} in its runtime")
        with ctx.timings.stage(f"{target}.verify"):
            verdict = entry.verify(ctx, path)
        if isinstance(verdict, Parity):
            verdict = Verdict(verdict)
        result["verify_seconds"] = ctx.timings.to_json()[f"{target}.verify"]
        result["parity"] = verdict.parity.to_json()
        result.update(verdict.fields)
        if verdict.warnings:
            result["warnings"] = verdict.warnings
        if not verdict.parity.passed:
            raise TargetError(f"parity failed: {verdict.parity.failure()}",
                              "the artifact computes something different from JAX; report this "
                              "model (the report's parity.outputs shows every output)",
                              stage="verify")
        if verdict.failure is not None:
            raise verdict.failure
        if entry.quantization(ctx.options):
            stage = "quantize"
            progress(target, start + 3 * width / 4, f"quantizing {target} and measuring it")
            with ctx.timings.stage(f"{target}.quantize"):
                result["quantization"] = entry.quantize(ctx, path)
            _check_gate(result["quantization"])
        result["status"] = "ok"
    except Exception as exc:  # noqa: BLE001 - one target's failure must not stop the others
        named = exc if isinstance(exc, JaxportError) else resource_error(exc)
        if named is not None:
            result["error"] = {"message": str(named), "stage": getattr(named, "stage", "") or stage,
                               "hint": named.hint, "code": named.code}
        else:
            traceback.print_exc()
            result["error"] = {"message": f"internal error: {type(exc).__name__}: {exc}"[:500],
                               "stage": stage, "hint": "this is a jaxport bug; please report it",
                               "code": "internal"}
    progress(target, start + width, f"{target}: {result['status']}")
    return result


def _check_gate(quantization: dict) -> None:
    """Raise `TargetError` (stage `quantize`) when the quantized artifact is below the gate."""
    failures = quantization["gate"]["failures"]
    if not failures:
        return
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    mode = quantization["mode"]
    raise TargetError(
        f"the {mode} artifact {quantization['path']} falls below the accuracy gate: "
        f"{failures[0]}{more}",
        "the float artifact is fine; for a more accurate quantized one use int8-weight-only or "
        "int8-dynamic (TF.js: uint16 or float16), give samples.npz rows of real inputs (static "
        "int8 calibrates on them), or lower --min-sqnr / --min-top1 if this accuracy is enough",
        stage="quantize")


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
