"""The lowering: a JAX program's jaxpr -> plain TensorFlow ops (for TF.js and a fast TFLite).

`lower_program(program)` returns a `LoweredProgram` (`.module`, `.signatures`, `.save(path)`);
`RULES` is the primitive -> rule table, `coverage_table()` renders it as markdown.
"""

from jaxport.lowering import bitwise, control, conv, dot, elementwise, fft, indexing, linalg, reductions, shapes, special  # noqa: F401  (register rules)
from jaxport.lowering.coverage import coverage_table
from jaxport.lowering.lower import LoweredProgram, lower_program
from jaxport.lowering.registry import REFUSALS, RULES, register

fft.complex_operands()  # after every module registered its rules

__all__ = ["REFUSALS", "RULES", "LoweredProgram", "coverage_table", "lower_program", "register"]
