"""The package's metadata keeps its promises (pyproject.toml, uv.lock, `jaxport.extras`).

- Every capped range (`>=low,<cap`) starts at the version uv.lock pins: the locked suite tests
  the low end, the newest lane (`scripts/lane-newest`) the high end. Plain floors (`rich>=13`,
  `packaging>=23.1`) only exclude releases known not to work.
- `jaxport.extras` and pyproject.toml name the same optional parts, each module of an extra
  comes from a distribution that extra installs, and the TF.js converter's install command
  pins what the lock's `tfjs` group pins.
- `jaxport.__version__` and `jaxport --version` come from the package metadata, with a
  fallback for a source checkout that was never installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import jaxport
from jaxport.cli import main
from jaxport.extras import EXTRAS

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCKED = {p["name"]: p["version"] for p in tomllib.loads((ROOT / "uv.lock").read_text())["package"]}


def _requirements() -> list[Requirement]:
    project = PYPROJECT["project"]
    reqs = [*project["dependencies"], *(r for rs in project["optional-dependencies"].values() for r in rs)]
    return [Requirement(r) for r in reqs]


def test_every_capped_range_starts_at_the_locked_version() -> None:
    checked = []
    for req in _requirements():
        lows = [s.version for s in req.specifier if s.operator == ">="]
        if lows and any(s.operator == "<" for s in req.specifier):
            assert LOCKED[req.name] == lows[0], f"{req}: the lock has {req.name} {LOCKED[req.name]}"
            assert LOCKED[req.name] in req.specifier
            checked.append(req.name)
    assert {"jax", "jaxlib", "keras", "tensorflow", "ai-edge-litert", "orbax-export"} <= set(checked)


def test_the_engine_ranges_are_capped() -> None:
    """Tested, not hoped for: a release past the newest lane's needs a widened cap to install."""
    for req in _requirements():
        if req.name in ("jax", "jaxlib", "keras", "tensorflow", "ai-edge-litert", "orbax-export",
                        "ai-edge-quantizer", "jax2onnx", "onnx", "onnxruntime"):
            assert any(s.operator == "<" for s in req.specifier), f"{req} has no upper bound"


def test_extras_table_matches_pyproject() -> None:
    optional = PYPROJECT["project"]["optional-dependencies"]
    groups = PYPROJECT["dependency-groups"]
    assert set(EXTRAS) == set(optional) | {"tfjs"}
    distributions = metadata.packages_distributions()
    for name, extra in EXTRAS.items():
        declared = {Requirement(r).name for r in (optional.get(name) or groups[name])}
        for module in extra.modules:
            provided = {d.lower().replace("_", "-") for d in distributions.get(module, [])}
            assert provided & declared, f"{name}: module {module} comes from {provided}, not {declared}"


def test_tfjs_install_command_pins_the_locked_converter() -> None:
    (pin,) = PYPROJECT["dependency-groups"]["tfjs"]
    assert EXTRAS["tfjs"].install == f"pip install --no-deps '{pin}'"
    assert Requirement(pin).specifier.contains(LOCKED["tensorflowjs"])
    assert PYPROJECT["tool"]["uv"]["default-groups"] == ["dev", "tfjs"]


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture) -> None:
    assert jaxport.__version__ == metadata.version("jaxport")
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"jaxport {metadata.version('jaxport')}\n"


@pytest.mark.parametrize("pyproject", ['[project]\nname = "jaxport"\nversion = "9.8.7"\n', None])
def test_version_of_a_source_checkout_never_installed(tmp_path: Path, pyproject: str | None) -> None:
    """`python -S`: no site-packages, so no metadata; the checkout's pyproject.toml says."""
    shutil.copytree(ROOT / "jaxport", tmp_path / "jaxport")
    if pyproject is not None:
        (tmp_path / "pyproject.toml").write_text(pyproject)
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import jaxport; print(jaxport.__version__)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("9.8.7" if pyproject else "0+unknown")
    assert re.fullmatch(r"\d+\.\d+\.\d+", jaxport.__version__)
