"""The library entry point: export any JAX function with a params pytree."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from jaxport.options import DEFAULT_TARGETS, ConvertOptions


def export(fn: Callable[..., Any], params: Any, *, inputs: dict[str, str], out_dir: str | Path,
           targets: list[str] | tuple[str, ...] = DEFAULT_TARGETS,
           name: str = "serving_default", progress: Callable[[str, float, str], None] | None = None,
           samples: Any = None, ranges: dict[str, tuple[float, float]] | None = None,
           **options: Any) -> dict:
    """Export `fn(params, *inputs)` to `out_dir`; return the report (also in `report.json`).

    `inputs` maps input names, in call order, to specs such as `"f32[b,2]"` (symbolic dims are
    names). `fn` may return an array, a tuple of arrays or a dict. `samples` is a samples.npz
    path or a dict of arrays (keys as in `jaxport.samples`: real inputs, and `expected/<output>`
    goldens checked first); `ranges` maps input names to `(low, high)`, the values generated
    inputs are drawn from. Other keyword options are `ConvertOptions` fields (quantize,
    tfjs_quantize, min_sqnr, min_top1, atol, rtol, tolerance, batch_sizes, ...); a quantized
    artifact below `min_sqnr`/`min_top1` fails its target at stage `quantize`.
    Raises `JaxportError` for bad specs or a function that does not trace (`MissingExtra`, at
    once, when a requested target's optional part is not installed: `jaxport.extras`); a
    target that fails is recorded in the report with `status: "failed"`.
    """
    from jaxport.compose import load_function_program
    from jaxport.pipeline import convert_program

    from jaxport.timings import Timings

    opts = ConvertOptions(targets=list(targets), trusted=True, **options)
    opts.require_installed()
    timings = Timings()
    with timings.stage("compose"):
        program = load_function_program(fn, params, inputs, name=name, ranges=ranges)
    return convert_program(program, Path(out_dir), opts, progress, samples, timings)
