"""A rank that dies, hangs or raises must not leave the others waiting forever: they exit
with a clear error within the collective timeout (FASTCONV_DIST_TIMEOUT)."""
import pytest

from mpitest import is_hydra, needs_mpi, run_mpi

pytestmark = needs_mpi

TIMEOUT = 3  # seconds, what the ranks get as FASTCONV_DIST_TIMEOUT
SLACK = 40   # start-up of two Python processes on a busy machine, and the abort

# Data-parallel training of a small model; rank 1 misbehaves at step 3.
SCRIPT = r"""
import os, sys, time
import numpy as np
import fastconv as fc
import fastconv.functional as F
import fastconv.distributed as dist
from fastconv import nn

mode = sys.argv[1]
dist.init_process_group()
fc.set_num_threads(1)
rank = dist.get_rank()
model = dist.DistributedDataParallel(nn.Sequential(nn.Flatten(), nn.Linear(12, 3)))
opt = fc.optim.SGD(model.parameters(), lr=0.1)
x = fc.tensor(np.ones((4, 3, 2, 2), np.float32))
y = fc.tensor(np.zeros(4, np.int64))
for step in range(6):
    if rank == 1 and step == 3:
        if mode == "exit":
            os._exit(3)
        if mode == "hang":
            time.sleep(600)
        if mode == "raise":
            raise ValueError("rank 1 failed on purpose")
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()
print("rank", rank, "finished", flush=True)
"""


def _run(mode, timeout, launcher_args=(), limit=None):
    """Run the job; a job still running after ``limit`` seconds fails the test."""
    return run_mpi(2, SCRIPT, args=(mode,), timeout=limit or timeout + SLACK + 60,
                   env={"FASTCONV_DIST_TIMEOUT": str(timeout)}, launcher_args=launcher_args)


def _clear_timeout_error(stderr):
    return (f"did not complete within {TIMEOUT} s on rank 0 of 2" in stderr
            and "DistributedTimeoutError" in stderr and "FASTCONV_DIST_TIMEOUT" in stderr)


def test_hung_rank_makes_the_others_fail_with_a_timeout():
    proc, seconds = _run("hang", TIMEOUT)
    assert proc.returncode != 0
    assert _clear_timeout_error(proc.stderr), proc.stderr
    assert "rank 0 finished" not in proc.stdout
    assert seconds < TIMEOUT + SLACK, seconds


def test_dead_rank_ends_the_job():
    # MPICH's launcher kills the other ranks as soon as one exits early.
    proc, seconds = _run("exit", TIMEOUT)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "finished" not in proc.stdout
    assert seconds < TIMEOUT + SLACK, seconds


@pytest.mark.skipif(not is_hydra(), reason="-disable-auto-cleanup is MPICH Hydra's option")
def test_dead_rank_without_launcher_cleanup_times_out_clearly():
    # When the launcher leaves the survivors running, the collective's deadline ends them.
    proc, seconds = _run("exit", TIMEOUT, launcher_args=("-disable-auto-cleanup",))
    assert proc.returncode != 0
    assert _clear_timeout_error(proc.stderr), proc.stderr
    assert "gradient all-reduce" in proc.stderr
    assert seconds < TIMEOUT + SLACK, seconds


def test_exception_in_one_rank_aborts_the_job_at_once():
    # A long timeout: the job must end because the failing rank aborts it (MPI_Abort from
    # the excepthook init_process_group installs), not by timing out.
    proc, _ = _run("raise", 600, limit=SLACK)
    assert proc.returncode != 0
    assert "ValueError: rank 1 failed on purpose" in proc.stderr
    assert "rank 0 finished" not in proc.stdout
