"""Memory stays flat over a training run: 2,000 steps of a small CNN (conv, BatchNorm, ReLU,
max-pool, dropout, linear, cross-entropy, SGD with momentum), with resident memory and
tracemalloc sampled after warm-up. The same measurement must flag a leak of one 4 KiB buffer
per step, so the bounds are tight enough to mean something. ``bench/memory_drift.py`` runs
the same loop for 10,000 steps and reports the drift.

Each run is a fresh process: in one that has freed memory before (a test session), a leak
is served from the allocator's free lists and the RSS does not move.
"""
import json
from pathlib import Path

from fctest import run_python

BENCH = Path(__file__).resolve().parents[2] / "bench"
STEPS, WARMUP, EVERY = 2000, 200, 100
TRACED_STEPS, TRACED_EVERY = 300, 100     # tracemalloc makes a step ~6x slower
MAX_RSS = 1024            # bytes per step; a 4 KiB/step leak shows as ~4 KiB/step
MAX_TRACED = 16           # bytes per step still alive after a full collection

_CHILD = """
import importlib.util, json, sys
import fastconv as fc
spec = importlib.util.spec_from_file_location("memory_drift", sys.argv[1])
md = importlib.util.module_from_spec(spec)
spec.loader.exec_module(md)
fc.set_num_threads(1)
steps, warmup, every, leak, traced_steps, traced_every = map(int, sys.argv[2:])
rss, traced = md.run(steps, warmup, every, leak=leak, traced_steps=traced_steps,
                     traced_every=traced_every)
print(json.dumps({"rss": md.drift(rss), "traced": md.drift(traced), "n_rss": len(rss),
                  "n_traced": len(traced)}))
"""


def _drift(steps, leak, traced_steps=TRACED_STEPS):
    r = run_python(["-c", _CHILD, str(BENCH / "memory_drift.py"), str(steps), str(WARMUP),
                    str(EVERY), str(leak), str(traced_steps), str(TRACED_EVERY)], timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["n_rss"] == (steps - WARMUP) // EVERY + 1
    assert out["n_traced"] == traced_steps // TRACED_EVERY
    return out["rss"], out["traced"]


def test_training_memory_is_flat():
    rss, traced = _drift(STEPS, leak=0)
    assert rss < MAX_RSS, f"RSS grew {rss:.0f} B/step over {STEPS - WARMUP} steps"
    assert traced < MAX_TRACED, f"tracemalloc grew {traced:.1f} B/step"


def test_a_leak_of_one_buffer_per_step_is_detected():
    """The positive control: one 4 KiB buffer kept per step must exceed both bounds (a
    shorter run: the bounds are per step)."""
    rss, traced = _drift(600, leak=4096, traced_steps=200)
    assert rss > MAX_RSS and traced > MAX_TRACED, (rss, traced)
