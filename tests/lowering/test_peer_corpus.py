"""A fixed sample of the peer corpus (`bench/peer_corpus.py`: jax2onnx's own primitive test
cases) through `jaxport.export` for TFLite and TF.js, every artifact run again in its runtime
and compared with JAX. Every seventh runnable case (163 of them with jax2onnx 0.17.1) runs in
two worker processes; a known gap is a strict xfail carrying its reason, so a fix shows.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

_PATH = Path(__file__).resolve().parents[2] / "bench" / "peer_corpus.py"
_spec = importlib.util.spec_from_file_location("peer_corpus", _PATH)
peer_corpus = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("peer_corpus", peer_corpus)
_spec.loader.exec_module(peer_corpus)

STRIDE = 7
_TF_LINALG = "linear algebra: refused by the lowering, and the orbax path's XlaCallModule has no LiteRT builtin"
KNOWN_GAPS: dict[str, dict[str, str]] = {
    "lax/and/and_int": {"tflite": "LiteRT has no BitwiseAnd builtin", "tfjs": "TF.js cannot run BitwiseAnd on int32"},
    "lax/cholesky_update/cholesky_update_upper_3x3": {"tfjs": "linear algebra (Cholesky) is refused"},
    "lax/complex/complex_scalar": {"tflite": "LiteRT has no Complex builtin", "tfjs": "no lowering for complex"},
    "lax/convert_element_type/convert_element_type": {"tfjs": "TF.js cannot cast to this dtype"},
    "lax/eig/eig_1x1_right_only": {"tflite": _TF_LINALG, "tfjs": "linear algebra (Eig) is refused"},
    "lax/igamma/igamma_basic": {"tfjs": "no lowering for igamma"},
    "lax/lgamma/lgamma_negative_noninteger": {"tfjs": "TF.js has no Lgamma"},
    "lax/lu/lu_square_3x3": {"tflite": "linear algebra (Lu) is refused on both paths", "tfjs": "linear algebra (Lu) is refused"},
    "lax/nextafter/nextafter_special_values": {"tflite": "LiteRT has no NextAfter (nor BitwiseAnd, on the orbax path)", "tfjs": "TF.js has no NextAfter"},
    "lax/ormqr/ormqr_left": {"tflite": "jax.export cannot serialize the LAPACK ormqr kernel", "tfjs": "linear algebra (Qr) is refused"},
    "lax/qr/qr_reduced_tall": {"tflite": _TF_LINALG, "tfjs": "linear algebra (Qr) is refused"},
    "lax/reduce_xor/reduce_xor_all_false": {"tflite": "no lowering for reduce_xor; the orbax path's reduce does not convert", "tfjs": "no lowering for reduce_xor"},
    "lax/scatter-max/scatter_max_window_2d_operand_1d_indices": {"tflite": "LiteRT's stablehlo.scatter runs only update/add/mul/max/min", "tfjs": "no lowering for scatter-max"},
    "lax/scatter-sub/scatter_sub_simple_1d": {"tflite": "LiteRT's stablehlo.scatter runs only update/add/mul/max/min", "tfjs": "no lowering for scatter-sub"},
    "lax/shift_right_arithmetic/shift_right_arithmetic_vec": {"tfjs": "TF.js has no RightShift"},
    "lax/svd/svd_1x1_default": {"tflite": _TF_LINALG, "tfjs": "linear algebra (Svd) is refused"},
    "lax/triangular_solve/triangular_solve_left_basic": {"tflite": _TF_LINALG, "tfjs": "linear algebra (MatrixTriangularSolve) is refused"},
    "lax/zeta/zeta_positive": {"tfjs": "no lowering for zeta"},
    "numpy/jax.numpy.acosh/jnp_acosh_int_promote": {"tflite": "LiteRT has no Acosh builtin (on either path)"},
    "numpy/jax.numpy.bitwise_left_shift/jnp_bitwise_left_shift_basic": {"tflite": "LiteRT has no LeftShift builtin", "tfjs": "TF.js has no LeftShift"},
    "numpy/jax.numpy.bitwise_xor/jnp_bitwise_xor_int": {"tfjs": "TF.js has no BitwiseXor"},
    "numpy/jax.numpy.ldexp/jnp_ldexp_broadcast": {"tflite": "LiteRT has no BitwiseAnd builtin", "tfjs": "TF.js has no BitwiseOr, Bitcast, RightShift"},
    "numpy/jax.numpy.linalg.tensorsolve/linalg_tensorsolve_2x2_vector": {"tflite": "linear algebra (Lu) is refused on both paths", "tfjs": "linear algebra (Lu) is refused"},
    "numpy/jax.numpy.linspace/linspace_num_zero": {"tflite": "LiteRT cannot hold an empty result (Invalid tensor size)"},
    "numpy/jax.numpy.right_shift/jnp_right_shift_signed_arithmetic": {"tfjs": "TF.js has no RightShift"},
    "numpy/jax.numpy.roots/jnp_roots_quadratic_leading_zero": {"tflite": _TF_LINALG, "tfjs": "linear algebra (Eig) is refused"},
    "numpy/metadata::jnp.composite4.linalg_svdvals/jnp_linalg_svdvals_basic": {"tflite": _TF_LINALG, "tfjs": "linear algebra (Svd) is refused"},
    "numpy/metadata::jnp.composite5.linalg_eig/jnp_linalg_eig_basic": {"tflite": _TF_LINALG, "tfjs": "linear algebra (Eig) is refused"},
    "numpy/metadata::jnp.composite5.linalg_svd/jnp_linalg_svd_basic": {"tflite": _TF_LINALG, "tfjs": "linear algebra (Svd) is refused"},
    "numpy/metadata::jnp.fft.rfft/jnp_rfft_float32": {"tfjs": "no lowering for fft"},
}


def _sample() -> list:
    return peer_corpus.collect()[0][::STRIDE]


SAMPLE = _sample()


@pytest.fixture(scope="module")
def rows() -> dict[str, dict]:
    """Every sampled case's row, run once in two workers (a hung case is a row too)."""
    return {r["id"]: r for r in peer_corpus.run_cases(SAMPLE, jobs=2, timeout=120)}


def test_sample_and_gaps_are_current() -> None:
    """The sample is the one the known gaps were measured on: every gap names a sampled case."""
    ids = {c.id for c in SAMPLE}
    assert len(SAMPLE) >= 150
    assert set(KNOWN_GAPS) <= ids, sorted(set(KNOWN_GAPS) - ids)


def test_no_case_is_wrong_false_failed_or_hung(rows: dict[str, dict]) -> None:
    """The worst outcomes, for gaps too: an artifact reported ok that is not, one reported
    failed that is right, and a case that crashes or does not answer."""
    worst = [(cid, t, r[t]["outcome"], r[t]["error"] or r[t]["check"]) for cid, r in rows.items()
             for t in peer_corpus.TARGETS if r[t]["outcome"] in ("wrong", "false-failed", "crashed/hung")]
    assert not worst, worst
    assert sorted(rows) == sorted(c.id for c in SAMPLE)


def _params() -> list:
    params = []
    for c in SAMPLE:
        for target in peer_corpus.TARGETS:
            reason = KNOWN_GAPS.get(c.id, {}).get(target)
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            params.append(pytest.param(c.id, target, id=f"{c.id}-{target}", marks=marks))
    return params


@pytest.mark.parametrize("case_id,target", _params())
def test_case(rows: dict[str, dict], case_id: str, target: str) -> None:
    entry = rows[case_id][target]
    assert entry["outcome"] == "ok", entry
