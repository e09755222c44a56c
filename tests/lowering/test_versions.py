"""The rule table against the installed JAX's primitives (`jaxport/lowering/versions.py`).

JAX renames and adds primitives between releases. Every name the registry holds must be a
primitive of the installed JAX, or a spelling that `versions.py` lists for another supported
release; the assertion messages name the ones that are not. Run in both the locked suite
(lowest JAX) and the newest lane (`scripts/lane-newest`, newest JAX).
"""

from __future__ import annotations

import importlib
import pkgutil

import jax
import jax._src
import pytest
from jax.extend.core import Primitive

from jaxport.lowering import RULES
from jaxport.lowering.versions import INTRODUCED, RENAMED, spellings

# Backend and kernel-language packages: no primitive of theirs reaches a CPU export's jaxpr,
# and importing some of them needs a GPU/TPU toolchain.
_SKIP = ("pallas", "mosaic", "triton", "cuda", "rocm", "tpu", "gpu", "test")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:2])


@pytest.fixture(scope="module")
def installed() -> dict[str, set[str]]:
    """Primitive name -> the `jax._src` attributes holding a primitive of that name."""
    found: dict[str, set[str]] = {}
    for info in pkgutil.walk_packages(jax._src.__path__, "jax._src."):
        if any(word in info.name for word in _SKIP):
            continue
        try:
            module = importlib.import_module(info.name)
        except Exception:  # noqa: BLE001 - optional backends and plugins fail to import here
            continue
        for attr, value in vars(module).items():
            if isinstance(value, Primitive):
                found.setdefault(value.name, set()).add(f"{info.name}.{attr}")
    assert len(found) > 200, f"found only {len(found)} primitives: the walk is broken"
    return found


def test_every_registered_name_is_a_primitive_of_the_installed_jax_or_mapped(installed) -> None:
    listed = set(RENAMED) | set(RENAMED.values()) | set(INTRODUCED)
    unknown = sorted(n for n in RULES if n not in installed and n not in listed)
    assert not unknown, (f"rules for primitives JAX {jax.__version__} does not have; if JAX "
                         f"renamed them, map them in jaxport/lowering/versions.py: {unknown}")


def test_every_renamed_primitive_has_one_rule_under_all_its_names(installed) -> None:
    for old, new in RENAMED.items():
        assert old in installed or new in installed, f"{old}/{new}: neither is a primitive of JAX {jax.__version__}"
        missing = [n for n in spellings(old) if n not in RULES]
        assert not missing, f"{old}/{new}: no rule under {missing}"
        assert len({RULES[n].fn for n in spellings(old)}) == 1, f"{spellings(old)}: different rules"


def test_introduced_primitives_exist_exactly_from_their_release(installed) -> None:
    now = _version(jax.__version__)
    for name, release in INTRODUCED.items():
        assert name in RULES, f"{name} is listed in versions.py but has no rule"
        assert (name in installed) == (now >= _version(release)), (
            f"{name}: versions.py says JAX {release} introduced it; JAX {jax.__version__} "
            f"{'has' if name in installed else 'lacks'} it")


def test_spellings_are_symmetric() -> None:
    for old, new in RENAMED.items():
        assert set(spellings(old)) == set(spellings(new)) >= {old, new}
    assert spellings("add") == ("add",)
