"""Data-parallel scaling of resnet20 training (not a test: a measurement, run by hand).

    mpiexec -n 1 python tests/distributed/scaling_resnet20.py --no-ddp   # the baseline
    mpiexec -n 2 python tests/distributed/scaling_resnet20.py             # 2 ranks x 1 thread
    mpiexec -n 2 python tests/distributed/scaling_resnet20.py --after-backward  # no overlap

Each rank trains on its own CIFAR-shaped random batch (3x32x32, --batch per rank) with
--threads kernel threads, SGD with momentum. Rank 0 prints the images per second of the whole
job (ranks x batch x steps / wall time of the timed steps), the median step and where it went: forward,
backward (including the gradient hooks), the wait after backward for the gradient messages
still in flight (with --after-backward: the whole blocking average; with a slower rank, this
includes waiting for it), and the optimiser.
``--json PATH`` appends the figures as one JSON line.
"""
import argparse
import json
import time

import numpy as np

import fastconv as fc
import fastconv.distributed as dist
import fastconv.functional as F


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=8, help="timed steps (default 8)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=64, help="per rank (default 64)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--bucket-cap-mb", type=float, default=25)
    p.add_argument("--no-ddp", action="store_true", help="plain training (1 rank only)")
    p.add_argument("--after-backward", action="store_true",
                   help="no overlap: average_gradients() after backward instead of DDP")
    p.add_argument("--json", default=None)
    args = p.parse_args()

    dist.init_process_group()
    rank, k = dist.get_rank(), dist.get_world_size()
    if args.no_ddp and k != 1:
        raise SystemExit("--no-ddp is the single-process baseline: run it on 1 rank")
    fc.set_num_threads(args.threads)
    fc.manual_seed(0)
    model = fc.models.resnet20()
    ddp = None if args.no_ddp or args.after_backward else dist.DistributedDataParallel(
        model, bucket_cap_mb=args.bucket_cap_mb, broadcast_buffers=False)
    opt = fc.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    g = np.random.default_rng(rank)
    x = fc.tensor(g.standard_normal((args.batch, 3, 32, 32)).astype(np.float32))
    y = fc.tensor(g.integers(0, 10, args.batch))

    rows = []
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            start = time.perf_counter()
        dist.barrier()  # every step starts together: per-step figures are comparable
        before = dict(ddp.timings) if ddp is not None else None
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        t1 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        t2 = time.perf_counter()
        if args.after_backward:
            dist.average_gradients(model.parameters(), args.bucket_cap_mb)
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        if step >= args.warmup:
            row = {"step": t4 - t0, "forward": t1 - t0, "backward": t3 - t1,
                   "optimizer": t4 - t3, "wait": t3 - t2, "hooks": 0.0}
            if ddp is not None:
                tm = ddp.timings
                row["wait"] = tm["wait_s"] - before["wait_s"]
                row["hooks"] = (tm["copy_s"] - before["copy_s"]
                                + tm["launch_s"] - before["launch_s"])
            rows.append(row)
    wall = time.perf_counter() - start

    # The cost of the all-reduce itself, with every rank ready at once.
    grads = np.zeros(sum(p.data.size for p in model.parameters()), np.float32)
    times = []
    for _ in range(20):
        dist.barrier()
        t = time.perf_counter()
        dist.all_reduce(grads)
        times.append(time.perf_counter() - t)

    med = {key: float(np.median([r[key] for r in rows])) for key in rows[0]}
    per_rank = dist.all_gather(np.array([med["step"], med["wait"]]))
    if rank == 0:
        out = {"ranks": k, "threads": args.threads, "batch_per_rank": args.batch,
               "mode": ("single" if args.no_ddp else "after-backward" if args.after_backward
                        else "ddp"), "bucket_cap_mb": args.bucket_cap_mb,
               "buckets": None if ddp is None else len(ddp._reducer.buckets),
               "median_s": med, "wall_s": wall,
               "images_per_s": k * args.batch * args.steps / wall,
               "comm_share": (med["wait"] + med["hooks"]) / med["step"],
               "allreduce_alone_ms": 1e3 * float(np.median(times)),
               "gradient_mb": grads.nbytes / 2 ** 20,
               "per_rank_step_s": per_rank[:, 0].tolist(),
               "per_rank_wait_s": per_rank[:, 1].tolist()}
        buckets = (f", {out['buckets']} bucket(s)" if ddp is not None else
                   ", averaged after backward" if args.after_backward else "")
        print(f"{k} rank(s) x {args.threads} thread(s), batch {args.batch}/rank{buckets}: "
              f"step {med['step'] * 1e3:.0f} ms (fwd {med['forward'] * 1e3:.0f}, bwd "
              f"{med['backward'] * 1e3:.0f} of which wait {med['wait'] * 1e3:.1f} and hooks "
              f"{med['hooks'] * 1e3:.1f}, opt {med['optimizer'] * 1e3:.0f}); "
              f"{out['images_per_s']:.1f} img/s; communication {100 * out['comm_share']:.2f}%"
              f" of the step; all-reduce of {out['gradient_mb']:.2f} MB alone "
              f"{out['allreduce_alone_ms']:.2f} ms", flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
