"""The ``fastconv`` command line: ``info``, ``bench`` and ``train``."""
import argparse
import json
import sys


def _info(args):
    import fastconv as fc
    info = fc.build_info()
    width = max(map(len, info))
    for key, value in info.items():
        print(f"{key:{width}s}  {value}")
    return 0


def _bench(args):
    import fastconv as fc
    from fastconv.bench import SUITES
    from fastconv.bench._timing import gemm_probe
    if args.suite not in SUITES:
        print(f"fastconv bench: unknown suite {args.suite!r}; expected one of {SUITES}",
              file=sys.stderr)
        return 2
    if args.threads is not None:
        fc.set_num_threads(args.threads)
    threads = fc.get_num_threads()
    probe = {"before_1t": gemm_probe(1), "before": gemm_probe(threads)}
    print(f"GEMM probe: {probe['before_1t']:.0f} GFLOP/s at 1 thread, {probe['before']:.0f} "
          f"at {threads} (if these are close, the other cores were busy: distrust the run)")
    from importlib import import_module
    suite = import_module(f"fastconv.bench.{args.suite}")
    rows = suite.run(threads=threads, repeat=args.repeat,
                     layers=args.layers.split(",") if args.layers else None,
                     with_reference=not args.no_reference)
    probe["after"] = gemm_probe(threads)
    print(f"GEMM probe after: {probe['after']:.0f} GFLOP/s at {threads} thread(s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"suite": args.suite, "threads": threads, "build": fc.build_info(),
                       "gemm_probe_gflops": probe, "rows": rows}, f, indent=1)
        print(f"wrote {args.json}")
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
                   help="kernel threads (default: all cores / OMP_NUM_THREADS)")
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
    p.add_argument("--suite", default="conv", help="which table (default: conv)")
    p.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    p.add_argument("--repeat", type=int, default=5, help="timed repeats per entry (median)")
    p.add_argument("--layers", default=None, help="comma-separated subset of the table")
    p.add_argument("--no-reference", action="store_true", help="skip the NumPy reference")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the rows as JSON")
    p.set_defaults(func=_bench)
    _add_train_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
