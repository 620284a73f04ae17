"""Long fuzzing run: random calls of every kernel op against ``fastconv.reference``, in
subprocess batches, so that a crash is caught and reported with the arguments that cause it.

    python bench/fuzz.py                      # FASTCONV_FUZZ_EXAMPLES calls (default 100000)
    python bench/fuzz.py --examples 5000 --jobs 2 --seed 7
    python bench/fuzz.py --repro 7:12345      # replay case 12345 of seed 7 in this process

The cases come from ``bench/fuzz_ops.py`` (the table the quick hypothesis test in
``tests/reliability/test_fuzz.py`` uses too): case ``i`` of seed ``s`` is drawn from
``np.random.default_rng([s, i])``, so it can be replayed on its own. Each worker process runs
a range of case numbers and announces every case on stdout *before* running it; when a worker
dies (segfault, abort, OOM kill) or stops making progress, the parent reports that case with
its arguments and the replay command, and starts a new worker after it. Mismatches against the
reference, unclear errors, and valid calls rejected (or invalid ones accepted) are reported the
same way. Exit status 1 if anything failed.

At most ``--jobs`` worker processes run at once (default 1; each case also draws its own
thread count, 1 to 3).
"""
import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))


def _fuzz_ops():
    try:
        from . import fuzz_ops        # installed as fastconv.bench.fuzz
    except ImportError:
        sys.path.insert(0, HERE)      # run as a script from the checkout
        import fuzz_ops
    return fuzz_ops


# ----------------------------------------------------------------------------- worker

def worker(seed, start, stop, crash_at=None):
    """Run cases [start, stop) of ``seed``; one line per case on stdout. ``crash_at`` (a
    test of this harness) kills the worker with SIGSEGV when that case starts."""
    warnings.simplefilter("ignore")
    fo = _fuzz_ops()
    out = sys.stdout
    for i in range(start, stop):
        out.write(f"start {i}\n")
        out.flush()
        if i == crash_at:
            os.kill(os.getpid(), signal.SIGSEGV)
        case = {"op": "?"}
        try:
            case = fo.case_for(seed, i)
            result = fo.check(case)
        except fo.FuzzFailure as exc:
            result = "fail " + json.dumps(str(exc))
        except MemoryError as exc:
            result = "memory " + json.dumps(str(exc))
        except Exception as exc:  # check() turns expected errors into outcomes already
            result = "fail " + json.dumps(f"{type(exc).__name__}: {exc}")
        out.write(f"{result.split()[0]} {i} {case['op']} {result.partition(' ')[2]}\n")
    out.flush()


# ----------------------------------------------------------------------------- parent

class Run:
    """Counts and failures, shared by the threads that drive the workers."""

    def __init__(self, seed, crash_at=None):
        self.seed, self.crash_at = seed, crash_at
        self.lock = threading.Lock()
        self.outcomes = collections.Counter()
        self.per_op = collections.Counter()
        self.failures = []
        self.done = 0

    def record(self, kind, i, op, detail=""):
        with self.lock:
            self.done += 1
            self.outcomes[kind] += 1
            self.per_op[(op, kind)] += 1
            if kind not in ("ok", "rejected"):
                self.failures.append((kind, i, op, detail))


def _drive(run, start, stop, timeout):
    """Run cases [start, stop) in worker processes, restarting after each crash."""
    fo = _fuzz_ops()
    i = start
    while i < stop:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker",
               f"{run.seed}:{i}:{stop}"]
        if run.crash_at is not None:
            cmd += ["--crash-at", str(run.crash_at)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        progress = [time.monotonic()]
        stalled = threading.Event()

        def watchdog():
            while proc.poll() is None:
                if time.monotonic() - progress[0] > timeout:
                    stalled.set()
                    proc.kill()
                    return
                time.sleep(1)

        threading.Thread(target=watchdog, daemon=True).start()
        current = None
        for line in proc.stdout:
            progress[0] = time.monotonic()
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "start":
                current = int(rest)
                continue
            num, op, detail = (rest.split(" ", 2) + ["", ""])[:3]
            run.record(kind, int(num), op, json.loads(detail) if detail else "")
            current = None
            i = int(num) + 1
        proc.wait()
        err = proc.stderr.read()
        proc.stderr.close()
        if current is None:
            if proc.returncode != 0 and i < stop:    # died between cases: should not happen
                run.record("crash", i, "?", f"worker exit {proc.returncode}: {err[-2000:]}")
                i += 1
            continue
        case = _case_or_error(fo, run.seed, current)
        how = ("no progress for %d s (killed)" % timeout if stalled.is_set()
               else f"worker died with exit status {proc.returncode}")
        run.record("crash", current, case["op"], f"{how}; stderr: {err[-2000:]}")
        i = current + 1


def _case_or_error(fo, seed, index):
    try:
        return fo.case_for(seed, index)
    except Exception as exc:  # a bug in the table itself: still report the case number
        return {"op": "?", "error drawing the case": f"{type(exc).__name__}: {exc}"}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--examples", type=int,
                   default=int(os.environ.get("FASTCONV_FUZZ_EXAMPLES", "100000")),
                   help="number of calls (default: $FASTCONV_FUZZ_EXAMPLES or 100000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1, help="worker processes at once (1 or 2)")
    p.add_argument("--batch", type=int, default=5000, help="cases per worker process")
    p.add_argument("--timeout", type=float, default=300,
                   help="seconds without progress before a worker counts as hung")
    p.add_argument("--repro", metavar="SEED:INDEX", help="replay one case in this process")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--crash-at", type=int, help=argparse.SUPPRESS)  # tests the harness
    args = p.parse_args(argv)
    if args.worker:
        seed, start, stop = (int(v) for v in args.worker.split(":"))
        worker(seed, start, stop, args.crash_at)
        return 0
    fo = _fuzz_ops()
    if args.repro:
        seed, index = (int(v) for v in args.repro.split(":"))
        case = fo.case_for(seed, index)
        print(json.dumps(case))
        print(fo.check(case))
        return 0
    if not 1 <= args.jobs <= 2:
        p.error("--jobs must be 1 or 2 (the machine's cores are shared)")
    import fastconv
    run = Run(args.seed, args.crash_at)
    chunks = collections.deque((a, min(a + args.batch, args.examples))
                               for a in range(0, args.examples, args.batch))
    t0 = time.time()
    print(f"fuzz: {args.examples} calls, seed {args.seed}, {args.jobs} worker process(es), "
          f"fastconv {fastconv.__version__} from {os.path.dirname(fastconv.__file__)}",
          flush=True)

    def take():
        while True:
            with run.lock:
                if not chunks:
                    return
                a, b = chunks.popleft()
            _drive(run, a, b, args.timeout)
            print(f"  {run.done}/{args.examples} calls, {len(run.failures)} failures, "
                  f"{time.time() - t0:.0f} s", flush=True)

    threads = [threading.Thread(target=take) for _ in range(args.jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - t0
    print(f"\n{run.done} calls in {elapsed:.0f} s: " +
          ", ".join(f"{k} {v}" for k, v in sorted(run.outcomes.items())))
    ops = sorted({op for op, _ in run.per_op})
    for op in ops:
        counts = {k: run.per_op[(op, k)] for k in ("ok", "rejected", "fail", "crash",
                                                   "memory") if run.per_op[(op, k)]}
        print(f"  {op:28s} " + " ".join(f"{k}={v}" for k, v in counts.items()))
    for kind, i, op, detail in sorted(run.failures, key=lambda f: f[1])[:50]:
        print(f"\n{kind.upper()} case {args.seed}:{i} ({op}): {detail}")
        print(f"  arguments: {json.dumps(_case_or_error(fo, args.seed, i))}")
        print(f"  replay:    python {os.path.relpath(__file__)} --repro {args.seed}:{i}")
    if len(run.failures) > 50:
        print(f"\n... and {len(run.failures) - 50} more")
    return 1 if run.failures else 0


if __name__ == "__main__":
    sys.exit(main())
