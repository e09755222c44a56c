"""Tensor specs: `dtype[dims]` strings such as `f32[b,4,64,64,3]`.

A dim is an int (fixed) or a name (polymorphic symbol). Equal names mean equal sizes. A declared
input has no zero dim, and its fixed dims hold at most MAX_INPUT_ELEMENTS elements (symbols take
small sizes in verification), so that verifying it cannot need gigabytes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import ml_dtypes
import numpy as np

from jaxport.errors import ManifestError, ShapeError

DTYPES: dict[str, np.dtype] = {
    "f32": np.dtype("float32"),
    "f16": np.dtype("float16"),
    "bf16": np.dtype(ml_dtypes.bfloat16),  # numpy has none; ml_dtypes comes with jax
    "i8": np.dtype("int8"),
    "i16": np.dtype("int16"),
    "i32": np.dtype("int32"),
    "i64": np.dtype("int64"),
    "u8": np.dtype("uint8"),
    "u16": np.dtype("uint16"),
    "u32": np.dtype("uint32"),
    "bool": np.dtype("bool"),
}
_SPEC_RE = re.compile(r"^\s*([a-z0-9]+)\s*\[\s*(.*?)\s*\]\s*$")
_SYMBOL_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Dim = int | str

MAX_INPUT_ELEMENTS = 1 << 24  # per declared input, product of its fixed dims (64 MiB of f32)


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output: dtype and shape (ints fixed, strings symbolic)."""

    name: str
    dtype: np.dtype
    shape: tuple[Dim, ...]

    @property
    def symbols(self) -> list[str]:
        return [d for d in self.shape if isinstance(d, str)]

    @property
    def tf_shape(self) -> list[int | None]:
        """The shape with symbolic dims as `None`, as TF signatures want it."""
        return [d if isinstance(d, int) else None for d in self.shape]

    def concrete(self, sizes: dict[str, int]) -> tuple[int, ...]:
        """The shape with every symbol replaced by `sizes[symbol]`."""
        return tuple(d if isinstance(d, int) else sizes[d] for d in self.shape)

    def to_json(self) -> dict:
        return {"dtype": self.dtype.name, "shape": list(self.shape)}

    def __str__(self) -> str:
        short = {v: k for k, v in DTYPES.items()}[self.dtype]
        return f"{short}[{','.join(str(d) for d in self.shape)}]"


def parse_spec(name: str, text: str, *, where: str = "") -> TensorSpec:
    """Parse `dtype[dims]`; raise `ManifestError` naming `where` when it is not one."""
    match = _SPEC_RE.match(text) if isinstance(text, str) else None
    hint = f'write it as dtype[dims], e.g. "f32[b,224,224,3]"; dtypes: {", ".join(DTYPES)}'
    if not match:
        raise ManifestError(f"input {name!r}: {text!r} is not a tensor spec", hint, where=where)
    dtype_name, dims_text = match.groups()
    if dtype_name not in DTYPES:
        raise ManifestError(
            f"input {name!r}: unknown dtype {dtype_name!r}", hint, where=where
        )
    dims: list[Dim] = []
    for raw in filter(None, (d.strip() for d in dims_text.split(","))):
        if raw.isdigit():
            dims.append(int(raw))
        elif _SYMBOL_RE.match(raw):
            dims.append(raw)
        else:
            raise ManifestError(
                f"input {name!r}: dimension {raw!r} is neither an int nor a symbol name",
                hint,
                where=where,
            )
    check_input_shape(name, dims, where=where)
    return TensorSpec(name, DTYPES[dtype_name], tuple(dims))


def check_input_shape(name: str, shape: tuple[Dim, ...] | list[Dim], *, where: str = "") -> None:
    """Raise `ShapeError` if input `name` has a zero dim or its fixed dims hold more than
    MAX_INPUT_ELEMENTS elements."""
    shape_text = f"[{','.join(str(d) for d in shape)}]"
    if 0 in shape:
        raise ShapeError(f"input {name!r} {shape_text} has a dimension 0",
                         "every dimension needs a size of at least 1", where=where)
    elements = math.prod(d for d in shape if isinstance(d, int))
    if elements > MAX_INPUT_ELEMENTS:
        raise ShapeError(
            f"input {name!r} {shape_text} has {elements} elements, over the limit of "
            f"{MAX_INPUT_ELEMENTS} (MAX_INPUT_ELEMENTS)",
            "declare smaller inputs, or make the large dims symbolic (names such as b or s)",
            where=where)


@dataclass(frozen=True)
class InputRange:
    """The values verification feeds one input: `low..high` (inclusive), and why.

    `kind` is `uniform` (floats drawn uniformly), `normal` (standard normal floats; no bounds),
    `ids` (integers, e.g. a vocabulary) or `mask` (prefix masks of 1s then 0s along the last axis).
    """

    low: float
    high: float
    why: str
    kind: str = "uniform"

    def to_json(self) -> dict:
        bounds = {"low": self.low, "high": self.high} if self.kind != "normal" else {}
        return {"kind": self.kind, **bounds, "why": self.why}


def parse_range(name: str, value: object, spec: TensorSpec, *, where: str = "",
                why: str = "stated in the manifest") -> InputRange:
    """A stated `range = [lo, hi]` for input `name`; integer bounds for integer inputs."""
    ok = (isinstance(value, list) and len(value) == 2
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
          and value[0] <= value[1])
    if not ok:
        raise ManifestError(f"input {name!r}: range must be [low, high] with low <= high, "
                            f"got {value!r}", "e.g. range = [0, 255]", where=where)
    if spec.dtype.kind in "iu" and not all(float(v).is_integer() for v in value):
        raise ManifestError(f"input {name!r} is {spec.dtype.name}: its range needs integer "
                            f"bounds, got {value!r}", where=where)
    kind = "ids" if spec.dtype.kind in "iu" else "uniform"
    return InputRange(float(value[0]), float(value[1]), why, kind)
