"""Conversion options shared by the CLI, the library and the HTTP API (`options` JSON)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from jaxport.errors import JaxportError

ALL_TARGETS = ("savedmodel", "tflite", "tfjs", "onnx")
DEFAULT_TARGETS = ("savedmodel", "tflite", "tfjs")  # onnx on request (`--targets ...,onnx`)
TFLITE_QUANTIZATIONS = ("float16", "int8-dynamic", "int8")
TFJS_QUANTIZATIONS = ("float16", "uint8", "uint16")
TOLERANCE_RULES = ("scale", "elementwise")  # see jaxport.verify.compare
# ONNX opsets jax2onnx 0.17 writes and onnxruntime 1.32 runs; the default is jax2onnx's own.
ONNX_OPSETS = range(17, 27)
DEFAULT_ONNX_OPSET = 23


class OptionsError(JaxportError):
    code = "bad_options"
    http_status = 400


@dataclass
class ConvertOptions:
    """What to build and how strictly to check it.

    `quantize` applies to TFLite (`float16`, `int8-dynamic`, `int8` = full integer calibrated on
    samples); `tfjs_quantize` to TF.js weights. Tolerances apply to unquantized targets (and
    to samples.npz goldens); a quantized target is checked against
    `quantized_atol`/`quantized_rtol`. `reference_timeout` bounds, in seconds, each run of the
    JAX function that computes the reference outputs (a `while_loop` that does not terminate
    on the verification inputs fails by name instead of hanging). `onnx_opset` is the ONNX opset the `onnx` target
    writes (17-26). `tolerance` is the rule they follow: `scale`
    (`max|got - want| <= atol + rtol * max|want|` per output) or numpy's `elementwise` one.
    """

    targets: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    quantize: str | None = None
    tfjs_quantize: str | None = None
    tfjs_shard_bytes: int = 4 * 1024 * 1024
    onnx_opset: int = DEFAULT_ONNX_OPSET
    atol: float = 1e-4
    rtol: float = 1e-3
    quantized_atol: float = 5e-2
    quantized_rtol: float = 5e-2
    tolerance: str = "scale"
    batch_sizes: list[int] = field(default_factory=lambda: [1, 3])
    name: str | None = None
    trusted: bool = False
    seed: int = 0
    reference_timeout: float = 300.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        bad = [t for t in self.targets if t not in ALL_TARGETS]
        if bad or not self.targets:
            raise OptionsError(
                f"unknown target(s) {bad}" if bad else "no targets requested",
                f"choose from {', '.join(ALL_TARGETS)}",
            )
        _check_choice("quantize", self.quantize, TFLITE_QUANTIZATIONS)
        _check_choice("tfjs_quantize", self.tfjs_quantize, TFJS_QUANTIZATIONS)
        _check_choice("tolerance", self.tolerance, TOLERANCE_RULES)
        for name in ("atol", "rtol", "quantized_atol", "quantized_rtol"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise OptionsError(f"{name} must be a non-negative number, got {value!r}")
        if not isinstance(self.reference_timeout, (int, float)) or not self.reference_timeout > 0:
            raise OptionsError(f"reference_timeout must be a positive number of seconds, got {self.reference_timeout!r}")
        if not isinstance(self.tfjs_shard_bytes, int) or self.tfjs_shard_bytes < 1024:
            raise OptionsError("tfjs_shard_bytes must be an integer of at least 1024")
        if (not isinstance(self.onnx_opset, int) or isinstance(self.onnx_opset, bool)
                or self.onnx_opset not in ONNX_OPSETS):
            raise OptionsError(f"onnx_opset must be an integer from {ONNX_OPSETS.start} to "
                               f"{ONNX_OPSETS.stop - 1}, got {self.onnx_opset!r}",
                               f"the default, {DEFAULT_ONNX_OPSET}, runs in onnxruntime")
        if not self.batch_sizes or any(not isinstance(b, int) or b < 1 for b in self.batch_sizes):
            raise OptionsError("batch_sizes must be a non-empty list of positive integers")

    @classmethod
    def from_json(cls, data: Any, *, trusted: bool = False) -> "ConvertOptions":
        """Build from untrusted JSON (the HTTP `options` field); unknown keys are an error.

        `trusted` is never taken from the JSON: the caller (server config or CLI) decides it.
        """
        if data is None:
            return cls(trusted=trusted)
        if not isinstance(data, dict):
            raise OptionsError("options must be a JSON object")
        known = {f.name for f in fields(cls)} - {"trusted"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise OptionsError(f"unknown option(s) {unknown}", f"known options: {sorted(known)}")
        if isinstance(data.get("targets"), str):
            data = {**data, "targets": [t.strip() for t in data["targets"].split(",") if t.strip()]}
        try:
            return cls(**data, trusted=trusted)
        except TypeError as exc:
            raise OptionsError(f"bad options: {exc}") from None

    def to_json(self) -> dict:
        return asdict(self)


def _check_choice(name: str, value: str | None, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        raise OptionsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
