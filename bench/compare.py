"""fastconv against PyTorch in the same process: ``fastconv bench --compare torch``.

Tables (``--suite``, default all):

conv    every layer of :mod:`bench.conv`: forward (the public op, automatic algorithm) and
        backward (input gradient + weight gradient); GFLOP/s = 2 x MACs per pass / time.
ops     every case of :mod:`bench.ops` (pooling, BatchNorm, ReLU), forward and backward;
        GB/s = bytes the op must read and write / time.
train   whole training steps (zero_grad, forward, cross-entropy, backward, SGD momentum 0.9)
        of lenet5 (1x28x28), resnet20 and mobilenet_small (3x32x32), batch 64; images/s.
eval    eval-mode forward of the same networks: fastconv after ``fastconv.fuse`` against
        eager PyTorch, with the unfused fastconv time and the fuse speed-up alongside.
memory  peak resident memory (VmHWM) while training resnet20 at batch 64, each library
        in its own fresh process.

Both libraries run on the same arrays with the same thread count, timed interleaved
(:func:`bench._timing.interleaved_ms`: alternate repeats, median of repeats), so a phase
where another process holds a core slows both alike. Each timed call follows untimed calls
of the same library (:func:`bench._timing._settle`), as a layer in a network's loop follows
its own library's: in the ops table (sub-millisecond calls) ``bench.ops.SETTLE_MS`` of them,
so that it is not timed against the other library's still-spinning threads; in the others
one (``SETTLE_MS``), so that it does not start with caches full of the other library's
arrays. ``ratio`` is fastconv's time (or memory) over PyTorch's:
below 1, fastconv is ahead. Each table ends with the geometric mean of its ratios. A
1-thread and a T-thread GEMM probe before and after tell whether T threads really had T
cores. Before the ops table, a memory probe (a parallel STREAM copy) measures
the memory bandwidth at 1 and T threads; the ops table's "fc cp" column is fastconv's GB/s
as a fraction of it (its "pk" columns are fractions of the nominal per-core figure below).
"""
import math
import os

import fastconv as fc
from fastconv.functional._dispatch import select_conv_algorithm

from . import conv as conv_suite
from . import ops as ops_suite
from . import train_step
from ._timing import (gemm_probe, interleaved_ms, memory_probe, try_import_torch,
                      under_no_grad)

# Measured figures of the machine these benchmarks were written on (issue 6): a 2-core
# Cascade Lake VM with AVX-512, about 118 GFLOP/s of float32 FMA per core and about 26 GB/s
# of memory bandwidth per core. Elsewhere, set FASTCONV_PEAK_GFLOPS / FASTCONV_MEM_GBPS (per
# core) or pass --peak-gflops / --mem-gbps; the "% peak" columns scale with the threads.
PEAK_GFLOPS_PER_CORE = 118.0
MEM_GBPS_PER_CORE = 26.0

# conv, train and eval: one untimed call of the same library before each timed one (any
# positive value: bench._timing._settle makes at least one call). A call timed right after
# the other library's finds the caches full of that library's arrays and workspaces: on the
# 2-core Xeon VM, 2026-11-23, mobilenet_dw's forward took 2.26-3.06 ms right after PyTorch's
# (2.63-3.12 with a 5 ms sleep in between, so not spinning threads) against 1.73-2.33 ms
# right after its own, and PyTorch's 4.76-6.39 against 4.08-5.11 ms. A network's loop runs
# each layer after its own library's.
SETTLE_MS = 1e-3

TABLES = ("conv", "ops", "train", "eval", "memory")
SUITES = TABLES + ("all",)

NO_TORCH = ("fastconv bench --compare torch: PyTorch is not installed (`import torch` "
            "failed), so there is nothing to compare with. Install it (pip install torch) "
            "or run fastconv bench --suite conv|ops, which works without it.")


class TorchMissing(RuntimeError):
    """Raised by :func:`run` when PyTorch cannot be imported."""


def machine_peaks(threads, peak_gflops=None, mem_gbps=None):
    """Peak rates for ``threads`` cores: arguments, else the environment, else the
    measured constants above (all per core)."""
    per_core_flops = peak_gflops or float(os.environ.get("FASTCONV_PEAK_GFLOPS",
                                                         PEAK_GFLOPS_PER_CORE))
    per_core_bytes = mem_gbps or float(os.environ.get("FASTCONV_MEM_GBPS", MEM_GBPS_PER_CORE))
    return {"gflops_per_core": per_core_flops, "gbps_per_core": per_core_bytes,
            "gflops": per_core_flops * threads, "gbps": per_core_bytes * threads}


def make_row(table, name, pass_, fastconv_ms, torch_ms, peaks, flops=None, nbytes=None,
             images=None, **extra):
    """One row: both times, ``ratio`` = fastconv / torch, and the rates the work gives
    (``flops`` -> GFLOP/s, ``nbytes`` -> GB/s, ``images`` -> images/s) with the fraction of
    the machine's peak (from FLOPs if given, else bytes)."""
    row = {"table": table, "name": name, "pass": pass_, "fastconv_ms": fastconv_ms,
           "torch_ms": torch_ms, "ratio": fastconv_ms / torch_ms}
    for lib in ("fastconv", "torch"):
        ms = row[f"{lib}_ms"]
        if flops is not None:
            row[f"{lib}_gflops"] = flops / ms / 1e6
            row[f"{lib}_peak"] = row[f"{lib}_gflops"] / peaks["gflops"]
        if nbytes is not None:
            row[f"{lib}_gbps"] = nbytes / ms / 1e6
            if flops is None:
                row[f"{lib}_peak"] = row[f"{lib}_gbps"] / peaks["gbps"]
        if images is not None:
            row[f"{lib}_img_s"] = images / ms * 1e3
    row.update(extra)
    return row


def geomean(values):
    values = [v for v in values if v is not None and v > 0]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


# --------------------------------------------------------------------------- printing
# table: (title, [(header, key, width, decimals or None for text; "%" for a fraction)])
_COLUMNS = {
    "conv": ("convolutions, forward and backward (input + weight gradient)", [
        ("layer", "name", 18, None), ("pass", "pass", 4, None), ("algo", "algorithm", 9, None),
        ("fc ms", "fastconv_ms", 8, 2), ("torch ms", "torch_ms", 8, 2),
        ("ratio", "ratio", 6, 2), ("fc GF/s", "fastconv_gflops", 7, 1),
        ("th GF/s", "torch_gflops", 7, 1), ("fc pk", "fastconv_peak", 5, "%"),
        ("th pk", "torch_peak", 5, "%")]),
    "ops": ("pooling, BatchNorm, ReLU (GB/s: bytes read and written; cp: of the memory "
            "probe's copy rate)", [
        ("op", "name", 18, None), ("pass", "pass", 4, None),
        ("fc ms", "fastconv_ms", 8, 3), ("torch ms", "torch_ms", 8, 3),
        ("ratio", "ratio", 6, 2), ("fc GB/s", "fastconv_gbps", 7, 1),
        ("th GB/s", "torch_gbps", 7, 1), ("fc pk", "fastconv_peak", 5, "%"),
        ("th pk", "torch_peak", 5, "%"), ("fc cp", "fastconv_copy", 5, "%")]),
    "train": ("training steps, SGD momentum 0.9 (GF/s: 6 x MACs per image)", [
        ("model", "name", 16, None), ("batch", "batch", 5, 0),
        ("fc ms", "fastconv_ms", 8, 1), ("torch ms", "torch_ms", 8, 1),
        ("ratio", "ratio", 6, 2), ("fc img/s", "fastconv_img_s", 9, 0),
        ("th img/s", "torch_img_s", 9, 0), ("fc GF/s", "fastconv_gflops", 7, 1),
        ("fc pk", "fastconv_peak", 5, "%"), ("th pk", "torch_peak", 5, "%")]),
    "eval": ("eval forward: fastconv.fuse(model) against eager PyTorch", [
        ("model", "name", 16, None), ("batch", "batch", 5, 0),
        ("fused ms", "fastconv_ms", 8, 2), ("torch ms", "torch_ms", 8, 2),
        ("ratio", "ratio", 6, 2), ("unfused", "unfused_ms", 8, 2),
        ("fuse x", "fuse_speedup", 6, 2), ("fc img/s", "fastconv_img_s", 9, 0),
        ("th img/s", "torch_img_s", 9, 0)]),
    "memory": ("peak resident memory while training (fresh process each)", [
        ("model", "name", 16, None), ("batch", "batch", 5, 0),
        ("fc MB", "fastconv_mb", 8, 0), ("torch MB", "torch_mb", 8, 0),
        ("ratio", "ratio", 6, 2), ("fc import", "fastconv_import_mb", 9, 0),
        ("th import", "torch_import_mb", 9, 0)]),
}


def _cell(value, width, decimals):
    if value is None:
        return f"{'-':>{width}s}"
    if decimals is None:
        return f"{value:{width}s}"
    if decimals == "%":
        return f"{100 * value:{width - 1}.0f}%"
    return f"{value:{width}.{decimals}f}"


class TablePrinter:
    """Prints a table's header on its first row, each row as it comes, and the geometric
    mean of its ratios at the end."""

    def __init__(self, table, threads, out=print):
        self.table, self.threads, self.out = table, threads, out
        self.title, self.columns = _COLUMNS[table]
        self.rows = []

    def add(self, row):
        if not self.rows:
            header = " ".join(f"{h:{w}s}" if d is None else f"{h:>{w}s}"
                              for h, _, w, d in self.columns)
            self.out("")
            self.out(f"[{self.table}] {self.title}; {self.threads} thread(s); "
                     f"ratio = fastconv / PyTorch")
            self.out(header)
            self.out("-" * len(header))
        self.rows.append(row)
        self.out(" ".join(_cell(row.get(k), w, d) for _, k, w, d in self.columns))

    def close(self):
        g = geomean(r["ratio"] for r in self.rows)
        if g is not None:
            self.out(f"geometric mean of ratios ({self.table}, {len(self.rows)} rows): {g:.3f}")
        return g


# --------------------------------------------------------------------------- tables
def _ignore(row):
    pass


def _selected(names, layers):
    return [n for n in names if not layers or n in layers]


def conv_rows(torch, peaks, repeat, layers=None, specs=None, emit=_ignore):
    """Rows of the conv table; ``specs`` ({name: spec}) defaults to ``bench.conv.LAYERS``."""
    specs = conv_suite.LAYERS if specs is None else specs
    rows = []
    for name in _selected(specs, layers):
        case = conv_suite.Case(name, specs[name])
        t_fwd, t_bwd = case.torch_fns(torch)
        bwd_algorithm = select_conv_algorithm(case.params, True)
        passes = (
            ("fwd", under_no_grad(case.fc_forward(None)), t_fwd, case.flops,
             select_conv_algorithm(case.params, False)),
            ("bwd", case.fc_backward(bwd_algorithm), t_bwd, 2 * case.flops, bwd_algorithm))
        for pass_, fc_fn, torch_fn, flops, algorithm in passes:
            ours, theirs = interleaved_ms([fc_fn, torch_fn], repeat, settle_ms=SETTLE_MS)
            rows.append(make_row("conv", name, pass_, ours, theirs, peaks, flops=flops,
                                 algorithm=algorithm, shape=list(specs[name])))
            emit(rows[-1])
    return rows


def ops_rows(torch, peaks, repeat, layers=None, cases=None, copy_gbps=None, emit=_ignore):
    """Rows of the ops table; ``cases`` defaults to ``bench.ops.cases()``; ``copy_gbps`` (the
    memory probe's rate) adds ``fastconv_copy``, fastconv's GB/s as a fraction of it."""
    rows = []
    for op in ops_suite.cases() if cases is None else cases:
        if layers and op.name not in layers:
            continue
        t_fwd, t_bwd = op.torch_fns(torch)
        fwd_bytes, bwd_bytes = op.bytes()
        for pass_, fc_fn, torch_fn, nbytes in (
                ("fwd", under_no_grad(op.fc_forward()), t_fwd, fwd_bytes),
                ("bwd", op.fc_backward(), t_bwd, bwd_bytes)):
            ours, theirs = interleaved_ms([fc_fn, torch_fn], repeat,
                                         settle_ms=ops_suite.SETTLE_MS)
            rows.append(make_row("ops", op.name, pass_, ours, theirs, peaks, nbytes=nbytes,
                                 shape=list(op.shape)))
            if copy_gbps:
                rows[-1]["fastconv_copy"] = rows[-1]["fastconv_gbps"] / copy_gbps
            emit(rows[-1])
    return rows


def train_rows(torch, peaks, repeat, layers=None, batch=64, emit=_ignore):
    rows = []
    for name in _selected(train_step.MODELS, layers):
        pair = train_step.TrainPair(name, torch, batch)
        # two warm-up steps: the first allocates the optimiser state and touches new pages
        ours, theirs = interleaved_ms([pair.fc_step, pair.torch_step], repeat, warmup=2,
                                      settle_ms=SETTLE_MS)
        rows.append(make_row("train", name, "step", ours, theirs, peaks, flops=pair.flops,
                             images=batch, batch=batch))
        emit(rows[-1])
    return rows


def eval_rows(torch, peaks, repeat, layers=None, batch=64, emit=_ignore):
    rows = []
    for name in _selected(train_step.MODELS, layers):
        pair = train_step.EvalPair(name, torch, batch)
        fused, unfused, theirs = interleaved_ms(
            [pair.fc_fused_forward, pair.fc_forward, pair.torch_forward], repeat,
            settle_ms=SETTLE_MS)
        rows.append(make_row("eval", name, "forward", fused, theirs, peaks, flops=pair.flops,
                             images=batch, batch=batch, unfused_ms=unfused,
                             fuse_speedup=unfused / fused))
        emit(rows[-1])
    return rows


def memory_rows(threads, layers=None, batch=64, model="resnet20", emit=_ignore):
    if layers and model not in layers:
        return []
    ours = train_step.peak_memory("fastconv", threads, model, batch)
    theirs = train_step.peak_memory("torch", threads, model, batch)
    row = {"table": "memory", "name": model, "pass": "train", "batch": batch,
           "fastconv_mb": ours["peak_mb"], "torch_mb": theirs["peak_mb"],
           "ratio": ours["peak_mb"] / theirs["peak_mb"],
           "fastconv_import_mb": ours["import_mb"], "torch_import_mb": theirs["import_mb"]}
    emit(row)
    return [row]


# --------------------------------------------------------------------------- GEMM probe
def probe_cores(threads):
    """GEMM GFLOP/s at 1 and ``threads`` threads, and how many cores' worth that is."""
    one = gemm_probe(1)
    many = gemm_probe(threads) if threads > 1 else one
    return {"gflops_1t": one, "gflops": many, "threads": threads, "scaling": many / one}


def probe_verdict(probe):
    t, s = probe["threads"], probe["scaling"]
    text = (f"GEMM probe: {probe['gflops_1t']:.0f} GFLOP/s at 1 thread, "
            f"{probe['gflops']:.0f} at {t}: {s:.2f}x")
    if t == 1:
        return text + " (1 thread: nothing to check)"
    if s >= 0.8 * t:
        return text + f" -> yes, {t} threads got {t} cores"
    return (text + f" -> NO, {t} threads got about {s:.1f} cores' worth (another process "
            "was busy): ratios are still like for like, absolute rates are low")


def probe_memory(threads):
    """The memory probe's GB/s at 1 and ``threads`` threads."""
    one = memory_probe(1)
    many = memory_probe(threads) if threads > 1 else one
    return {"gbps_1t": one, "gbps": many, "threads": threads}


def memory_verdict(probe):
    return (f"memory probe (parallel copy, bytes read + written): {probe['gbps_1t']:.1f} GB/s "
            f"at 1 thread, {probe['gbps']:.1f} at {probe['threads']}")


# --------------------------------------------------------------------------- driver
def expand_suites(suite):
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; expected one of {SUITES}")
    return TABLES if suite == "all" else (suite,)


def run(suite="all", threads=None, repeat=5, layers=None, batch=64, peak_gflops=None,
        mem_gbps=None, probe=True, out=print, torch=None):
    """Run the tables of ``suite`` and return a JSON-ready dict: ``rows``, ``geomean``
    per table, ``peaks``, ``gemm_probe`` (before/after), ``memory_probe`` (with the ops
    table) and the versions.

    Raises :class:`TorchMissing` without PyTorch and ``ValueError`` for an unknown suite or
    names in ``layers`` that no selected table has."""
    tables = expand_suites(suite)
    torch = torch or try_import_torch()
    if torch is None:
        raise TorchMissing(NO_TORCH)
    if layers:
        known = set()
        if "conv" in tables:
            known.update(conv_suite.LAYERS)
        if "ops" in tables:
            known.update(op.name for op in ops_suite.cases())
        if {"train", "eval", "memory"} & set(tables):
            known.update(train_step.MODELS)
        unknown = sorted(set(layers) - known)
        if unknown:
            raise ValueError(f"unknown names {unknown} for suite {suite!r}; expected some of "
                             f"{sorted(known)}")
    if threads is not None:
        fc.set_num_threads(threads)
    threads = fc.get_num_threads()
    torch.set_num_threads(threads)
    peaks = machine_peaks(threads, peak_gflops, mem_gbps)
    result = {"compare": "torch", "suite": suite, "threads": threads, "repeat": repeat,
              "batch": batch, "fastconv_version": fc.__version__,
              "torch_version": torch.__version__, "peaks": peaks, "gemm_probe": {},
              "geomean": {}, "rows": []}
    out(f"fastconv {fc.__version__} vs PyTorch {torch.__version__}, float32, {threads} "
        f"thread(s), median of {repeat} interleaved repeats; peak {peaks['gflops']:.0f} "
        f"GFLOP/s, {peaks['gbps']:.0f} GB/s ({threads} x {peaks['gflops_per_core']:.0f} "
        f"GFLOP/s, {peaks['gbps_per_core']:.0f} GB/s per core)")
    if probe:
        result["gemm_probe"]["before"] = probe_cores(threads)
        out(probe_verdict(result["gemm_probe"]["before"]) + " [before]")
    for table in tables:
        printer = TablePrinter(table, threads, out)
        if table == "memory":
            rows = memory_rows(threads, layers, batch, emit=printer.add)
        else:
            fn = {"conv": conv_rows, "ops": ops_rows, "train": train_rows,
                  "eval": eval_rows}[table]
            kwargs = {"batch": batch} if table in ("train", "eval") else {}
            if table == "ops" and probe:
                result["memory_probe"] = probe_memory(threads)
                out(memory_verdict(result["memory_probe"]))
                kwargs = {"copy_gbps": result["memory_probe"]["gbps"]}
            rows = fn(torch, peaks, repeat, layers, emit=printer.add, **kwargs)
        result["rows"] += rows
        result["geomean"][table] = printer.close()
    if probe:
        result["gemm_probe"]["after"] = probe_cores(threads)
        out("")
        out(probe_verdict(result["gemm_probe"]["after"]) + " [after]")
    return result


# --------------------------------------------------------------------------- plot
PLOT_MISSING = ("--plot needs matplotlib, which is not installed: pip install matplotlib "
                "(or pip install 'fastconv[plot]')")


def plot_bars(labels, series, path, ylabel, title):
    """Bar chart PNG: one group of bars per label, one bar per series ({name: values}, None
    for a missing value), log scale around a line at 1. ``ImportError`` without
    matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")  # no display needed; must precede pyplot's import
        import matplotlib.ticker
        from matplotlib import pyplot as plt
    except ImportError as exc:
        raise ImportError(PLOT_MISSING) from exc
    n = len(labels)
    fig, ax = plt.subplots(figsize=(max(8.0, 0.3 * n + 2), 5.0), constrained_layout=True)
    labelled = set()
    for i in range(n):
        present = [(j, name, values[i]) for j, (name, values) in enumerate(series.items())
                   if values[i]]
        width = 0.8 / max(1, len(present))
        for q, (j, name, value) in enumerate(present):
            # bars start at 1 (parity): up when fastconv is slower, down when faster
            x = i + (q - (len(present) - 1) / 2) * width
            ax.bar(x, value - 1, width, bottom=1, color=f"C{j}",
                   label=None if name in labelled else name)
            ax.annotate(f"{value:.2f}", (x, value), ha="center", fontsize=7,
                        va="bottom" if value >= 1 else "top")
            labelled.add(name)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    values = [v for vs in series.values() for v in vs if v] + [1.0]
    ax.set_ylim(min(values) / 1.25, max(values) * 1.25)
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks(range(n))
    ax.set_xticklabels(labels, rotation=75, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    if len(series) > 1:
        ax.legend()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_compare(result, path):
    """The ratios of a :func:`run` result, one bar per row, coloured by table."""
    rows = result["rows"]
    labels = [f"{r['table']}: {r['name']} {r['pass']}" for r in rows]
    series = {t: [r["ratio"] if r["table"] == t else None for r in rows]
              for t in dict.fromkeys(r["table"] for r in rows)}
    geo = ", ".join(f"{t} {g:.2f}" for t, g in result["geomean"].items() if g)
    plot_bars(labels, series, path, "fastconv / PyTorch (< 1: fastconv ahead)",
              f"fastconv vs PyTorch {result['torch_version']}, {result['threads']} "
              f"thread(s): time ratio (memory: peak RSS ratio)\ngeometric means: {geo}")
