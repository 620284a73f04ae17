"""Memory drift of a training loop: resident set size and tracemalloc over many steps.

    python bench/memory_drift.py                 # 10,000 steps, report the drift
    python bench/memory_drift.py --steps 2000 --leak 4096   # a 4 KiB leak per step, for scale

A small CNN (conv, BatchNorm, ReLU, max-pool, dropout, linear, cross-entropy; SGD with
momentum) is trained on fixed random batches. After ``--warmup`` steps (caches, the kernels'
per-thread scratch buffers and the optimiser state are allocated by then) the RSS (from
/proc/self/statm) and the bytes tracemalloc traces (after a full garbage collection) are
sampled every ``--every`` steps; the drift is the growth per step from the median of the first
samples to the median of the last ones. ``tests/reliability/test_memory.py`` runs the same loop
for 2,000 steps and asserts it is flat (and that a leak of one small buffer per step is
detected).
"""
import argparse
import gc
import os
import sys
import time
import tracemalloc

import numpy as np


def rss_bytes():
    """Resident set size of this process (Linux /proc; ru_maxrss elsewhere is a peak)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def make_step(seed=0, batch=4):
    """A closure running one training step of a tiny CNN on one of 8 fixed batches."""
    import fastconv as fc
    from fastconv import nn
    from fastconv.optim import SGD

    fc.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Dropout(0.1), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 3))
    opt = SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(seed)
    batches = [(fc.tensor(rng.standard_normal((batch, 1, 8, 8)).astype(np.float32)),
                rng.integers(0, 3, batch)) for _ in range(8)]
    state = {"i": 0}

    def step():
        x, y = batches[state["i"] % len(batches)]
        state["i"] += 1
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return float(loss.data)

    return step


def run(steps, warmup=200, every=50, leak=0, seed=0, traced_steps=None, traced_every=None):
    """Train ``steps`` steps; return ``(rss, traced)``, two lists of ``(step, bytes)``.

    RSS is sampled every ``every`` steps from ``warmup`` on. tracemalloc (which makes a step
    several times slower) runs for the last ``traced_steps`` steps (default: all after
    warm-up) and is sampled every ``traced_every`` of them after a full ``gc.collect()`` (which
    also empties CPython's free lists), so it counts only memory still alive. ``leak`` > 0
    keeps one buffer of that many bytes per step alive (to show the scale of a real leak).
    """
    step = make_step(seed)
    traced_steps = steps - warmup if traced_steps is None else traced_steps
    traced_every = traced_every or every
    trace_from = steps - traced_steps
    kept = []
    # preallocated, so that recording a sample allocates nothing that stays traced
    rss = np.zeros(((steps - warmup) // every + 1, 2), np.int64)
    traced = np.zeros((traced_steps // traced_every + 1, 2), np.int64)
    n_rss = n_traced = 0
    try:
        for i in range(1, steps + 1):
            if i == trace_from + 1:
                gc.collect()
                tracemalloc.start()
            step()
            if leak:
                kept.append(np.ones(leak, np.uint8))
            if i >= warmup and (i - warmup) % every == 0:
                rss[n_rss] = (i, rss_bytes())
                n_rss += 1
            if i > trace_from and (i - trace_from) % traced_every == 0:
                gc.collect()
                traced[n_traced] = (i, tracemalloc.get_traced_memory()[0])
                n_traced += 1
    finally:
        tracemalloc.stop()
    return ([tuple(int(v) for v in row) for row in rss[:n_rss]],
            [tuple(int(v) for v in row) for row in traced[:n_traced]])


def drift(samples, k=3):
    """Growth in bytes per step of ``[(step, bytes)]``: median of the last k samples minus the
    median of the first k, over the steps between them."""
    a = np.array(samples, dtype=np.float64)
    k = max(1, min(k, len(a) // 2))
    steps = np.median(a[-k:, 0]) - np.median(a[:k, 0])
    return float(np.median(a[-k:, 1]) - np.median(a[:k, 1])) / max(steps, 1)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--every", type=int, default=250)
    p.add_argument("--leak", type=int, default=0, help="bytes deliberately leaked per step")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    import fastconv as fc
    if args.threads:
        fc.set_num_threads(args.threads)
    t0 = time.time()
    rss, traced = run(args.steps, args.warmup, args.every, args.leak,
                      traced_every=args.every)
    elapsed = time.time() - t0
    print(f"memory drift over {args.steps} steps ({elapsed:.1f} s with tracemalloc on after "
          f"step {args.warmup}, {fc.get_num_threads()} thread(s), fastconv {fc.__version__}, "
          f"leak {args.leak} B/step)")
    print(f"{'step':>8} {'RSS MiB':>10} {'traced KiB':>11}")
    shown = max(1, len(rss) // 12)
    for (i, r), (_, t) in list(zip(rss, traced))[::shown] + [(rss[-1], traced[-1])]:
        print(f"{i:>8} {r / 2 ** 20:>10.2f} {t / 2 ** 10:>11.1f}")
    measured = rss[-1][0] - rss[0][0]
    d_rss, d_traced = drift(rss), drift(traced)
    print(f"drift over steps {rss[0][0]}..{rss[-1][0]}: RSS {d_rss:+.1f} B/step "
          f"({d_rss * measured / 2 ** 10:+.0f} KiB), tracemalloc {d_traced:+.2f} B/step "
          f"({d_traced * measured / 2 ** 10:+.1f} KiB); total RSS change "
          f"{(rss[-1][1] - rss[0][1]) / 2 ** 10:+.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
