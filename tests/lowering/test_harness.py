"""The rule harness's own comparison: it is the reference every lowering case is held to."""

from __future__ import annotations

import numpy as np
import pytest

from tests.lowering.harness import assert_close


def test_complex_outputs_compare_both_parts() -> None:
    want = np.array([1 + 2j, -3 + 0.5j], np.complex64)
    assert assert_close({"y": want.copy()}, {"y": want}, atol=1e-6) == 0.0
    with pytest.raises(AssertionError):  # the real parts agree, the imaginary ones do not
        assert_close({"y": np.conj(want)}, {"y": want}, atol=1e-3)
    worst = assert_close({"y": want + 1e-4j}, {"y": want}, atol=1e-3)
    assert worst == pytest.approx(1e-4, rel=1e-2)
