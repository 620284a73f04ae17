"""Thread scaling: each convolution layer at 1 thread and at T threads, timed in alternation.

Speedup = 1-thread time / T-thread time of the same call, the two timed in turn within each
repeat (``_timing.interleaved_ms``), each timed call after an untimed one at its thread
count. If another process takes a core for a while, both timings are slowed together. A
T-thread run that gets one core's worth for minutes still shows up as a low speedup: read it
next to the GEMM probe that ``fastconv bench`` prints before and after. Forward is the
public op under ``no_grad`` with the algorithm ``algorithm=None`` picks; backward is that of
``bench.conv`` (input + weight gradient).
"""
import fastconv as fc
from fastconv.functional._dispatch import select_conv_algorithm

from ._timing import interleaved_ms, under_no_grad
from .conv import LAYERS, Case

SETTLE_MS = 1e-3   # any positive value: one untimed call before each timed one

# the big stride-1 3x3 layers (and the transposed one), where the cores are the limit
DEFAULT_LAYERS = ("mnist_c2", "resnet_cifar_64", "resnet_cifar_128", "resnet_cifar_256",
                  "dilated_d2", "transposed_up")


def _at(threads, fn):
    def run():
        fc.set_num_threads(threads)
        fn()
    return run


def run(threads=None, repeat=5, layers=None, with_reference=True, with_torch=True,
        out=print):
    """Time the layers (default: ``DEFAULT_LAYERS``; any of ``bench.conv.LAYERS``) at 1 and
    ``threads`` threads (default: all cores); return row dicts and print a table through
    ``out``. ``with_reference`` and ``with_torch`` are accepted for the CLI and unused: this
    table compares fastconv with itself."""
    previous = fc.get_num_threads()
    threads = previous if threads is None else threads
    names = list(layers or DEFAULT_LAYERS)
    unknown = sorted(set(names) - set(LAYERS))
    if unknown:
        raise ValueError(f"scaling: unknown layers {unknown}; expected some of {sorted(LAYERS)}")
    header = (f"{'layer':18s} {'algorithm':10s} {'pass':4s} {'1t ms':>8s} {f'{threads}t ms':>8s} "
              f"{'speedup':>8s} {f'{threads}t GF/s':>9s}")
    out(f"thread scaling, float32: 1 thread against {threads}, timed in alternation; "
        f"speedup = 1-thread time / {threads}-thread time")
    out(header)
    out("-" * len(header))
    rows = []
    try:
        for name in names:
            case = Case(name, LAYERS[name])
            fwd_algorithm = select_conv_algorithm(case.params, False)
            bwd_algorithm = select_conv_algorithm(case.params, True)
            passes = (("fwd", under_no_grad(case.fc_forward(fwd_algorithm)), case.flops,
                       fwd_algorithm),
                      ("bwd", case.fc_backward(bwd_algorithm), 2 * case.flops, bwd_algorithm))
            for pass_name, fn, flops, algorithm in passes:
                # each timed call after an untimed one at the same count, so that the
                # second thread is awake (not timed waking up after a 1-thread call)
                one, many = interleaved_ms([_at(1, fn), _at(threads, fn)], repeat,
                                           settle_ms=SETTLE_MS)
                row = {"layer": name, "algorithm": algorithm, "pass": pass_name,
                       "threads": threads, "ms_1t": one, "ms": many, "speedup": one / many,
                       "gflops": flops / many / 1e6}
                rows.append(row)
                out(f"{name:18s} {algorithm:10s} {pass_name:4s} {one:8.2f} {many:8.2f} "
                    f"{row['speedup']:8.2f} {row['gflops']:9.1f}")
    finally:
        fc.set_num_threads(previous)
    return rows
