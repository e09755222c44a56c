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
import os
import pickle
import tempfile
import threading
import traceback
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from jaxport import __version__
from jaxport.archive import extract_archive
from jaxport.errors import JaxportError, ReferenceFailed, ReferenceMismatch, TargetError, first_line
from jaxport.limits import resource_error
from jaxport.options import ALL_TARGETS, ConvertOptions
from jaxport.parallel import Forked, SideProcessFailed, default_processes, fork_is_safe, split_targets
from jaxport.program import Program
from jaxport.samples import Samples, read, resolve
from jaxport.targets import TARGETS, BuildContext, Case, Verdict
from jaxport.timings import Timings
from jaxport.verify.checks import check_goldens, nonfinite_weights, reference_warnings
from jaxport.verify.compare import Parity
from jaxport.verify.inputs import feed, make_inputs

ProgressFn = Callable[[str, float, str], None]
ReferenceVia = Callable[[Callable[[], list[Case]]], list[Case]]
"""How a conversion gets its reference: called with the function that computes it here."""
SamplesArg = Samples | Mapping[str, np.ndarray] | str | Path | None
REPORT_NAME = "report.json"


def _no_progress(stage: str, fraction: float, message: str) -> None:
    pass


def convert_archive(archive: Path, out_dir: Path, options: ConvertOptions,
                    progress: ProgressFn | None = None, samples: SamplesArg = None,
                    processes: int | None = None) -> dict:
    """Convert a model archive into `out_dir`; return (and write) the report.

    `samples` (a path or arrays) replaces the archive's own samples.npz. `processes` (default
    `jaxport.parallel.default_processes()`): 2 converts the SavedModel/ONNX targets in a forked
    process beside the TFLite/TF.js ones, where this process can still fork safely
    (`jaxport.parallel`); `report["processes"]` says how many ran. Raises `JaxportError` when
    the input itself is bad (archive, manifest, models, shapes, samples) and `MissingExtra`
    when a requested target's optional part is not installed; target failures are recorded in
    the report instead.
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

            import_keras(hub=False)  # keras_hub when a model names it (load_keras_model)

        def convert(targets: list[str], out: Path, report: ProgressFn,
                    reference_via: ReferenceVia = _computed_here) -> dict:
            report("load", 0.05, f"loading {len(source.models)} model(s)")
            program = load_program(source, trusted=options.trusted, timings=timings)
            return convert_program(program, out, options.with_targets(targets), report,
                                   read(source.samples) if samples is None else samples, timings,
                                   reference_via)

        side_targets, main_targets = split_targets(
            [t for t in ALL_TARGETS if t in options.targets],
            default_processes() if processes is None else processes)
        if not side_targets or not fork_is_safe():
            report = convert(list(options.targets), Path(out_dir), progress)
            report["processes"] = 1
            return _write_report(report, Path(out_dir))
        side_out = Path(tmp) / "side-out"
        shared = _monotonic(progress, cap=0.95)  # both processes' progress; "done" after the merge

        def convert_side(send: Callable[[dict], None], receive: Callable[[], dict]) -> dict:
            convert(side_targets, side_out, lambda stage, fraction, message: send(
                {"stage": stage, "fraction": fraction, "message": message}),
                _computed_there(receive))
            return {}  # its report.json is read back

        side = Forked(convert_side, on_message=lambda e: shared(e["stage"], e["fraction"], e["message"]))
        try:
            report = convert(main_targets, Path(out_dir), shared,
                             _computed_for(side, Path(tmp) / "reference.pickle"))
            try:
                side.result()
                side_report = json.loads((side_out / REPORT_NAME).read_text())
            except SideProcessFailed as exc:  # its targets fail; this process's stand
                side_report = {"targets": {t: _failed(exc, t) for t in side_targets},
                               "warnings": [], "timings": {}}
        finally:
            side.kill()
        report = _merge(report, side_report, side_targets, side_out, Path(out_dir))
        progress("done", 1.0, "finished")
        return report


def _computed_here(compute: Callable[[], list[Case]]) -> list[Case]:
    return compute()


def _computed_for(side: Forked, path: Path) -> ReferenceVia:
    """Compute the reference here and hand it to the forked process (a pickle at `path`, which
    only that process reads), or tell it why there is none."""
    def via(compute: Callable[[], list[Case]]) -> list[Case]:
        try:
            cases = compute()
        except JaxportError as exc:
            side.tell({"failed": {"message": str(exc), "hint": exc.hint}})
            raise
        except BaseException:
            side.tell({"failed": {"message": "the reference could not be computed",
                                  "hint": "the other conversion process failed; see its error"}})
            raise
        path.write_bytes(pickle.dumps(cases))
        side.tell({"reference": str(path)})
        return cases

    return via


def _computed_there(receive: Callable[[], dict]) -> ReferenceVia:
    """In the forked process: wait for the reference the other process computes."""
    def via(compute: Callable[[], list[Case]]) -> list[Case]:
        message = receive()
        if "reference" not in message:
            raise ReferenceFailed(message["failed"]["message"], message["failed"]["hint"])
        return pickle.loads(Path(message["reference"]).read_bytes())

    return via


def _merge(report: dict, side: dict, side_targets: list[str], side_out: Path, out_dir: Path) -> dict:
    """`report` with the side process's targets, artifacts, warnings and stages; rewritten."""
    for target in side_targets:
        result = report["targets"][target] = side["targets"][target]
        if result.get("path"):
            os.replace(side_out / result["path"], out_dir / result["path"])
    if side_out.is_dir():
        for extra in sorted(set(side_out.iterdir()) - {side_out / REPORT_NAME}):
            os.replace(extra, out_dir / extra.name)  # what a target wrote beside its artifact
    report["warnings"] += [w for w in side["warnings"] if w not in report["warnings"]]
    report["timings"] = {**report["timings"],
                         **{k: v for k, v in side["timings"].items() if k not in report["timings"]}}
    report["targets"] = {t: report["targets"][t] for t in ALL_TARGETS if t in report["targets"]}
    report["processes"] = 2
    return _write_report(report, out_dir)


def _write_report(report: dict, out_dir: Path) -> dict:
    """Write `report` as `out_dir`/report.json; return it."""
    (out_dir / REPORT_NAME).write_text(json.dumps(report, indent=2, default=_json_default))
    return report


def convert_program(program: Program, out_dir: Path, options: ConvertOptions,
                    progress: ProgressFn | None = None, samples: SamplesArg = None,
                    timings: Timings | None = None,
                    reference_via: ReferenceVia = _computed_here) -> dict:
    """Check, build, verify and report every requested target of `program` into `out_dir`.

    `samples`: a `samples.npz` path, its arrays, or resolved `Samples`. `timings` holds the
    stages already done (`extract`, `load`, `compose`); this adds `reference` and each target's
    stages (`jaxport.timings`), reported as `report["timings"]` beside the per-target `seconds`,
    and the wall time as `report["seconds"]`.

    Two cores' worth of work at most: the builds run one after another in the calling thread;
    the JAX reference, then each target's verification (and quantization), run in order in one
    thread beside them; runtime processes (a browser, Node) start in the background from the
    beginning (`Target.prepare`). `reference_via` gets the reference (by default, computes it;
    the two processes of `convert_archive` compute it once). Raises `ReferenceFailed` when JAX
    cannot compute the reference.
    """
    options.require_installed()
    progress = _monotonic(progress or _no_progress)
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
    if mismatch is not None:
        report["targets"] = {target: _failed(mismatch, "reference") for target in requested}
    else:
        results, cases = _run_targets(program, out_dir, options, samples, timings, requested,
                                      progress, reference_via)
        report["warnings"] += reference_warnings(program, cases, options.atol)
        report["targets"] = results
    for target in requested:
        result = report["targets"][target]
        report["warnings"] += [f"{target}: {w}" for w in result.get("warnings", [])]
        report["warnings"] += result.get("quantization", {}).get("warnings", [])
    for target in ALL_TARGETS:
        if target not in requested:
            report["targets"][target] = {"status": "skipped", "error": None,
                                         "reason": "not requested"}
    progress("done", 1.0, "finished")
    report["timings"] = timings.to_json()
    report["seconds"] = timings.wall()
    return _write_report(report, out_dir)


def _run_targets(program: Program, out_dir: Path, options: ConvertOptions, samples: Samples,
                 timings: Timings, requested: list[str], progress: ProgressFn,
                 reference_via: ReferenceVia) -> tuple[dict[str, dict], list[Case]]:
    """Build the targets here, and compute the reference then verify each built target in a
    second thread; return the results by target and the cases. Raises `ReferenceFailed`
    (without waiting for builds still to come) when the reference cannot be computed."""
    def compute_reference() -> list[Case]:
        progress("trace", 0.1, "computing reference outputs in JAX")
        with timings.stage("reference"):
            return reference_via(lambda: reference_cases(program, options, samples))

    with tempfile.TemporaryDirectory(prefix="jaxport-work-") as tmp, \
            ThreadPoolExecutor(1, thread_name_prefix="jaxport-check") as checker:
        reference = checker.submit(compute_reference)
        ctx = BuildContext(program, out_dir, Path(tmp), options, reference, samples, timings)
        checks: dict[str, Future] = {}
        try:
            for target in requested:
                if TARGETS[target].prepare is not None:
                    TARGETS[target].prepare(ctx)
            for i, target in enumerate(requested):
                if reference.done():
                    reference.result()  # raises ReferenceFailed: no point building more
                span = (0.2 + 0.8 * i / len(requested), 0.8 / len(requested))
                if TARGETS[target].exclusive:  # nothing in JAX beside its build
                    wait([reference, *checks.values()])
                built = _build_target(target, ctx, progress, span)
                checks[target] = checker.submit(_check_target, target, ctx, built, progress, span)
            cases = reference.result()
            return {target: check.result() for target, check in checks.items()}, cases
        finally:
            for check in checks.values():
                check.cancel()
            ctx.close()


def _monotonic(progress: ProgressFn, cap: float = 1.0) -> ProgressFn:
    """`progress`, called by one thread at a time, with the job's fraction never going back
    (a verification reports beside the next target's build) and never above `cap`; below 1,
    `done` is held back (the caller reports it when both processes are)."""
    lock = threading.Lock()
    high = [0.0]

    def report(stage: str, fraction: float, message: str) -> None:
        if stage == "done" and cap < 1.0:
            return
        with lock:
            high[0] = max(high[0], min(fraction, cap))
            progress(stage, high[0], message)
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


def _build_target(target: str, ctx: BuildContext, progress: ProgressFn,
                  span: tuple[float, float]) -> tuple[dict, Path | None]:
    """Build `target`: its report entry so far, and the artifact's path (None when it failed)."""
    start, _ = span
    result: dict = {"status": "failed", "path": None, "bytes": None, "seconds": None,
                    "verify_seconds": None, "parity": None, "error": None}
    try:
        progress(target, start, f"building {target}")
        with ctx.timings.stage(f"{target}.build"):
            path, fields = TARGETS[target].build(ctx)
        result["seconds"] = ctx.timings.to_json()[f"{target}.build"]
        result.update(fields)
        result["path"] = str(path.relative_to(ctx.out_dir))
        result["bytes"] = _size(path)
    except Exception as exc:  # noqa: BLE001 - one target's failure must not stop the others
        result["error"] = _error_entry(exc, target)
        progress(target, start, f"{target}: failed")
        return result, None
    return result, path


def _check_target(target: str, ctx: BuildContext, built: tuple[dict, Path | None],
                  progress: ProgressFn, span: tuple[float, float]) -> dict:
    """Verify a built target in its runtime (then quantize it when asked); its report entry."""
    result, path = built
    if path is None:
        return result
    start, width = span
    entry = TARGETS[target]
    stage = "verify"
    try:
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
        result["error"] = _error_entry(exc, stage)
    progress(target, start + width, f"{target}: {result['status']}")
    return result


def _error_entry(exc: Exception, stage: str) -> dict:
    """A target's `error` field: the named error (its own stage, else `stage`), or an internal
    error with the traceback printed."""
    named = exc if isinstance(exc, JaxportError) else resource_error(exc)
    if named is not None:
        return {"message": str(named), "stage": getattr(named, "stage", "") or stage,
                "hint": named.hint, "code": named.code}
    traceback.print_exc()
    return {"message": f"internal error: {type(exc).__name__}: {exc}"[:500],
            "stage": stage, "hint": "this is a jaxport bug; please report it", "code": "internal"}


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
