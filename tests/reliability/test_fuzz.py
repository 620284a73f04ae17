"""Fuzzing: hypothesis draws shapes, parameters, dtypes, memory layouts and thread counts for
every kernel op (the table in ``bench/fuzz_ops.py``: conv2d and conv_transpose2d with every
algorithm of ``fc.conv_algorithms()`` and automatic choice, the poolings, batch_norm, the
activations, linear, interpolate, pixel_shuffle/unshuffle and the losses) and checks that
each call either raises a clear TypeError/ValueError/IndexError for an invalid call, or
matches ``fastconv.reference`` forward and backward.

A modest number of examples per op here; ``python bench/fuzz.py`` runs >= 100,000 calls in
subprocesses (``FASTCONV_FUZZ_EXAMPLES``), so that a crash is reported with its arguments.
"""
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

import fastconv as fc
from fctest import run_python

hypothesis = pytest.importorskip("hypothesis", reason="the fuzz test needs hypothesis "
                                 "(pip install .[test])")
from hypothesis import HealthCheck, assume, given, note, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"fastconv_bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fo = _load("fuzz_ops")


class HypothesisDraw:
    """The ``draw`` interface of ``fuzz_ops`` over hypothesis's ``data()`` (shrinkable)."""

    def __init__(self, data):
        self.data = data

    def int(self, lo, hi):
        return self.data.draw(st.integers(lo, hi))

    def choice(self, options):
        return self.data.draw(st.sampled_from(options))

    def rare(self):
        return self.data.draw(st.integers(0, 15)) == 15


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = fc.get_num_threads()
    yield
    fc.set_num_threads(threads)


@pytest.mark.parametrize("op", sorted(fo.OPS))
@settings(max_examples=int(os.environ.get("FASTCONV_FUZZ_TEST_EXAMPLES", "12")),
          deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.filter_too_much])
@given(data=st.data())
def test_clear_error_or_matches_reference(op, data):
    case = fo.draw_case(HypothesisDraw(data), op)
    note(json.dumps(case))
    assume(fo.known_bug(case) is None)    # pinned by a strict xfail in test_kernel_regressions.py instead
    assert fo.check(case) in ("ok", "rejected")


def test_table_covers_every_kernel_op():
    """A new kernel op or conv algorithm must be added to the fuzz table."""
    ops = {name.split(":")[0] for name in fo.OPS}
    kernel_ops = {"conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d",
                  "adaptive_avg_pool2d", "adaptive_max_pool2d", "lp_pool2d", "batch_norm",
                  "relu", "leaky_relu", "elu", "prelu", "sigmoid", "tanh", "softmax",
                  "log_softmax", "linear", "interpolate", "pixel_shuffle", "pixel_unshuffle",
                  "cross_entropy", "mse_loss"}
    assert kernel_ops <= ops, kernel_ops - ops
    for alg in fc.conv_algorithms():
        assert f"conv2d:{alg}" in fo.OPS and f"conv_transpose2d:{alg}" in fo.OPS


def test_valid_and_invalid_calls_are_both_drawn():
    """The long run must exercise both outcomes for every op (not just errors)."""
    seen = {}
    for i in range(800):
        case = fo.case_for(11, i)
        seen.setdefault(case["op"], set()).add(fo.check(case))
    assert set(seen) == set(fo.OPS)
    for op, outcomes in seen.items():
        assert "ok" in outcomes, op
    assert sum("rejected" in o for o in seen.values()) >= len(seen) - 4


def test_long_runner_reports_a_crash_with_its_arguments():
    """bench/fuzz.py survives a worker killed by SIGSEGV, names the case that did it, and
    carries on with the next one."""
    r = run_python([str(BENCH / "fuzz.py"), "--examples", "25", "--batch", "25", "--seed",
                    "5", "--crash-at", "17"], timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "25 calls" in r.stdout and "crash 1" in r.stdout, r.stdout
    assert "CRASH case 5:17" in r.stdout and "died with exit status -11" in r.stdout
    case = fo.case_for(5, 17)
    assert json.dumps(case) in r.stdout
    assert "--repro 5:17" in r.stdout
