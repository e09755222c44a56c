"""`jaxport` command line: `convert` here; `up`, `serve`, `worker`, `submit` from `service.commands`.

Exit codes: 0 every requested target ok; 1 some target failed (see report.json); 2 bad input
(a one-line `error:` plus a `hint:`, never a traceback).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path
from typing import Any

from jaxport.errors import JaxportError
from jaxport.options import (ALL_TARGETS, TFJS_QUANTIZATIONS, TFLITE_QUANTIZATIONS,
                             TOLERANCE_RULES, ConvertOptions)
from jaxport.compile_cache import enable_from_env
from jaxport.timings import Timings, summary_line


class Progress:
    """Progress on stderr: a redrawn bar on a terminal, one line per stage change otherwise."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = time.monotonic()
        self.last = ""

    def __call__(self, stage: str, fraction: float, message: str) -> None:
        elapsed = time.monotonic() - self.start
        if self.tty:
            filled = int(30 * fraction)
            bar = "#" * filled + "-" * (30 - filled)
            self.stream.write(f"\r[{bar}] {fraction:4.0%} {elapsed:6.1f}s {message[:60]:<60}")
            if stage == "done":
                self.stream.write("\n")
        elif message != self.last:
            self.stream.write(f"[{fraction:4.0%} {elapsed:6.1f}s] {stage}: {message}\n")
        self.last = message
        self.stream.flush()


def _trusted_default() -> bool:
    """Trusted mode is on in the local CLI unless JAXPORT_ALLOW_TRUSTED_CODE=0 says otherwise."""
    return os.environ.get("JAXPORT_ALLOW_TRUSTED_CODE", "1").strip() not in ("0", "false", "no")


_TOLERANCES = ("atol", "rtol", "quantized_atol", "quantized_rtol")


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert an archive (or a JAX function) and verify it")
    p.add_argument("archive", nargs="?", type=Path, help=".keras, .zip or .tar.gz")
    p.add_argument("-o", "--out", type=Path, required=True, help="output directory")
    p.add_argument("--targets", default=",".join(ALL_TARGETS),
                   help=f"comma-separated subset of {','.join(ALL_TARGETS)}")
    p.add_argument("--quantize", choices=TFLITE_QUANTIZATIONS, help="TFLite quantization")
    p.add_argument("--tfjs-quantize", choices=TFJS_QUANTIZATIONS, help="TF.js weight quantization")
    for name in _TOLERANCES:
        p.add_argument("--" + name.replace("_", "-"), type=float,
                       help=f"parity tolerance (default {getattr(ConvertOptions(), name)})")
    p.add_argument("--tolerance", choices=TOLERANCE_RULES,
                   help="parity rule: scale (max|got-want| <= atol + rtol*max|want|, the default) "
                        "or numpy's elementwise allclose")
    p.add_argument("--samples", type=Path,
                   help="a samples.npz of real inputs and expected outputs (made with "
                        "jaxport.samples.save); replaces the archive's own")
    p.add_argument("--safe", action="store_true",
                   help="refuse user Python code (Lambda layers); trusted mode is the CLI default")
    p.add_argument("--function", help="a JAX function as path/to/module.py:name (fn(params, *inputs))")
    p.add_argument("--params", type=Path, help="params .npz for --function (a flat dict of arrays)")
    p.add_argument("--input", action="append", default=[], metavar="NAME=SPEC",
                   help="an input of --function, e.g. 'xs=f32[b,2]'; repeat in call order")
    p.set_defaults(run=_convert)


def _convert(args: argparse.Namespace) -> int:
    tolerances = {n: getattr(args, n) for n in (*_TOLERANCES, "tolerance")
                  if getattr(args, n) is not None}
    options = ConvertOptions(
        targets=[t.strip() for t in args.targets.split(",") if t.strip()],
        quantize=args.quantize, tfjs_quantize=args.tfjs_quantize,
        trusted=_trusted_default() and not args.safe, **tolerances)
    progress = Progress()
    enable_from_env()  # what this run compiles, the next one reuses
    if args.function:
        report = _convert_function(args, options, progress)
    elif args.archive:
        from jaxport.pipeline import convert_archive

        if not args.archive.exists():
            raise JaxportError(f"{args.archive}: no such file")
        report = convert_archive(args.archive, args.out, options, progress, _samples_path(args))
    else:
        raise JaxportError("nothing to convert", "give an ARCHIVE, or --function with --params "
                           "and --input")
    return summarize(report, args.out)


def _convert_function(args: argparse.Namespace, options: ConvertOptions, progress: Progress) -> dict:
    from jaxport.compose import load_function_program
    from jaxport.pipeline import convert_program
    from jaxport.user_code import load_function, load_params

    if not options.trusted:
        raise JaxportError("--function runs your Python code, and trusted mode is off",
                           "unset JAXPORT_ALLOW_TRUSTED_CODE=0 and drop --safe")
    if not args.input:
        raise JaxportError("--function needs at least one --input NAME=SPEC",
                           "e.g. --input 'xs=f32[b,2]'")
    inputs = {}
    for item in args.input:
        name, sep, spec = item.partition("=")
        if not sep or not name.strip():
            raise JaxportError(f"--input {item!r} is not NAME=SPEC", "e.g. --input 'xs=f32[b,2]'")
        inputs[name.strip()] = spec.strip()
    fn = load_function(args.function)
    params = load_params(args.params) if args.params else {}
    progress("trace", 0.05, f"tracing {args.function}")
    timings = Timings()
    with timings.stage("compose"):
        program = load_function_program(fn, params, inputs)
    return convert_program(program, args.out, options, progress, _samples_path(args), timings)


def _samples_path(args: argparse.Namespace) -> Path | None:
    if args.samples is not None and not args.samples.is_file():
        raise JaxportError(f"--samples {args.samples}: no such file",
                           "make one with jaxport.samples.save(path, inputs=..., expected=...)")
    return args.samples


def summarize(report: dict, where: Path | str, stream: Any = None) -> int:
    """Print the per-target table, the goldens check, the warnings, the time per stage and where the report is
    (`where`: the output directory, or a URL); return the CLI exit code."""
    stream = stream or sys.stdout
    failed = []
    for function, parity in report.get("reference", {}).items():
        state = "matches" if parity["passed"] else "DOES NOT match"
        print(f"reference   {function}: the JAX function {state} samples.npz's expected outputs "
              f"(max err ÷ scale {_fmt(parity['max_rel_err'])})", file=stream)
    for name, result in report["targets"].items():
        if result["status"] == "skipped":
            continue
        if result["status"] == "ok":
            parity = result["parity"]
            source = f", {result['source']}" if result.get("source") else ""
            print(f"{name:<11} ok      {result['path']}  ({result['bytes']} bytes{source}; max err "
                  f"÷ scale {_fmt(parity['max_rel_err'])}, max abs err "
                  f"{parity['max_abs_err']:.2g} at batch {parity['batch_sizes']})", file=stream)
        else:
            failed.append(name)
            err = result["error"] or {}
            print(f"{name:<11} FAILED  [{err.get('stage')}] {err.get('message')}", file=stream)
            if err.get("hint"):
                print(f"{'':<20}hint: {err['hint']}", file=stream)
    for warning in report.get("warnings", []):
        print(f"warning: {warning}", file=stream)
    if report.get("timings"):
        print(summary_line(report["timings"]), file=stream)
    print(f"report: {where if isinstance(where, str) else where / 'report.json'}", file=stream)
    return 1 if failed else 0


def _fmt(value: float | None) -> str:
    return "inf" if value is None else f"{value:.2g}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxport",
        description="Convert Keras 3 on JAX models and JAX functions into verified SavedModel, "
                    "TFLite and TF.js artifacts, locally or as a service.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_convert(sub)
    if importlib.util.find_spec("service") and importlib.util.find_spec("service.commands"):
        from service.commands import register

        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except JaxportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
