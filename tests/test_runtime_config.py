"""Process-wide configuration: threads, build_info, the OpenMP wait policy default."""
import os

import pytest

import fastconv as fc
from fctest import run_python


def test_build_info_reports_the_build():
    info = fc.build_info()
    for key in ("version", "compiler", "openmp", "openmp_version", "simd", "simd_active",
                "gemm", "threads", "cores"):
        assert key in info
    assert info["version"] == fc.__version__
    assert info["simd_active"] in info["simd"]
    assert isinstance(info["openmp"], bool)
    assert (info["openmp_version"] is None) == (not info["openmp"])
    assert info["threads"] == fc.get_num_threads()


def test_set_num_threads_round_trip():
    before = fc.get_num_threads()
    try:
        fc.set_num_threads(3)
        assert fc.get_num_threads() == 3
        assert fc.build_info()["threads"] == 3
    finally:
        fc.set_num_threads(before)


def _child(code, argv=(), **env):
    base = {k: v for k, v in os.environ.items()
            if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    base.update(env)
    out = run_python(["-c", code, *argv], env=base)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_omp_num_threads_is_the_default():
    code = "import fastconv as fc; print(fc.get_num_threads())"
    assert _child(code, OMP_NUM_THREADS="3") == "3"
    assert int(_child(code)) == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("env, expected", [
    ({}, "None 3000"),
    ({"OMP_WAIT_POLICY": "active"}, "active None"),
    ({"OMP_WAIT_POLICY": "passive"}, "passive None"),
    ({"GOMP_SPINCOUNT": "1000"}, "None 1000"),
])
def test_wait_policy_default_respects_the_user(env, expected):
    code = ("import os, fastconv; "
            "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))")
    assert _child(code, **env) == expected


_FAULTS = """
import resource, sys, numpy as np, fastconv as fc
count, size = int(sys.argv[1]), int(sys.argv[2])
def step():       # a step's activations: `count` arrays of `size` floats alive together
    arrays = [np.ones(size, np.float32) for _ in range(count)]
    return sum(float(a[::4096].sum()) for a in arrays)
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(fc.build_info()["malloc_tuned"], resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not os.sys.platform.startswith("linux") or
                    __import__("platform").libc_ver()[0] != "glibc", reason="glibc only")
@pytest.mark.parametrize("count, size, untuned_faults", [(10, 1 << 20, 20 * 1000),
                                                         (2, 12 << 20, 20 * 20)],
                         ids=["4MiB", "48MiB"])
def test_freed_blocks_are_reused_without_page_faults(count, size, untuned_faults):
    """fastconv tunes glibc at import so that freed blocks stay mapped: 20 rounds of
    allocating, touching and freeing 40 MiB (10 blocks of 4 MiB) or 96 MiB (2 of 48 MiB, above
    glibc's largest mmap threshold) fault (almost) no page in; with the tuning switched off
    glibc returns the freed heap top, or unmaps the big blocks, and each round faults most of
    its pages in again (the 48 MiB blocks may come as 2 MiB huge pages: 24 faults each)."""
    argv = [str(count), str(size)]
    tuned, faults = _child(_FAULTS, argv=argv).split()
    assert tuned == "True" and int(faults) < 200, (tuned, faults)
    tuned, faults = _child(_FAULTS, argv=argv, FASTCONV_MALLOC_TUNING="0").split()
    assert tuned == "False" and int(faults) > untuned_faults, (tuned, faults)


@pytest.mark.parametrize("n", [0, 1, 1023, 1024, 5000, 3 * 1024 + 7])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_parallel_copy_copies_everything(n, threads):
    """The memory probe's copy (bench's bandwidth yardstick): every element, any length and
    thread count (pieces of 1024 values, the last one short or empty)."""
    import numpy as np
    from fastconv._ext import _runtime
    src = np.arange(n, dtype=np.float32)
    dst = np.full(n, np.nan, np.float32)
    _runtime.parallel_copy(src, dst, threads)
    assert np.array_equal(dst, src)
    with pytest.raises(ValueError, match="same length, got 5 and 4"):
        _runtime.parallel_copy(np.ones(5, np.float32), np.ones(4, np.float32), threads)


def test_small_work_runs_on_one_thread(monkeypatch):
    """Below the grain (32768 units) a kernel call gets one thread, above it all of them."""
    from fastconv import _config
    monkeypatch.setattr(_config, "_num_threads", 4)
    assert _config.GRAIN == 32768
    assert _config.threads_for(_config.GRAIN - 1) == 1
    assert _config.threads_for(_config.GRAIN) == 4
    assert _config.threads_for(macs=_config.GRAIN * _config.MACS_PER_UNIT - 1) == 1
    assert _config.threads_for(100, macs=_config.GRAIN * _config.MACS_PER_UNIT) == 4
    monkeypatch.setattr(_config, "GRAIN", 0)
    assert _config.threads_for(0) == 4


@pytest.mark.parametrize("value, expected", [("0", "0"), ("1000", "1000"), ("", "32768"),
                                             ("junk", "32768"), ("-5", "0")])
def test_grain_from_the_environment(value, expected):
    assert _child("from fastconv import _config; print(_config.GRAIN)",
                  FASTCONV_GRAIN=value) == expected


def test_small_and_large_work_give_the_same_bits():
    """The grain changes only the thread count, never a result: a small and a large conv,
    pooling and BatchNorm step with the grain off (every call on all threads) and on."""
    code = """
import hashlib, numpy as np, fastconv as fc, fastconv.functional as F
fc.set_num_threads(2)
rng = np.random.default_rng(0)
out = []
for n in (1, 16):
    x = fc.tensor(rng.standard_normal((n, 8, 12, 12)).astype(np.float32), requires_grad=True)
    w = fc.tensor(rng.standard_normal((8, 8, 3, 3)).astype(np.float32), requires_grad=True)
    y = F.max_pool2d(F.relu(F.batch_norm(F.conv2d(x, w, padding=1), None, None,
                                         training=True)), 2)
    y.sum().backward()
    out += [y.data, x.grad, w.grad]
print(hashlib.sha256(b"".join(a.tobytes() for a in out)).hexdigest())
"""
    assert _child(code, FASTCONV_GRAIN="0") == _child(code)
