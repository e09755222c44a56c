"""A missing optional part (`jaxport.extras`) is one `error:` line and a `hint:` naming what to
install, from the CLI (exit 2), the library and `inspect`.

Each case runs in a child Python whose import system refuses the part's modules: a meta path
finder installed by the child's own `-c` code, in that process only, so what is under test is
our message, not the library. In the newest lane (`scripts/lane-newest`), a wheel installed
without extras, the `service` and `onnx` modules are absent for real and the finder refuses
nothing more than is missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from jaxport.extras import EXTRAS

ROOT = Path(__file__).resolve().parents[2]
PROD = ["--function", str(ROOT / "examples/prod.py") + ":prod",
        "--params", str(ROOT / "examples/prod_params.npz"), "--input", "xs=f32[b,2]"]

_REFUSE = """
import importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in REFUSED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Refuse())
"""


def _run(extras: list[str], code: str, *argv: str) -> subprocess.CompletedProcess:
    refused = sorted(m for e in extras for m in EXTRAS[e].modules)
    program = f"REFUSED = {refused!r}\n{_REFUSE}\n{code}"
    return subprocess.run([sys.executable, "-c", program, *argv], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)


def _cli(extras: list[str], *argv: str) -> subprocess.CompletedProcess:
    return _run(extras, "from jaxport.cli import main\nsys.exit(main(sys.argv[1:]))", *argv)


def _one_error(result: subprocess.CompletedProcess) -> tuple[str, str]:
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith(("error:", "hint:"))]
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and len(lines) == 2, result.stderr[-2000:]
    return lines[0], lines[1]


def test_onnx_target_without_the_onnx_extra(tmp_path: Path) -> None:
    result = _cli(["onnx"], "convert", *PROD, "-o", str(tmp_path / "out"),
                  "--targets", "savedmodel,onnx")
    error, hint = _one_error(result)
    assert error.startswith("error: the onnx target needs the 'onnx' extra, which is not installed "
                            "(no module 'jax2onnx'"), error
    assert hint == "hint: pip install 'jaxport[onnx]'"
    assert not (tmp_path / "out" / "report.json").exists()  # refused before any work


def test_default_targets_without_the_tfjs_converter(tmp_path: Path) -> None:
    result = _cli(["tfjs"], "convert", *PROD, "-o", str(tmp_path / "out"))
    error, hint = _one_error(result)
    assert error == ("error: the tfjs target needs the TF.js converter, which is not installed "
                     "(no module 'tensorflowjs')")
    assert hint == "hint: pip install --no-deps 'tensorflowjs==4.22.0'"


def test_service_commands_without_the_service_extra() -> None:
    for command in ("up", "worker", "submit"):
        error, hint = _one_error(_cli(["service"], command))
        assert error.startswith(f"error: `jaxport {command}` needs the 'service' extra, which is "
                                "not installed (no module "), error
        assert hint == "hint: pip install 'jaxport[service]'"


def test_engine_commands_work_without_the_service_extra(tmp_path: Path) -> None:
    result = _cli(["service", "onnx"], "convert", *PROD, "-o", str(tmp_path / "out"),
                  "--targets", "savedmodel,tflite")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    statuses = {t: r["status"] for t, r in report["targets"].items()}
    assert statuses == {"savedmodel": "ok", "tflite": "ok", "tfjs": "skipped", "onnx": "skipped"}


def test_library_raises_missing_extra(tmp_path: Path) -> None:
    code = (
        "import jax.numpy as jnp, jaxport\n"
        "from jaxport.errors import MissingExtra\n"
        "try:\n"
        "    jaxport.export(lambda p, x: jnp.tanh(x), {}, inputs={'x': 'f32[b,2]'},\n"
        f"                   targets=['savedmodel', 'onnx'], out_dir={str(tmp_path)!r})\n"
        "except MissingExtra as exc:\n"
        "    print(type(exc).__name__, exc.extra, exc.code, exc.hint, sep='|')\n")
    result = _run(["onnx"], code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "MissingExtra|onnx|missing_extra|pip install 'jaxport[onnx]'"


def test_inspect_blocks_the_targets_whose_part_is_missing(tmp_path: Path) -> None:
    code = (
        "import json, keras\n"
        "from jaxport.inspection import inspect_file\n"
        "x = keras.Input((4,), name='x')\n"
        f"path = {str(tmp_path / 'dense.keras')!r}\n"
        "keras.Model(x, keras.layers.Dense(2)(x)).save(path)\n"
        "print(json.dumps(inspect_file(path, None, trusted=False)['functions']"
        "['serving_default']['verdict']))\n")
    result = _run(["tfjs", "onnx"], code)
    assert result.returncode == 0, result.stderr[-2000:]
    verdict = json.loads(result.stdout.splitlines()[-1])
    assert verdict["savedmodel"]["ok"] and verdict["tflite"]["ok"]
    assert not verdict["tfjs"]["ok"] and "pip install --no-deps 'tensorflowjs" in verdict["tfjs"]["message"]
    assert not verdict["onnx"]["ok"] and "pip install 'jaxport[onnx]'" in verdict["onnx"]["message"]
