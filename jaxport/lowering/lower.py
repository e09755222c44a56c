"""`lower_program`: a `Program` -> a `tf.Module` of plain TF ops, one signature per function."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import tensorflow as tf

from jaxport.errors import LoweringError
from jaxport.lowering.context import Lowerer, static_shape
from jaxport.program import Function, Program
from jaxport.shapes import trace


@dataclass
class LoweredProgram:
    """The lowered program: `module` holds the params as `tf.Variable`s and the functions;
    `signatures` maps function name -> concrete function (named inputs, dict of outputs)."""

    module: tf.Module
    signatures: dict[str, tf.types.experimental.ConcreteFunction]

    def save(self, path: str | Path) -> None:
        """Write a SavedModel with one serving signature per function, keyed by its name."""
        tf.saved_model.save(self.module, str(path), signatures=dict(self.signatures))


def lower_program(program: Program) -> LoweredProgram:
    """Lower every function of `program` to plain TF ops; raises `LoweringError` on the first
    primitive (or primitive form) without a rule, naming it and the user's code location."""
    leaves = jax.tree_util.tree_leaves(program.params)
    module = tf.Module()
    module.params = [
        tf.Variable(np.asarray(leaf), trainable=False, name=f"param_{i}") for i, leaf in enumerate(leaves)
    ]
    signatures = {name: _lower_function(module, fn, program.params) for name, fn in program.functions.items()}
    return LoweredProgram(module, signatures)


def _lower_function(module: tf.Module, function: Function, params: object) -> tf.types.experimental.ConcreteFunction:
    closed, out_shape = trace(function, params)  # the trace the output inference made
    out_leaves, out_tree = jax.tree_util.tree_flatten(out_shape)
    n_params = len(module.params)
    jaxpr = closed.jaxpr
    if len(jaxpr.invars) != n_params + len(function.inputs):
        raise LoweringError(
            f"function {function.name!r}: the traced jaxpr takes {len(jaxpr.invars)} arrays, "
            f"expected {n_params} params + {len(function.inputs)} inputs"
        )
    specs = [tf.TensorSpec(s.tf_shape, tf.as_dtype(s.dtype), name=s.name) for s in function.inputs]

    def run(**named: tf.Tensor) -> dict[str, tf.Tensor]:
        inputs = [named[s.name] for s in function.inputs]
        dim_env: dict[str, tf.Tensor] = {}
        for spec, x in zip(function.inputs, inputs):
            dyn = None
            for axis, d in enumerate(spec.shape):
                if isinstance(d, str) and d not in dim_env:
                    dyn = tf.shape(x) if dyn is None else dyn
                    dim_env[d] = dyn[axis]
        args = []
        for var, x in zip(jaxpr.invars[n_params:], inputs):
            want = tf.as_dtype(var.aval.dtype)
            args.append(tf.cast(x, want) if x.dtype != want else x)
        lowerer = Lowerer(dim_env)
        params_in = [tf.convert_to_tensor(v) for v in module.params]
        outs = lowerer.eval_jaxpr(jaxpr, closed.consts, params_in + args)
        results = []
        for val, aval in zip(outs, out_leaves):
            val = lowerer.full(val, aval)
            t = tf.convert_to_tensor(val, tf.as_dtype(aval.dtype))
            t = tf.identity(t)
            t.set_shape(static_shape(aval.shape))
            results.append(t)
        tree = jax.tree_util.tree_unflatten(out_tree, results)
        return {k: tree[k] for k in function.outputs}

    fn = tf.function(run, autograph=False)
    return fn.get_concrete_function(**{s.name: s for s in specs})
