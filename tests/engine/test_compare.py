"""The parity rule (jaxport.verify.compare) on hand-made arrays: each hole it must not have."""

from __future__ import annotations

import numpy as np
import pytest

from jaxport.errors import TargetError
from jaxport.verify.compare import Parity

ATOL, RTOL = 1e-4, 1e-3


def _parity(**kw) -> Parity:
    return Parity(atol=ATOL, rtol=RTOL, **kw)


def test_integer_outputs_compare_exactly() -> None:
    # ids 50000 vs 50040 are within numpy's allclose (rtol 1e-3 of 5e4 = 50) but are wrong ids.
    p = _parity()
    p.add("f/ids", 3, np.array([50040, 7], np.int32), np.array([50000, 7], np.int32))
    assert not p.passed
    assert "must match exactly" in p.failure() and "50040" in p.failure()
    assert p.outputs["f/ids"].mismatched == 1


def test_bool_and_dtype_kind_must_match() -> None:
    p = _parity()
    p.add("f/flag", 1, np.array([1.0, 0.0], np.float32), np.array([True, False]))
    assert not p.passed and "returns float32, JAX returns bool" in p.failure()
    q = _parity()
    q.add("f/flag", 1, np.array([True, False]), np.array([True, False]))
    assert q.passed


def test_scale_aware_rule_ignores_near_zero_entries_of_a_large_output() -> None:
    # Elementwise allclose fails 1e-3 of error on a 0.0 entry; 1e-3 of a 200-scale output is fine.
    want = np.array([[200.0, 0.0, -150.0]], np.float32)
    got = want + np.array([[0.01, 0.001, -0.01]], np.float32)
    assert not np.allclose(got, want, atol=ATOL, rtol=RTOL)
    p = _parity()
    p.add("f/logits", 1, got, want)
    assert p.passed, p.failure()
    assert p.outputs["f/logits"].rel_err == pytest.approx(0.01 / 200, rel=1e-3)
    elementwise = _parity(rule="elementwise")
    elementwise.add("f/logits", 1, got, want)
    assert not elementwise.passed and "elementwise" in elementwise.failure()


def test_error_over_the_scale_fails() -> None:
    want = np.array([1.0, -2.0, 0.5], np.float32)
    p = _parity()
    p.add("f/y", 3, want + np.float32(0.01), want)  # allowed: 1e-4 + 1e-3 * 2 = 2.1e-3
    assert not p.passed
    assert p.failure().startswith("f/y@batch3: max abs err 0.01 exceeds")


def test_complex_outputs_compare_real_and_imaginary_parts() -> None:
    want = np.array([1 + 2j, -3 + 0.5j], np.complex64)
    p = _parity()
    p.add("f/spectrum", 1, np.conj(want), want)  # right real parts, wrong imaginary ones
    assert not p.passed and "exceeds" in p.failure()
    assert p.outputs["f/spectrum"].max_abs_err == pytest.approx(4.0)
    q = _parity()
    q.add("f/spectrum", 1, want.real.astype(np.float32), want)  # the imaginary part dropped
    assert not q.passed
    r = _parity()
    r.add("f/spectrum", 1, want + np.complex64(1e-4j), want)
    assert r.passed, r.failure()


def test_nan_must_sit_in_the_same_places_and_is_counted() -> None:
    want = np.array([1.0, np.nan, np.inf, 2.0], np.float32)
    same = _parity()
    same.add("f/y", 1, want.copy(), want)
    assert same.passed and same.outputs["f/y"].nan == 1 and same.outputs["f/y"].inf == 1
    moved = _parity()
    moved.add("f/y", 1, np.array([np.nan, 1.0, np.inf, 2.0], np.float32), want)
    assert not moved.passed and "NaN/Inf" in moved.failure()
    sign = _parity()
    sign.add("f/y", 1, np.array([1.0, np.nan, -np.inf, 2.0], np.float32), want)
    assert not sign.passed
    nan_got = _parity()
    nan_got.add("f/y", 1, np.full(4, np.nan, np.float32), np.ones(4, np.float32))
    assert not nan_got.passed


def test_worst_names_the_output_that_failed() -> None:
    p = _parity()
    big = np.array([1000.0, 2000.0], np.float32)
    p.add("f/big", 1, big + np.float32(0.5), big)  # abs err 0.5, allowed 2.0: passes
    small = np.array([0.1, 0.2], np.float32)
    p.add("f/small", 1, small + np.float32(0.01), small)  # abs err 0.01, allowed 3e-4: fails
    assert not p.passed
    assert p.max_abs_err == pytest.approx(0.5)
    assert p.worst == "f/small"
    assert p.failure().startswith("f/small@batch1")
    ok = _parity()
    ok.add("f/a", 1, big, big)
    ok.add("f/b", 1, small + np.float32(1e-5), small)
    assert ok.passed and ok.worst == "f/b"  # the largest relative error when all pass


def test_shape_mismatch_raises() -> None:
    with pytest.raises(TargetError, match="output shape"):
        _parity().add("f/y", 1, np.zeros((1, 3)), np.zeros((1, 4)))


def test_report_is_valid_json_with_infinite_relative_error() -> None:
    import json

    p = _parity()
    p.add("f/zero", 1, np.array([1.0], np.float32), np.array([0.0], np.float32))
    text = json.dumps(p.to_json(), allow_nan=False)
    assert '"rel_err": null' in text and not p.passed
