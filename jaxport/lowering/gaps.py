"""What the runtimes lack: ops a rule lowers to that TF.js or LiteRT cannot run.

`RUNTIME_GAPS` is the table (`tests/lowering/test_rules.py` holds the strict xfails that
measure each one); `runtime_gaps(eqn)` names the gaps one equation hits, per target. A TF.js
gap blocks the tfjs target; a LiteRT gap sends the TFLite target to the orbax path. Importing
this module does not import TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


def _always(eqn: Any) -> bool:
    return True


def _integer_operands(eqn: Any) -> bool:
    return any(np.issubdtype(v.aval.dtype, np.integer) for v in eqn.invars
               if hasattr(v.aval, "dtype"))


def _wide_integer_operands(eqn: Any) -> bool:
    """Integers the bitwise rules do not take apart into bits (`bitwise.py`): int64, uint64."""
    return any(np.dtype(v.aval.dtype) in (np.dtype(np.int64), np.dtype(np.uint64))
               for v in eqn.invars if hasattr(v.aval, "dtype"))


def _to_float16(eqn: Any) -> bool:
    return np.dtype(eqn.params.get("new_dtype", np.float32)) == np.float16


@dataclass(frozen=True)
class RuntimeGap:
    """`target`'s runtime cannot run the lowering of `primitives` (when `applies(eqn)`)."""

    target: str
    primitives: frozenset[str]
    lacks: str
    applies: Callable[[Any], bool] = _always


_BITWISE = frozenset({"and", "or", "xor", "not", "shift_left", "shift_right_arithmetic",
                      "shift_right_logical", "population_count"})
RUNTIME_GAPS: tuple[RuntimeGap, ...] = (
    RuntimeGap("tfjs", frozenset({"nextafter"}), "TF.js has no NextAfter"),
    RuntimeGap("tfjs", frozenset({"bitcast_convert_type"}), "TF.js has no Bitcast"),
    RuntimeGap("tflite", frozenset({"nextafter"}), "LiteRT has no NextAfter builtin"),
    RuntimeGap("tfjs", _BITWISE, "TF.js has no bitwise ops or shifts (for 64-bit integers)",
               _wide_integer_operands),
    RuntimeGap("tflite", frozenset({"and", "or", "not", "shift_left", "population_count"}),
               "LiteRT has no BitwiseAnd/Or, Invert, LeftShift, PopulationCount (for 64-bit integers)",
               _wide_integer_operands),
    RuntimeGap("tfjs", frozenset({"convert_element_type"}),
               "TF.js has no float16 (a cast to float16 and back does not round)", _to_float16),
    RuntimeGap("tflite", frozenset({"dot_general"}), "LiteRT has no integer MatMul",
               _integer_operands),
)


def runtime_gaps(eqn: Any) -> dict[str, str]:
    """target -> what its runtime lacks to run `eqn`'s lowering (empty when nothing)."""
    name = eqn.primitive.name
    return {gap.target: gap.lacks for gap in RUNTIME_GAPS
            if name in gap.primitives and gap.applies(eqn)}
