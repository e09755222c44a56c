"""The StableHLO version of the programs jaxport hands to TensorFlow.

The SavedModel target (and TFLite's orbax path) embeds each function as StableHLO bytecode in
an `XlaCallModule` op, serialized by `jax.export` for the version JAX chooses: one about four
weeks old by JAX's release. TensorFlow reads versions up to a limit of its own: TF 2.21
reports 1.13.7 as its version and reads JAX 0.10's 1.15.0 (the locked suite runs on it), but
refuses JAX 0.12's 1.18.0. `for_tensorflow()` keeps JAX's choice up to `KNOWN_READ` and
otherwise makes `jax.export` serialize for TensorFlow's reported version, which StableHLO's
compatibility guarantees let every newer JAX write (the newest lane runs on that).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


KNOWN_READ = "1.15.0"  # what TF 2.21 is proven to read (JAX 0.10.2's choice)


def _parse(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def tensorflow_version() -> str:
    """The newest StableHLO version the installed TensorFlow deserializes."""
    from tensorflow.compiler.mlir.stablehlo import stablehlo as tf_stablehlo

    return tf_stablehlo.get_current_version()


@contextlib.contextmanager
def for_tensorflow() -> Iterator[str]:
    """Within the block, `jax.export` serializes StableHLO TensorFlow reads (module docstring).

    Yields the version it serializes. Patches JAX's private `_module_to_bytecode` (there is no
    public setting) and restores it on exit; not for use from several threads at once.
    """
    from jax._src import xla_bridge
    from jax._src.export import _export
    from jax._src.lib import _jax

    hlo = _export.hlo
    jax_version = hlo.get_version_from_compatibility_requirement(
        hlo.StablehloCompatibilityRequirement.WEEK_4)
    version = (jax_version if _parse(jax_version) <= _parse(KNOWN_READ)
               else min(jax_version, tensorflow_version(), key=_parse))
    original = _export._module_to_bytecode

    def to_bytecode(module: object) -> bytes:
        return _jax.mlir.serialize_portable_artifact(
            module, version, xla_bridge.get_backend().serialize_with_sdy)

    _export._module_to_bytecode = to_bytecode
    try:
        yield version
    finally:
        _export._module_to_bytecode = original
