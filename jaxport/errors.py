"""Named errors. Every error a user can cause is a `JaxportError` with a message and a hint.

The CLI prints `error: <message>` plus the hint and exits 2; the service maps `code` and
`http_status` to a JSON error body. Anything that is not a `JaxportError` is our bug.
"""

from __future__ import annotations

import re


class JaxportError(Exception):
    """Base class: a problem with the user's input or environment, explained."""

    code = "invalid_input"
    http_status = 400

    def __init__(self, message: str, hint: str = "", *, where: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.where = where

    def __str__(self) -> str:
        where = f"{self.where}: " if self.where else ""
        return f"{where}{self.message}"

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": str(self), "hint": self.hint}


class ArchiveError(JaxportError):
    """The uploaded file is not a usable archive (type, size, members, bombs)."""

    code = "bad_archive"
    http_status = 422


class ArchiveTooLarge(ArchiveError):
    code = "archive_too_large"
    http_status = 413


class ManifestError(JaxportError):
    """`jaxport.toml` is malformed or refers to things that do not exist."""

    code = "bad_manifest"
    http_status = 422


class ModelLoadError(JaxportError):
    """A `.keras` file could not be loaded (corrupt, unsafe under safe_mode, unknown layer)."""

    code = "model_load_failed"
    http_status = 422


class ShapeError(JaxportError):
    """Declared input shapes are out of bounds, or do not fit the models (found by tracing the
    functions on symbolic shapes)."""

    code = "shape_mismatch"
    http_status = 422


class UnsupportedTarget(JaxportError):
    code = "unsupported_target"
    http_status = 400


class LoweringError(JaxportError):
    """A jaxpr primitive (or a form of it) has no plain-TF lowering rule."""

    code = "lowering_unsupported"
    http_status = 422


class ReferenceMismatch(JaxportError):
    """The composed JAX function does not reproduce the goldens of samples.npz."""

    code = "reference_mismatch"
    http_status = 422


class ReferenceFailed(JaxportError):
    """The composed JAX function could not be run on the verification inputs."""

    code = "reference_failed"
    http_status = 422


class MissingExtra(JaxportError):
    """What the user asked for needs an optional part of jaxport that is not installed.

    `extra` names it (`service`, `onnx`, or `tfjs` for the TF.js converter installed beside
    the package); the hint is the one command that installs it (`jaxport.extras.EXTRAS`).
    """

    code = "missing_extra"
    http_status = 501

    def __init__(self, message: str, hint: str = "", *, extra: str, where: str = "") -> None:
        super().__init__(message, hint, where=where)
        self.extra = extra


class TargetError(JaxportError):
    """Building or running one target failed; recorded in report.json, other targets go on."""

    code = "target_failed"
    http_status = 500

    def __init__(self, message: str, hint: str = "", *, stage: str = "", where: str = "") -> None:
        super().__init__(message, hint, where=where)
        self.stage = stage


def first_line(exc: BaseException, limit: int = 400) -> str:
    """The informative first line of an exception's text (no ANSI codes, no Keras call banner)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in str(exc).splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("Exception encountered when calling")]
    return lines[0][:limit] if lines else type(exc).__name__
