"""Run TF.js graph models in their real runtime: `@tensorflow/tfjs` (cpu backend) under Node.

`TfjsRunner` starts `node js/run_model.mjs` once and sends it one JSON request per line
(protocol documented in that file), so a session pays Node's start-up (about a second) once
and can run any number of models. Use it as a context manager, or `shared_runner()` for one
process-wide runner that is closed at interpreter exit.

Inputs are cast to the dtypes TF.js computes in (floats -> float32, integers -> int32,
bool); outputs come back cast to the dtype of the model's signature.
"""

from __future__ import annotations

import atexit
import threading
from pathlib import Path
from typing import Any

import numpy as np

from jaxport.errors import TargetError
from jaxport.verify.node import JS_DIR, NodeProcess, Timing, decode_array, encode_array

__all__ = ["JS_DIR", "INSTALL_HINT", "TfjsRunner", "TfjsUnavailable", "Timing", "shared_runner"]

INSTALL_HINT = "install the TF.js runtime with `scripts/install-js` (runs `npm ci` in js/; needs Node >= 18)"

# model.json signature dtypes -> the numpy dtype callers get back.
_SIGNATURE_DTYPES = {
    "DT_FLOAT": np.float32,
    "DT_DOUBLE": np.float64,
    "DT_HALF": np.float16,
    "DT_INT8": np.int8,
    "DT_INT16": np.int16,
    "DT_INT32": np.int32,
    "DT_INT64": np.int64,
    "DT_UINT8": np.uint8,
    "DT_UINT16": np.uint16,
    "DT_UINT32": np.uint32,
    "DT_UINT64": np.uint64,
    "DT_BOOL": np.bool_,
    "DT_COMPLEX64": np.complex64,
}


class TfjsUnavailable(TargetError):
    """Node or the `js/` packages are missing: TF.js artifacts cannot be verified here."""

    code = "tfjs_runtime_missing"


class TfjsRunner(NodeProcess):
    """A persistent Node process running TF.js graph models; thread-safe, one request at a time.

    `run` raises `TargetError` carrying Node's message when loading or running a model fails
    (for example an op the TF.js runtime does not implement); the process stays usable. If Node
    dies or a request exceeds `timeout_s`, the process is restarted on the next request.
    """

    script = "run_model.mjs"
    label = "TF.js"
    needs = ("@tensorflow/tfjs",)
    unavailable = TfjsUnavailable
    install_hint = INSTALL_HINT
    timeout_hint = "the model may be too slow for the cpu backend"
    kept_env = "JAXPORT_TFJS_KEPT"

    def run(self, model_dir: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph model in `model_dir` (model.json + shards) on named inputs once.

        Returns the signature's outputs by name, cast to the signature's dtypes.
        """
        outputs, _ = self._run(model_dir, inputs, None)
        return outputs

    def benchmark(
        self, model_dir: Path, inputs: dict[str, np.ndarray], *, warmup: int = 2, runs: int = 10
    ) -> tuple[dict[str, np.ndarray], Timing]:
        """Like `run`, then time `runs` runs after `warmup` untimed ones, all inside Node."""
        if runs < 1 or warmup < 0:
            raise ValueError(f"need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
        outputs, timing = self._run(model_dir, inputs, {"warmup": warmup, "runs": runs})
        assert timing is not None
        return outputs, Timing(**timing)

    def _run(
        self, model_dir: Path, inputs: dict[str, np.ndarray], bench: dict[str, int] | None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any] | None]:
        model_dir = Path(model_dir).resolve()
        if not (model_dir / "model.json").is_file():
            raise TargetError(f"no TF.js model at {model_dir} (model.json missing)", stage="verify")
        request: dict[str, Any] = {
            "op": "run",
            "model": str(model_dir),
            "inputs": {name: encode_array(name, value, "TF.js") for name, value in inputs.items()},
        }
        if bench:
            request["bench"] = bench
        reply = self.request(request)
        if not reply["ok"]:
            action = "load" if reply["stage"] == "load" else "run"
            raise TargetError(
                f"TF.js could not {action} the model: {reply['error']}",
                "when the message names an op or kernel, the model uses something TF.js 4.22 "
                "(cpu backend) lacks",
                stage="verify",
            )
        outputs = {name: _decode(spec) for name, spec in reply["outputs"].items()}
        return outputs, reply.get("timing")


def _decode(spec: dict[str, Any]) -> np.ndarray:
    array = decode_array(spec)
    target = _SIGNATURE_DTYPES.get(spec.get("signature_dtype", ""))
    return array.astype(target) if target is not None else array


_shared: TfjsRunner | None = None
_shared_lock = threading.Lock()


def shared_runner() -> TfjsRunner:
    """The process-wide runner, started on first use and closed at interpreter exit."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = TfjsRunner()
            atexit.register(_shared.close)
        _shared.start()
        return _shared
