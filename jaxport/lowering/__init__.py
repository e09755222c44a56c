"""The lowering: a JAX program's jaxpr -> plain TensorFlow ops (for TF.js and a fast TFLite).

`lower_program(program)` returns a `LoweredProgram` (`.module`, `.signatures`, `.save(path)`);
`RULES` is the primitive -> rule table, `coverage_table()` renders it as markdown.
"""

from jaxport.lowering import control, conv, dot, elementwise, indexing, linalg, reductions, shapes  # noqa: F401  (register rules)
from jaxport.lowering.coverage import coverage_table
from jaxport.lowering.lower import LoweredProgram, lower_program
from jaxport.lowering.registry import REFUSALS, RULES, register

__all__ = ["REFUSALS", "RULES", "LoweredProgram", "coverage_table", "lower_program", "register"]
