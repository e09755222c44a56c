"""`jaxport` command line: `convert` and `inspect` here; more commands from plugins.

A plugin is an entry point in the group `jaxport.commands` naming a `register(subparsers)`
function that adds argparse subcommands (each sets `run=fn(args) -> exit code`). The service
(`service.commands`) registers `up`, `serve`, `worker`, `submit`, `jobs`, `status`, `download`
and `cancel` that way, so the engine never imports the service. A plugin that fails to load
is skipped; naming one of its commands then gives a one-line error with the reason, and a
service command without the `service` extra names the extra to install.

Exit codes: 0 every requested target ok; 1 some target failed (see report.json); 2 bad input
(a one-line `error:` plus a `hint:`, never a traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import metadata
from pathlib import Path

from jaxport import __version__
from jaxport.console import Progress, summarize
from jaxport.errors import JaxportError
from jaxport.extras import check
from jaxport.limits import DEFAULT_MAX_FILE_MB, apply_limits, resource_error
from jaxport.options import (ALL_TARGETS, DEFAULT_MIN_SQNR, DEFAULT_ONNX_OPSET, DEFAULT_TARGETS,
                             TFJS_QUANTIZATIONS, TFLITE_QUANTIZATIONS, TOLERANCE_RULES,
                             ConvertOptions)
from jaxport.compile_cache import enable_from_env
from jaxport.timings import Timings


def _trusted_default() -> bool:
    """Trusted mode is on in the local CLI unless JAXPORT_ALLOW_TRUSTED_CODE=0 says otherwise."""
    return os.environ.get("JAXPORT_ALLOW_TRUSTED_CODE", "1").strip() not in ("0", "false", "no")


_TOLERANCES = ("atol", "rtol")


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert an archive (or a JAX function) and verify it")
    p.add_argument("archive", nargs="?", type=Path, help=".keras, .zip or .tar.gz")
    p.add_argument("-o", "--out", type=Path, required=True, help="output directory")
    p.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                   help=f"comma-separated subset of {','.join(ALL_TARGETS)} "
                        f"(default {','.join(DEFAULT_TARGETS)})")
    p.add_argument("--onnx-opset", type=int,
                   help=f"ONNX opset of the onnx target (default {DEFAULT_ONNX_OPSET})")
    p.add_argument("--quantize", choices=TFLITE_QUANTIZATIONS,
                   help="also write a quantized TFLite model, model.<mode>.tflite (int8 = static, "
                        "calibrated on samples.npz)")
    p.add_argument("--no-litertjs", dest="litertjs", action="store_false", default=None,
                   help="check the TFLite model in LiteRT only, not also in LiteRT.js in headless "
                        "Chromium (saves a browser start)")
    p.add_argument("--tfjs-quantize", choices=TFJS_QUANTIZATIONS,
                   help="also write a TF.js model with quantized weights, tfjs-<mode>/")
    p.add_argument("--min-sqnr", type=float, metavar="DB",
                   help="accuracy gate: fail a quantized artifact whose SQNR against JAX is below "
                        "DB on any output (default per mode: " + ", ".join(
                            f"{m} {v:g}" for m, v in DEFAULT_MIN_SQNR.items()) + ")")
    p.add_argument("--min-top1", type=float, metavar="FRACTION",
                   help="accuracy gate: fail a quantized artifact whose top-1 agreement with JAX "
                        "on class-score outputs is below FRACTION (default: not gated)")
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
    p.add_argument("--max-memory-mb", type=int,
                   help="memory budget of the conversion: an allocation past it (plus 16 GB of "
                        "address-space headroom) fails at once with a clear error (default: none)")
    p.add_argument("--max-file-mb", type=int, default=DEFAULT_MAX_FILE_MB,
                   help=f"largest file the conversion may write (default {DEFAULT_MAX_FILE_MB})")
    p.set_defaults(run=_convert)



def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="what an archive holds and what each target can take, "
                                       "in seconds and without converting")
    p.add_argument("archive", type=Path, help=".keras, .zip or .tar.gz")
    p.add_argument("--function", help="inspect only this function of the archive")
    p.add_argument("--json", action="store_true", help="print the inspection as JSON")
    p.add_argument("--safe", action="store_true",
                   help="refuse user Python code (Lambda layers); trusted mode is the CLI default")
    p.set_defaults(run=_inspect)


def _inspect(args: argparse.Namespace) -> int:
    """Exit 0 when every default target can take the archive, 1 when one is blocked, 2 on bad
    input (the verdict covers every target, onnx included)."""
    import json

    from jaxport.inspection import inspect_file, render

    if not args.archive.exists():
        raise JaxportError(f"{args.archive}: no such file")
    report = inspect_file(args.archive, args.function, trusted=_trusted_default() and not args.safe)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        render(report)
    return 0 if all(report["verdict"][t]["ok"] for t in DEFAULT_TARGETS) else 1


def _convert(args: argparse.Namespace) -> int:
    if (args.max_memory_mb is not None and args.max_memory_mb <= 0) or args.max_file_mb <= 0:
        raise JaxportError("--max-memory-mb and --max-file-mb must be positive")
    apply_limits(args.max_memory_mb, args.max_file_mb * 2**20)
    given = {n: getattr(args, n) for n in (*_TOLERANCES, "tolerance", "onnx_opset", "min_sqnr",
                                           "min_top1", "litertjs")
             if getattr(args, n) is not None}
    options = ConvertOptions(
        targets=[t.strip() for t in args.targets.split(",") if t.strip()],
        quantize=args.quantize, tfjs_quantize=args.tfjs_quantize,
        trusted=_trusted_default() and not args.safe, **given)
    options.require_installed()
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
    return summarize(report, str(args.out / "report.json"))


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


PLUGIN_GROUP = "jaxport.commands"
SERVICE_COMMANDS = ("up", "serve", "worker", "submit", "jobs", "status", "download", "cancel")
SERVICE_HINT = (f"{', '.join(f'`{c}`' for c in SERVICE_COMMANDS)} come with the jaxport service: "
                "pip install 'jaxport[service]' and run the installed `jaxport`")


def _load_plugins(sub: argparse._SubParsersAction) -> list[str]:
    """Register every `jaxport.commands` entry point; the reasons of those that fail."""
    failures, seen = [], set()
    for entry in metadata.entry_points(group=PLUGIN_GROUP):
        if entry.value in seen:  # the same distribution found twice on sys.path
            continue
        seen.add(entry.value)
        try:
            entry.load()(sub)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break `convert`
            failures.append(f"{entry.name} ({entry.value}): {type(exc).__name__}: {exc}")
    return failures


def build_parser() -> argparse.ArgumentParser:
    """The full parser: the engine's commands and every plugin's. `parser.plugin_failures`
    lists plugins that failed to load."""
    parser = argparse.ArgumentParser(
        prog="jaxport",
        description="Convert Keras 3 on JAX models and JAX functions into verified SavedModel, "
                    "TFLite and TF.js artifacts, locally or as a service.")
    parser.add_argument("--version", action="version", version=f"jaxport {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_convert(sub)
    _add_inspect(sub)
    parser.plugin_failures = _load_plugins(sub)
    parser.known_commands = set(sub.choices)
    return parser


def _unknown_command(parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    """The first positional word of `argv` when it names no command, else None."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first is not None and first not in parser.known_commands else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    unknown = _unknown_command(parser, argv)
    absent = check("service", f"`jaxport {unknown}`") if unknown in SERVICE_COMMANDS else None
    if absent is not None:
        print(f"error: {absent}", file=sys.stderr)
        print(f"hint: {absent.hint}", file=sys.stderr)
        return 2
    if unknown is not None:
        why = "; ".join(parser.plugin_failures) or "no service commands are installed"
        print(f"error: no command {unknown!r} ({why})", file=sys.stderr)
        print(f"hint: {SERVICE_HINT}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (JaxportError, MemoryError, OSError) as exc:
        named = exc if isinstance(exc, JaxportError) else resource_error(exc)
        if named is None:
            raise
        print(f"error: {named}", file=sys.stderr)
        if named.hint:
            print(f"hint: {named.hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
