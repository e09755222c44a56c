"""Linear algebra: refused, precisely.

The decompositions and solvers of `jax.lax.linalg` (what `jnp.linalg` and `jax.scipy.linalg`
call) have TF kernels (Cholesky, Qr, Svd, …), but neither runtime of the lowered path runs
them: the TF.js converter maps none of these ops, and LiteRT has no builtin for them (TF's
kernels run only as select TF ops, which the lowered TFLite does not ship). Each is therefore
refused with its own reason and a hint, not a generic "no lowering". The TFLite target then
takes the orbax path (see docs/lowering.md), which runs through XLA's kernels if the converter
takes them; the savedmodel target always does.
"""

from __future__ import annotations

from jaxport.lowering.registry import refuse

_HINT = ("compute the decomposition outside the exported function (ahead of time on the "
         "weights, passing its factors as params or inputs), or build only the savedmodel target, "
         "which runs it through XLA")

# primitive -> the TF op it would be (the kernel TF.js and LiteRT lack)
_KERNELS = {
    "cholesky": "Cholesky", "cholesky_update": "Cholesky", "triangular_solve": "MatrixTriangularSolve",
    "lu": "Lu", "lu_pivots_to_permutation": "Lu", "qr": "Qr", "geqrf": "Qr", "geqp3": "Qr",
    "householder_product": "Qr", "ormqr": "Qr", "svd": "Svd", "eig": "Eig", "eigh": "SelfAdjointEigV2",
    "schur": "Schur", "hessenberg": "Hessenberg", "tridiagonal": "Tridiagonal",
    "tridiagonal_solve": "TridiagonalSolve", "symmetric_product": "a symmetric rank-k update",
}
for _name, _op in _KERNELS.items():
    refuse(_name, family="linalg",
           why=f"linear algebra ({_op}): TF.js has no kernel for it and LiteRT no builtin",
           hint=_HINT)
