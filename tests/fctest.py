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


def conv_passes(mod, x, w, b, gy, geo, threads):
    """(forward, backward_input, backward_weight) of conv kernel module ``mod`` (geo: the
    kernels' geometry arguments), outputs pre-filled with NaN so an unwritten one shows."""
    y = np.full(gy.shape, np.nan, x.dtype)
    mod.forward(x, w, b, y, *geo, threads)
    gx = np.full_like(x, np.nan)
    mod.backward_input(gy, w, gx, *geo, threads)
    gw = np.full_like(w, np.nan)
    mod.backward_weight(x, gy, gw, *geo, threads)
    return y, gx, gw


def run_python(args, env=None, timeout=600, **kwargs):
    """``subprocess.run([python, *args])`` against the same fastconv this process imported.

    The child runs in a scratch directory with PYTHONPATH pointing at the directory that holds
    the imported package, so a ``-c`` script cannot pick up an uncompiled source tree from
    the working directory (CI installs the package and runs the tests from the checkout).
    """
    import os
    import subprocess
    import sys
    import tempfile

    import fastconv

    env = dict(os.environ if env is None else env)
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run([sys.executable, *args], env=env, cwd=cwd, timeout=timeout,
                              capture_output=True, text=True, **kwargs)


SIMD_TARGETS = ("generic", "avx2", "avx512f")   # lowest first: names FASTCONV_SIMD_TARGET takes


def run_on_simd_target(target, args, timeout=600):
    """``run_python(args)`` with every kernel forced onto SIMD path ``target`` (one of
    SIMD_TARGETS, through FASTCONV_SIMD_TARGET). The calling test skips when this CPU cannot
    run that path (its best, ``build_info()["simd_active"]``, is lower), since the kernels
    would then ignore the request; the child should assert it got ``target``."""
    import os

    import pytest

    import fastconv

    best = fastconv.build_info()["simd_active"]
    if SIMD_TARGETS.index(target) > SIMD_TARGETS.index(best):
        pytest.skip(f"this CPU cannot run {target} (its best path is {best})")
    return run_python(args, env=dict(os.environ, FASTCONV_SIMD_TARGET=target), timeout=timeout)
