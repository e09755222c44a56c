"""Run artifacts in their real runtimes: TensorFlow for SavedModels, LiteRT for TFLite.

Both take and return named numpy arrays; the TF.js runner lives in `verify/tfjs.py`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from jaxport.errors import TargetError, first_line


class SavedModelRunner:
    """`tf.saved_model.load` once, then call signatures by name."""

    def __init__(self, path: Path) -> None:
        import tensorflow as tf

        self._tf = tf
        self._loaded = tf.saved_model.load(str(path))

    def run(self, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        fn = self._loaded.signatures[signature]
        try:
            out = fn(**{k: self._tf.constant(v) for k, v in inputs.items()})
        except (self._tf.errors.OpError, ValueError, TypeError) as exc:
            raise TargetError(f"TensorFlow failed to run signature {signature!r}: "
                              f"{first_line(exc)}", stage="verify") from None
        return {k: v.numpy() for k, v in out.items()}


class TfliteRunner:
    """An `ai_edge_litert` interpreter; signature runners resize inputs to each call's shapes."""

    def __init__(self, path: Path, num_threads: int = 1, stage: str = "verify") -> None:
        """Load `path`; a model LiteRT rejects raises `TargetError` with `stage`."""
        from ai_edge_litert.interpreter import Interpreter

        try:
            self._interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        except (RuntimeError, ValueError) as exc:
            raise TargetError(f"LiteRT cannot load the converted model: {first_line(exc)}",
                              "the converter or quantizer produced a flatbuffer LiteRT rejects; "
                              "for a quantized model try another --quantize mode, else report "
                              "the model", stage=stage) from None

    def signatures(self) -> dict:
        return self._interpreter.get_signature_list()

    def run(self, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        runner = self._interpreter.get_signature_runner(signature)
        try:
            return {k: np.array(v) for k, v in runner(**inputs).items()}
        except (RuntimeError, ValueError) as exc:
            raise TargetError(
                f"LiteRT failed to run signature {signature!r}: {first_line(exc)}",
                "the model does not run in LiteRT; for a quantized model try another --quantize "
                "mode, else report the model",
                stage="verify") from None

    def timed(self, signature: str, inputs: dict[str, np.ndarray]) -> float:
        """Milliseconds of one run of `signature` on `inputs` (outputs copied out included)."""
        start = time.perf_counter()
        self.run(signature, inputs)
        return 1000.0 * (time.perf_counter() - start)
