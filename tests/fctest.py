"""Helpers shared by the tests (imported as ``from fctest import ...``; not named conftest so
that sub-directory conftest.py files cannot shadow it).

Tolerances are the project's correctness bar (issue 2):
float32: max |err| <= 1e-4 * max(1, max |ref|); float64: 1e-10 * max(1, max |ref|)."""
import numpy as np

TOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}


def assert_close(actual, expected, dtype=None, tol=None, what=""):
    """Assert ``actual`` matches the oracle ``expected`` within the project tolerance."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    dtype = np.dtype(dtype if dtype is not None else actual.dtype)
    if tol is None:
        tol = TOL[dtype]
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    if actual.size:
        err = float(np.max(np.abs(actual.astype(np.float64) - expected.astype(np.float64))))
        assert err <= tol * scale, f"{what}: max abs err {err:.3g} > {tol:.1g} x {scale:.3g}"
