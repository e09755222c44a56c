"""Targets: one module per artifact format, each owning its build, its runtime check and its
report fields, registered in one table (`base.TARGETS`, the order of `options.ALL_TARGETS`).

Importing this package fills the table; the modules import TensorFlow and the converters only
inside their functions, so the import stays cheap.
"""

from jaxport.targets import onnx, savedmodel, tflite, tfjs  # noqa: F401  (each registers itself)
from jaxport.targets.base import TARGETS, BuildContext, Case, Target, Verdict

__all__ = ["TARGETS", "BuildContext", "Case", "Target", "Verdict"]
