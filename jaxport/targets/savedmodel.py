"""SavedModel through orbax-export: the XLA-faithful artifact (one `XlaCallModule` per function).

Contract: `export_savedmodel(program, out_dir)` writes a SavedModel with one serving signature
per program function, keyed by the function's name; signature inputs are named as the
function's inputs with `None` for every symbolic dim; outputs are a dict keyed by the
function's output names; params are variables. When TensorFlow cannot run the orbax
SavedModel, the target ships the lowered plain-TF one instead, verified the same way, and says
so (`source`, `source_reason`); see `_verify`.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any, Callable

from jaxport.errors import LoweringError, TargetError
from jaxport.program import Function, Program
from jaxport.targets.base import BuildContext, Target, Verdict, register
from jaxport.verify.compare import Parity


def _poly_shape(function: Function) -> dict[str, str]:
    return {s.name: "(" + ", ".join(str(d) for d in s.shape) + ")" for s in function.inputs}


def _method(function: Function) -> Callable[[Any, dict], dict]:
    names = [s.name for s in function.inputs]

    def apply(params: Any, inputs: dict) -> dict:
        return function.fn(params, *(inputs[n] for n in names))

    return apply


def export_savedmodel(program: Program, out_dir: Path) -> Path:
    """Write the orbax SavedModel of `program` to `out_dir` and return it (its StableHLO of a
    version the installed TensorFlow reads: `jaxport.stablehlo`)."""
    import tensorflow as tf
    from orbax.export import ExportManager, JaxModule, ServingConfig

    from jaxport.stablehlo import for_tensorflow

    with for_tensorflow():  # JaxModule serializes each function, save() converts them
        functions = program.functions
        module = JaxModule(
            program.params,
            {name: _method(f) for name, f in functions.items()},
            input_polymorphic_shape={name: _poly_shape(f) for name, f in functions.items()},
            jax2tf_kwargs={
                name: {"polymorphic_constraints": tuple(f.constraints)} if f.constraints else {}
                for name, f in functions.items()
            },
        )
        configs = [
            ServingConfig(
                signature_key=name,
                method_key=name,
                input_signature=[{
                    s.name: tf.TensorSpec(s.tf_shape, tf.as_dtype(s.dtype), name=s.name)
                    for s in f.inputs
                }],
            )
            for name, f in functions.items()
        ]
        try:
            ExportManager(module, configs).save(str(out_dir))
        except ValueError as exc:
            kernel = re.search(r"custom_call @(\w+)", str(exc))
            if not str(exc).startswith("Cannot serialize code with custom calls") or kernel is None:
                raise
            raise TargetError(
                f"the XLA program calls the CPU kernel {kernel.group(1)} (linear algebra), which "
                "jax.export cannot serialize: it has no compatibility guarantee",
                "compute that decomposition outside the exported function (ahead of time on the "
                "weights, passing its factors as params or inputs)", stage="orbax") from None
    return Path(out_dir)


def _build(ctx: BuildContext) -> tuple[Path, dict]:
    path = export_savedmodel(ctx.program, ctx.out_dir / "savedmodel")
    ctx._orbax = path  # the TFLite fallback reuses it
    return path, {}


def _parity(ctx: BuildContext, path: Path) -> Parity:
    from jaxport.verify.runtimes import SavedModelRunner

    runner = SavedModelRunner(path)
    return ctx.parity(lambda c: runner.run(c.function, c.inputs))


def _verify(ctx: BuildContext, path: Path) -> Parity | Verdict:
    """Parity of the orbax SavedModel in TF. When TF cannot run it (an `XlaCallModule` holding
    StableHLO this TF does not know, such as the `vhlo.composite_v2` of `lax.top_k`), the
    lowered plain-TF SavedModel of the same program takes its place at `path` when it lowers,
    and is verified instead: `source` "lowered" and `source_reason` in report.json say so (the
    orbax one moves to the work dir, where the TFLite fallback still finds it)."""
    try:
        return _parity(ctx, path)
    except TargetError as orbax_exc:
        reason = f"orbax SavedModel: {orbax_exc}"
        try:
            lowered = ctx.lowered_savedmodel()
        except LoweringError as exc:
            raise TargetError(f"{orbax_exc}; the lowered graph, the fallback: {exc}", orbax_exc.hint,
                              stage="verify") from None
    moved = ctx.work_dir / "orbax"
    shutil.rmtree(moved, ignore_errors=True)
    shutil.move(str(path), moved)
    ctx._orbax = moved
    shutil.copytree(lowered, path)
    return Verdict(_parity(ctx, path), fields={"source": "lowered", "source_reason": reason},
                   warnings=["TensorFlow cannot run the orbax SavedModel; the SavedModel is the "
                             "lowered plain-TF graph instead (" + reason + ")"])


register(Target("savedmodel", _build, _verify))
