"""The ``fastconv`` command line: ``info``, ``bench`` and ``train``."""
import argparse
import json
import os
import sys


def _info(args):
    import fastconv as fc
    info = fc.build_info()
    width = max(map(len, info))
    for key, value in info.items():
        print(f"{key:{width}s}  {value}")
    return 0


def _bench_package():
    """``fastconv.bench`` when installed; in a checkout built in place (``python -m
    fastconv.cli`` from the source tree), the ``bench`` package beside ``fastconv/``."""
    from importlib import import_module
    try:
        return import_module("fastconv.bench")
    except ModuleNotFoundError as exc:
        if exc.name != "fastconv.bench":
            raise
    import fastconv
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))
    here = os.path.join(root, "bench")
    if not os.path.isfile(os.path.join(here, "__init__.py")):
        raise ModuleNotFoundError("fastconv.bench is missing: reinstall fastconv "
                                  "(pip install .)")
    if root not in sys.path:
        sys.path.insert(0, root)
    bench = import_module("bench")
    if os.path.dirname(os.path.abspath(bench.__file__)) != here:
        raise ModuleNotFoundError(f"fastconv.bench is missing and 'bench' is another "
                                  f"package ({bench.__file__})")
    return bench


def _bench(args):
    import fastconv as fc
    bench = _bench_package()
    if args.plot:
        from fastconv.training.plot import matplotlib_missing
        if matplotlib_missing():
            print(f"fastconv bench: {matplotlib_missing()}", file=sys.stderr)
            return 2
    if args.compare:
        return _bench_compare(args, bench)
    from importlib import import_module
    suite_name = args.suite or "conv"
    if suite_name not in bench.SUITES:
        print(f"fastconv bench: unknown suite {suite_name!r}; expected one of "
              f"{bench.SUITES} (train, eval, memory and all need --compare torch)",
              file=sys.stderr)
        return 2
    if args.threads is not None:
        fc.set_num_threads(args.threads)
    threads = fc.get_num_threads()
    gemm_probe = import_module(f"{bench.__name__}._timing").gemm_probe
    probe = {"before_1t": gemm_probe(1), "before": gemm_probe(threads)}
    print(f"GEMM probe: {probe['before_1t']:.0f} GFLOP/s at 1 thread, {probe['before']:.0f} "
          f"at {threads} (if these are close, the other cores were busy: distrust the run)")
    suite = import_module(f"{bench.__name__}.{suite_name}")
    rows = suite.run(threads=threads, repeat=args.repeat,
                     layers=args.layers.split(",") if args.layers else None,
                     with_reference=not args.no_reference)
    probe["after"] = gemm_probe(threads)
    print(f"GEMM probe after: {probe['after']:.0f} GFLOP/s at {threads} thread(s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"suite": suite_name, "threads": threads, "build": fc.build_info(),
                       "gemm_probe_gflops": probe, "rows": rows}, f, indent=1)
        print(f"wrote {args.json}")
    if args.plot:
        compare = import_module(f"{bench.__name__}.compare")
        labels = [" ".join(str(r[k]) for k in ("layer", "op", "algorithm", "pass") if k in r)
                  for r in rows]
        if suite_name == "scaling":
            series = {"speedup": [r["speedup"] for r in rows]}
            ylabel = f"1-thread time / {threads}-thread time"
        else:
            series = {f"vs {lib}": [1 / r[f"speedup_vs_{lib}"] if f"speedup_vs_{lib}" in r
                                    else None for r in rows] for lib in ("numpy", "torch")}
            ylabel = "fastconv time / baseline time (< 1: fastconv faster)"
        compare.plot_bars(labels, {k: v for k, v in series.items() if any(v)}, args.plot,
                          ylabel, f"fastconv bench --suite {suite_name}, {threads} thread(s)")
        print(f"wrote {args.plot}")
    return 0


def _bench_compare(args, bench):
    import fastconv as fc
    from importlib import import_module
    compare = import_module(f"{bench.__name__}.compare")
    try:
        result = compare.run(suite=args.suite or "all", threads=args.threads,
                             repeat=args.repeat,
                             layers=args.layers.split(",") if args.layers else None,
                             batch=args.batch, peak_gflops=args.peak_gflops,
                             mem_gbps=args.mem_gbps)
    except compare.TorchMissing as exc:
        print(exc, file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"fastconv bench: {exc}", file=sys.stderr)
        return 2
    result["build"] = fc.build_info()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {args.json}")
    if args.plot:
        compare.plot_compare(result, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _train(args):
    from fastconv.training.command import run
    return run(args)


_TRAIN_EPILOG = """\
With no arguments: lenet5 on SyntheticShapes (generated, offline), 3 epochs of SGD
(lr 0.05, momentum 0.9, cosine schedule), batch 64.
Real datasets are read from --data-dir (default $FASTCONV_DATA, else ./data), e.g.
data/mnist/*.gz or PyTorch's data/MNIST/raw/. --resume PATH continues a run from its
checkpoint (bit-identically with the same --threads) and keeps writing to PATH unless
--checkpoint says otherwise; the run's settings come from the checkpoint.
Exit codes: 0 done, 1 diverged, 2 bad arguments/data/checkpoint, 130 interrupted."""


def _add_train_parser(sub):
    # Literal choices (those of fastconv.training.recipes): building the parser must not
    # import the compiled package.
    p = sub.add_parser("train", help="train a CNN (default: lenet5 on SyntheticShapes)",
                       description="Train a model with a progress bar, per-epoch metrics, "
                                   "early stopping, checkpoints and exact resume.",
                       epilog=_TRAIN_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    # Run settings default to None here; fastconv.training.command fills them in (from the
    # checkpoint when resuming), so that it can tell which were given.
    p.add_argument("--model", choices=("lenet5", "resnet20", "resnet18", "mobilenet_small"),
                   help="network (default: lenet5)")
    p.add_argument("--dataset", choices=("synthetic", "mnist", "fashion-mnist", "cifar10"),
                   help="default: synthetic")
    p.add_argument("--data-dir", metavar="DIR",
                   help="where datasets live (default: $FASTCONV_DATA, else ./data)")
    p.add_argument("--download", action="store_true",
                   help="download a missing dataset from its official mirror")
    p.add_argument("--epochs", type=int, metavar="E", help="default: 3")
    p.add_argument("--batch-size", type=int, metavar="B", help="default: 64")
    p.add_argument("--lr", type=float, help="learning rate (default: 0.05 for sgd, 1e-3 "
                                            "for adam/adamw)")
    p.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), help="default: sgd")
    p.add_argument("--momentum", type=float, metavar="M", help="SGD momentum (default: 0.9)")
    p.add_argument("--weight-decay", type=float, metavar="WD",
                   help="default: 0 (adamw: 0.01)")
    p.add_argument("--scheduler", choices=("none", "step", "cosine", "onecycle"),
                   help="learning-rate schedule (default: cosine, to 0 over the epochs; "
                        "step: x0.1 every epochs/3; onecycle: peaks at --lr)")
    p.add_argument("--threads", type=int, metavar="T",
                   help="kernel threads (default: all cores / OMP_NUM_THREADS; with "
                        "--distributed, per rank: the cores / the ranks on this machine)")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over the ranks of `mpirun -n K fastconv train ...` "
                        "(needs pip install 'fastconv[mpi]'); --batch-size is per rank")
    p.add_argument("--sync-batchnorm", action="store_true",
                   help="with --distributed: BatchNorm statistics over the global batch "
                        "(default: per rank, as PyTorch DDP)")
    p.add_argument("--seed", type=int, metavar="S",
                   help="seeds initialisation, shuffling, augmentation (default: 0)")
    p.add_argument("--val-split", type=float, metavar="F",
                   help="fraction of the training set held out for validation (default: 0)")
    p.add_argument("--patience", type=int, metavar="P",
                   help="early stopping: stop after P epochs without a lower validation "
                        "loss and keep the best weights (needs --val-split)")
    p.add_argument("--checkpoint", metavar="PATH",
                   help="write a checkpoint (.npz) atomically after every epoch")
    p.add_argument("--resume", metavar="PATH", help="continue the run saved in PATH")
    p.add_argument("--log", metavar="PATH", help="write a JSON log of the run")
    p.add_argument("--plot", metavar="PATH", help="save the curves as PNG (needs matplotlib)")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random crop (and flip for CIFAR-10) on the training set (default: "
                        "on for cifar10 only)")
    p.add_argument("--limit-train", type=int, metavar="N",
                   help="use only the first N training images")
    p.add_argument("--limit-test", type=int, metavar="N",
                   help="use only the first N test images")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar (one line per epoch; also when not on a terminal)")
    p.set_defaults(func=_train)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastconv", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="print build_info(): version, compiler, OpenMP, SIMD, GEMM")
    p.set_defaults(func=_info)
    p = sub.add_parser("bench", help="time kernels against the NumPy reference (and PyTorch)")
    p.add_argument("--suite", default=None,
                   help="which table: conv (default), ops, or scaling (1 thread against "
                        "--threads on the big layers); with --compare torch: conv, ops, "
                        "train, eval, memory, or all (the default there)")
    p.add_argument("--compare", choices=("torch",), default=None,
                   help="time fastconv and PyTorch interleaved in this process and print "
                        "fastconv/PyTorch ratios (needs PyTorch installed)")
    p.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    p.add_argument("--repeat", type=int, default=5, help="timed repeats per entry (median)")
    p.add_argument("--layers", default=None, help="comma-separated subset of the table")
    p.add_argument("--no-reference", action="store_true", help="skip the NumPy reference")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the rows as JSON")
    p.add_argument("--plot", default=None, metavar="PATH",
                   help="bar chart of the time ratios as PNG (needs matplotlib)")
    p.add_argument("--batch", type=int, default=64,
                   help="--compare: batch of the train, eval and memory tables (default: 64)")
    p.add_argument("--peak-gflops", type=float, default=None, metavar="G",
                   help="--compare: FMA peak per core for the %%-of-peak columns (default: "
                        "$FASTCONV_PEAK_GFLOPS, else 118, measured on the dev machine)")
    p.add_argument("--mem-gbps", type=float, default=None, metavar="B",
                   help="--compare: memory bandwidth per core (default: $FASTCONV_MEM_GBPS, "
                        "else 26)")
    p.set_defaults(func=_bench)
    _add_train_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
