"""Refusals name the primitive, its params and the user's file:line; the coverage doc is current."""

from __future__ import annotations

import inspect
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxport.errors import LoweringError
from jaxport.lowering import REFUSALS, RULES, coverage_table, lower_program
from tests.lowering.harness import program

DOC = Path(__file__).resolve().parents[2] / "docs" / "lowering.md"


def _line_of(marker: str) -> int:
    lines, start = inspect.getsourcelines(_fn_without_rule)
    src, start2 = inspect.getsourcelines(_fn_with_unsupported_form)
    for text, first in ((lines, start), (src, start2)):
        for i, line in enumerate(text):
            if marker in line:
                return first + i
    raise AssertionError(marker)


def _fn_without_rule(p, x):
    y = jnp.tanh(x)
    return {"y": lax.zeta(y * y + 2, x * x + 1)}  # marker: no-rule


def _fn_with_unsupported_form(p, x, w):
    return {"y": lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), batch_group_count=2)}  # marker: bad-form


def test_missing_rule_names_primitive_and_user_line() -> None:
    assert "zeta" not in RULES
    prog = program(_fn_without_rule, {"x": "f32[b,3]"})
    with pytest.raises(LoweringError) as info:
        lower_program(prog)
    msg = str(info.value)
    where = f"{__file__}:{_line_of('marker: no-rule')}"
    assert msg == f"primitive zeta () at {where} has no lowering"
    assert "docs/lowering.md" in info.value.hint
    assert info.value.code == "lowering_unsupported"


def test_unsupported_form_names_the_param() -> None:
    prog = program(_fn_with_unsupported_form, {"x": "f32[2,5,5,4]", "w": "f32[3,3,4,2]"})
    with pytest.raises(LoweringError) as info:
        lower_program(prog)
    where = f"{__file__}:{_line_of('marker: bad-form')}"
    assert str(info.value) == f"primitive conv_general_dilated (batch_group_count=2) at {where} has no lowering"


def _fn_with_linalg(p, x):
    spd = x @ x.T + 4.0 * jnp.eye(3)
    return {"y": jnp.linalg.cholesky(spd)}  # marker: linalg


@pytest.mark.parametrize("target", ["tflite", "tfjs"])
def test_linear_algebra_is_refused_by_name(tmp_path, target: str) -> None:
    """A decomposition fails the lowering with its own reason and hint, the user's line, and
    inside `jaxport.export` as a named error of the target (never an internal error)."""
    import jaxport

    assert "cholesky" in REFUSALS and "cholesky" not in RULES
    with pytest.raises(LoweringError) as info:
        lower_program(program(_fn_with_linalg, {"x": "f32[3,3]"}))
    lines, first = inspect.getsourcelines(_fn_with_linalg)
    where = f"{__file__}:{first + next(i for i, t in enumerate(lines) if 'marker: linalg' in t)}"
    assert str(info.value).startswith(f"primitive cholesky (") and f"at {where} has no lowering: linear algebra (Cholesky)" in str(info.value)
    assert "savedmodel" in info.value.hint
    report = jaxport.export(_fn_with_linalg, None, inputs={"x": "f32[3,3]"}, targets=[target], out_dir=tmp_path)
    error = report["targets"][target]["error"]
    assert report["targets"][target]["status"] != "ok" or target == "tflite", report["targets"][target]
    if error is not None:
        assert error["code"] != "internal", error


def test_constants_fold_and_params_stay_variables() -> None:
    """Constant-only subexpressions become one constant; params are read from variables."""
    params = {"w": np.ones((3,), np.float32)}
    prog = program(lambda p, x: {"y": x * p["w"] + jnp.exp(jnp.arange(3.0)).sum()}, {"x": "f32[b,3]"}, params)
    lowered = lower_program(prog)
    graph = lowered.signatures["serving_default"].graph
    types = [op.type for op in graph.get_operations()]
    assert "Exp" not in types and "Sum" not in types and "Range" not in types
    assert "ReadVariableOp" in types


def test_coverage_doc_is_current() -> None:
    table = coverage_table(DOC.parent / "peer_corpus.csv")  # also where the package has no docs/
    assert "| `conv_general_dilated` |" in table and "| `gather` |" in table
    assert DOC.read_text() == table, "regenerate: python -m jaxport.lowering.coverage > docs/lowering.md"


@pytest.mark.parametrize("fn,spec,why", [
    (lambda p, x: {"y": jnp.fft.rfft(x).real}, "f32[2,2053]", "the prime length 2053 has no factorization"),
    (lambda p, x: {"y": jnp.fft.fft(x, axis=0).imag}, "f32[b,3]", "a transform over a symbolic dimension"),
], ids=["prime_over_2048", "symbolic_length"])
def test_fft_refuses_lengths_without_a_constant_dft(fn, spec, why) -> None:
    with pytest.raises(LoweringError) as info:
        lower_program(program(fn, {"x": spec}))
    assert str(info.value).startswith("primitive fft (fft_lengths=") and why in str(info.value)
    assert info.value.hint
