"""Helpers for the tests that start MPI jobs: find ``mpiexec``, run a script on K ranks.

Imported as ``from mpitest import ...`` (tests/distributed is on sys.path for its tests).
The tests skip when mpi4py or ``mpiexec`` is missing; ``pip install '.[mpi]'`` brings both
(MPICH's ``mpiexec`` lands beside the Python executable, in the venv's bin/).
"""
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

import fastconv


def find_mpiexec():
    """The ``mpiexec`` beside this Python (the MPI that pip installed with mpi4py), else the
    first on PATH; None when there is none."""
    for name in ("mpiexec", "mpirun"):
        here = os.path.join(os.path.dirname(sys.executable), name)
        if os.access(here, os.X_OK):
            return here
    return shutil.which("mpiexec") or shutil.which("mpirun")


MPIEXEC = find_mpiexec()
HAVE_MPI4PY = importlib.util.find_spec("mpi4py") is not None

needs_mpi = pytest.mark.skipif(
    not (HAVE_MPI4PY and MPIEXEC),
    reason="needs mpi4py and mpiexec (pip install '.[mpi]')")


def is_hydra():
    """Whether ``mpiexec`` is MPICH's Hydra (it takes ``-disable-auto-cleanup``); False when
    there is no ``mpiexec`` (the tests that need one skip)."""
    if MPIEXEC is None:
        return False
    try:
        out = subprocess.run([MPIEXEC, "--version"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "HYDRA" in out


def child_env(extra=None):
    """The environment of the ranks: the fastconv this process imported first on
    PYTHONPATH (as fctest.run_python), one kernel thread each."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env["OMP_NUM_THREADS"] = "1"
    env.pop("FASTCONV_DIST_TIMEOUT", None)
    env.update(extra or {})
    return env


def run_mpi(n, script, args=(), timeout=120, env=None, launcher_args=(), cwd=None):
    """Run the Python source ``script`` on ``n`` ranks; returns (CompletedProcess, seconds).

    The script runs in ``cwd`` (default: a scratch directory) with ``args`` as
    ``sys.argv[1:]``."""
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "job.py")
        with open(path, "w") as f:
            f.write(textwrap.dedent(script))
        cmd = [MPIEXEC, *launcher_args, "-n", str(n), sys.executable, path, *map(str, args)]
        start = time.monotonic()
        proc = subprocess.run(cmd, env=child_env(env), cwd=cwd or scratch, timeout=timeout,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
        return proc, time.monotonic() - start


def check(proc, what="MPI job"):
    """Assert the job exited 0, showing its output otherwise."""
    assert proc.returncode == 0, (f"{what} exited {proc.returncode}\nstdout:\n{proc.stdout}"
                                  f"\nstderr:\n{proc.stderr}")
