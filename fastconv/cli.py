"""The ``fastconv`` command line: ``info`` and ``bench`` (``train`` arrives with the models)."""
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
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
