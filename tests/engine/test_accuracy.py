"""The accuracy figures of quantized artifacts and the gate on them (numbers worked by hand)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jaxport.errors import TargetError
from jaxport.verify.accuracy import Accuracy, gate, is_class_scores


def test_sqnr_is_signal_over_noise_in_db() -> None:
    want = np.array([[3.0, 4.0]], np.float32)  # Σ want² = 25
    got = np.array([[3.5, 4.0]], np.float32)  # Σ noise² = 0.25 → 20 dB
    acc = Accuracy()
    acc.add("f/y", got, want)
    out = acc.to_json()["f/y"]
    assert out["sqnr_db"] == pytest.approx(20.0)
    assert out["max_abs_err"] == pytest.approx(0.5) and out["rel_err"] == pytest.approx(0.125)
    assert out["top1"] == 1.0 and "top5" not in out  # 2 classes: top-5 says nothing


def test_sqnr_folds_over_cases() -> None:
    acc = Accuracy()
    acc.add("f/y", np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]]))  # exact: signal 1
    acc.add("f/y", np.array([[0.0, 1.1]]), np.array([[0.0, 1.0]]))  # signal 1, noise 0.01
    assert acc.to_json()["f/y"]["sqnr_db"] == pytest.approx(10 * np.log10(2 / 0.01))


def test_top1_and_top5_agreement() -> None:
    rng = np.random.default_rng(0)
    want = rng.standard_normal((20, 10))
    swapped = want.copy()
    rows = np.arange(10)
    best = want.argmax(-1)[rows]
    second = np.argsort(-want, -1)[rows, 1]
    swapped[rows, best], swapped[rows, second] = want[rows, second], want[rows, best]
    acc = Accuracy()
    acc.add("f/scores", swapped, want)
    out = acc.to_json()["f/scores"]
    assert out["top1"] == pytest.approx(0.5) and out["top5"] == 1.0 and out["rows"] == 20


def test_class_score_rule() -> None:
    assert is_class_scores(np.zeros((3, 2), np.float32))
    assert not is_class_scores(np.zeros((3, 1), np.float32))  # one column: a score, not classes
    assert not is_class_scores(np.zeros((3, 4, 2), np.float32))  # rank 3: a sequence
    assert not is_class_scores(np.zeros((3, 4), np.int32))
    assert not is_class_scores(np.array([[np.nan, 1.0]]))


def test_exact_match_and_nan_are_reported_as_json() -> None:
    acc = Accuracy()
    acc.add("f/exact", np.ones((2, 3)), np.ones((2, 3)))
    acc.add("f/nan", np.array([[np.nan, 1.0]]), np.array([[1.0, 1.0]]))
    out = json.loads(json.dumps(acc.to_json(), allow_nan=False))
    assert out["f/exact"]["sqnr_db"] is None  # no noise
    assert out["f/nan"]["sqnr_db"] == -999.0  # a NaN where JAX has a value: infinite noise
    assert gate(acc, 20.0, None) == ["f/nan: SQNR -inf dB is below the threshold 20 dB"]


def test_gate_names_output_figure_and_threshold() -> None:
    acc = Accuracy()
    acc.add("f/y", np.array([[3.5, 4.0]]), np.array([[3.0, 4.0]]))  # 20 dB, top-1 agrees
    acc.add("f/z", np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))  # noise 2 of 1: -3 dB
    assert gate(acc, 19.9, None) == ["f/z: SQNR -3.0 dB is below the threshold 19.9 dB"]
    assert gate(acc, None, 1.0) == ["f/z: top-1 agreement 0.000 (0 of 1 rows) is below the "
                                    "threshold 1"]
    assert gate(acc, 20.1, None)[0] == "f/y: SQNR 20.0 dB is below the threshold 20.1 dB"
    assert gate(acc, None, None) == []


def test_ints_are_not_measured_and_shapes_must_match() -> None:
    acc = Accuracy()
    acc.add("f/ids", np.array([1, 2]), np.array([1, 3]))
    assert acc.to_json() == {}
    with pytest.raises(TargetError, match="shape"):
        acc.add("f/y", np.zeros((1, 3)), np.zeros((1, 4)))
