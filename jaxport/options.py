"""Conversion options shared by the CLI, the library and the HTTP API (`options` JSON)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from jaxport.errors import JaxportError

ALL_TARGETS = ("savedmodel", "tflite", "tfjs", "onnx")
DEFAULT_TARGETS = ("savedmodel", "tflite", "tfjs")  # onnx on request (`--targets ...,onnx`)
TFLITE_QUANTIZATIONS = ("float16", "int8-weight-only", "int8-dynamic", "int8")
TFJS_QUANTIZATIONS = ("float16", "uint8", "uint16")
# The accuracy gate's SQNR floor (dB) per mode when `min_sqnr` is not given (docs/targets.md
# says why): float16 rounds weights to 11 significant bits; int8 weights (per channel) lose
# more, and static int8 also rounds every activation to 256 levels.
DEFAULT_MIN_SQNR = {"float16": 30.0, "uint16": 30.0, "int8-weight-only": 20.0,
                    "int8-dynamic": 20.0, "uint8": 15.0, "int8": 15.0}
MAX_SQNR_DB = 200.0  # float64 rounding noise sits near 300 dB; above 200 nothing is quantized
TOLERANCE_RULES = ("scale", "elementwise")  # see jaxport.verify.compare
# ONNX opsets jax2onnx 0.17 writes and onnxruntime 1.32 runs; the default is jax2onnx's own.
ONNX_OPSETS = range(17, 27)
DEFAULT_ONNX_OPSET = 23
LITERTJS_ENV = "JAXPORT_LITERTJS"


class OptionsError(JaxportError):
    code = "bad_options"
    http_status = 400


class OptionValueError(OptionsError):
    """A well-formed option whose value is out of its range (HTTP 422, naming the field)."""

    http_status = 422


@dataclass
class ConvertOptions:
    """What to build and how strictly to check it.

    `quantize` adds a quantized TFLite model beside the float one (`float16`,
    `int8-weight-only`, `int8-dynamic`, `int8` = static int8 calibrated on samples);
    `tfjs_quantize` a TF.js model with quantized weights beside the float one. Tolerances
    apply to the float artifacts (and to samples.npz goldens); a quantized artifact is
    measured instead (SQNR, top-1) and fails its target below `min_sqnr` dB (None: the mode's
    `DEFAULT_MIN_SQNR`) or below `min_top1` agreement on class-score outputs (None: not
    gated). `reference_timeout` bounds, in seconds, each run of the JAX function that computes
    the reference outputs (a `while_loop` that does not terminate on the verification inputs
    fails by name instead of hanging). `onnx_opset` is the ONNX opset the `onnx` target writes
    (17-26). `tolerance` is the rule they follow: `scale` (`max|got - want| <= atol + rtol *
    max|want|` per output) or numpy's `elementwise` one. `litertjs` checks the TFLite model in
    LiteRT.js (headless Chromium) too, beside LiteRT; turning it off saves a browser start. Its
    default is `litertjs_default()`.
    """

    targets: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    quantize: str | None = None
    tfjs_quantize: str | None = None
    tfjs_shard_bytes: int = 4 * 1024 * 1024
    onnx_opset: int = DEFAULT_ONNX_OPSET
    litertjs: bool = field(default_factory=lambda: litertjs_default())
    atol: float = 1e-4
    rtol: float = 1e-3
    min_sqnr: float | None = None
    min_top1: float | None = None
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
        for name in ("atol", "rtol"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise OptionsError(f"{name} must be a non-negative number, got {value!r}")
        _check_range("min_sqnr", self.min_sqnr, 0.0, MAX_SQNR_DB, "dB")
        _check_range("min_top1", self.min_top1, 0.0, 1.0, "a fraction of rows")
        if (not isinstance(self.reference_timeout, (int, float))
                or isinstance(self.reference_timeout, bool) or not self.reference_timeout > 0):
            raise OptionsError("reference_timeout must be a positive number of seconds, got "
                               f"{self.reference_timeout!r}")
        if not isinstance(self.tfjs_shard_bytes, int) or self.tfjs_shard_bytes < 1024:
            raise OptionsError("tfjs_shard_bytes must be an integer of at least 1024")
        if (not isinstance(self.onnx_opset, int) or isinstance(self.onnx_opset, bool)
                or self.onnx_opset not in ONNX_OPSETS):
            raise OptionsError(f"onnx_opset must be an integer from {ONNX_OPSETS.start} to "
                               f"{ONNX_OPSETS.stop - 1}, got {self.onnx_opset!r}",
                               f"the default, {DEFAULT_ONNX_OPSET}, runs in onnxruntime")
        if not isinstance(self.litertjs, bool):
            raise OptionsError(f"litertjs must be true or false, got {self.litertjs!r}")
        if not self.batch_sizes or any(not isinstance(b, int) or b < 1 for b in self.batch_sizes):
            raise OptionsError("batch_sizes must be a non-empty list of positive integers")

    def with_targets(self, targets: list[str]) -> "ConvertOptions":
        """These options for `targets` only (a share of the conversion's targets)."""
        return replace(self, targets=list(targets))

    def require_installed(self) -> None:
        """Raise `MissingExtra` when a requested target needs an optional part that is not
        installed (the TF.js converter for `tfjs`, the `onnx` extra for `onnx`).

        Separate from `validate`: whether options are well formed does not depend on what this
        machine has installed (the API and the workers may differ); every conversion entry
        point calls this before doing any work."""
        from jaxport.extras import EXTRAS, require

        for target in self.targets:
            if target in EXTRAS:
                require(target, f"the {target} target")

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

    def sqnr_floor(self, mode: str) -> float:
        """The SQNR (dB) a `mode`-quantized artifact must reach: `min_sqnr`, else the default."""
        return self.min_sqnr if self.min_sqnr is not None else DEFAULT_MIN_SQNR[mode]


def litertjs_default() -> bool:
    """`$JAXPORT_LITERTJS` (`1`/`0`, also true/false, on/off); on when it is unset.

    An operator's switch for the LiteRT.js check of jobs and CLI runs that do not choose it;
    the API stamps the value on each job it accepts."""
    raw = os.environ.get(LITERTJS_ENV, "").strip().lower()
    if raw in ("", "1", "true", "on", "yes"):
        return True
    if raw in ("0", "false", "off", "no"):
        return False
    raise OptionsError(f"{LITERTJS_ENV} must be 1 or 0, got {raw!r}",
                       f"{LITERTJS_ENV}=0 turns the LiteRT.js check off unless a job asks for it")


def _check_choice(name: str, value: str | None, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        raise OptionsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def _check_range(name: str, value: object, low: float, high: float, unit: str) -> None:
    """None, or a number in [low, high]; else `OptionValueError` naming the field."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise OptionValueError(f"{name} must be a number from {low:g} to {high:g} ({unit}), "
                               f"got {value!r}", "leave it out for the default")
