"""all_reduce, broadcast, all_gather, barrier and the sampler's shards on real MPI ranks.

One job per world size runs every collective and saves what each rank got; the checks
compute the expected values here, from the same per-rank inputs."""
import numpy as np
import pytest

from mpitest import check, needs_mpi, run_mpi

pytestmark = needs_mpi

SCRIPT = r"""
import sys
import numpy as np
import fastconv as fc
import fastconv.distributed as dist
from fastconv.data import SyntheticShapes

dist.init_process_group(timeout=60)
r, k = dist.get_rank(), dist.get_world_size()
out = {"rank": r, "world": k}

def inputs(rank):
    g = np.random.default_rng(100 + rank)
    return g.standard_normal((5, 3)), g.integers(-50, 50, 7), g.standard_normal(4).astype(np.float32)

a64, ints, a32 = inputs(r)
s = a64.copy(); res = dist.all_reduce(s)
out["sum_inplace"] = res is s
out["sum"] = s
out["mean"] = dist.all_reduce(a32.copy(), op="mean")
out["imax"] = dist.all_reduce(ints.copy(), op="max")
out["imin"] = dist.all_reduce(ints.copy(), op="min")
out["isum"] = dist.all_reduce(ints.copy())
t = fc.tensor(a64.copy()); dist.all_reduce(t); out["tensor_sum"] = t.data
out["from_list"] = dist.all_reduce([float(r), 1.0])
try:
    dist.all_reduce(ints.copy(), op="mean")
except TypeError as e:
    out["mean_int_error"] = str(e)
b = np.full((2, 3), r, np.int64) if r else np.arange(6, dtype=np.int64).reshape(2, 3)
dist.broadcast(b); out["bcast_int"] = b
src = k - 1
c = np.full(3, float(r), np.float32); dist.broadcast(c, src=src); out["bcast_src"] = c
out["bcast_obj"] = np.array(dist.broadcast_object({"rank": r, "k": list(range(r + 2))} if r == 0 else None)["k"])
out["gather"] = dist.all_gather(np.array([r, 10 * r], np.int64))
dist.barrier()
ds = SyntheticShapes(45, size=12, seed=1)
sampler = dist.DistributedSampler(ds, shuffle=True, seed=3)
out["shard_e0"] = sampler.indices()
sampler.set_epoch(1)
out["shard_e1"] = sampler.indices()
loader = dist.DistributedDataLoader(ds, batch_size=4, sampler=dist.DistributedSampler(ds, seed=3))
out["loader_y"] = np.concatenate([y.data for _, y in loader])
out["threads"] = dist.default_threads()

# DDP: buckets leave during backward; no_sync accumulates locally.
from fastconv import nn
fc.manual_seed(r)
model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
model = model.double()
ddp = dist.DistributedDataParallel(model, bucket_cap_mb=1e-4)  # ~100 bytes: many buckets
first = model[0].weight                      # its gradient is the last one ready
launched = []
first.register_post_accumulate_grad_hook(lambda t: launched.append(ddp._reducer.next_launch))
out["n_buckets"] = len(ddp._reducer.buckets)
out["init_w"] = first.data.copy()
g = np.random.default_rng(7 + r)
xs = [g.standard_normal((5, 4)) for _ in range(2)]
with ddp.no_sync():
    ddp(fc.tensor(xs[0])).sum().backward()
out["local_grad"] = first.grad.copy()
ddp(fc.tensor(xs[1])).sum().backward()
out["launched_before_last"] = launched[-1]
out["accumulated_grad"] = first.grad.copy()
np.savez(f"out{r}.npz", **{key: np.asarray(v) for key, v in out.items()})
"""


@pytest.fixture(scope="module", params=[2, 3])
def results(request, tmp_path_factory):
    k = request.param
    cwd = tmp_path_factory.mktemp(f"collectives{k}")
    proc, _ = run_mpi(k, SCRIPT, cwd=cwd, timeout=120)
    check(proc, f"collectives job on {k} ranks")
    return k, [dict(np.load(cwd / f"out{r}.npz")) for r in range(k)]


def _inputs(rank):
    g = np.random.default_rng(100 + rank)
    return (g.standard_normal((5, 3)), g.integers(-50, 50, 7),
            g.standard_normal(4).astype(np.float32))


def test_ranks_and_sizes(results):
    k, outs = results
    assert [int(o["rank"]) for o in outs] == list(range(k))
    assert all(int(o["world"]) == k for o in outs)
    # 2 ranks on this machine's cores (or OMP_NUM_THREADS=1 from the test environment)
    assert all(int(o["threads"]) >= 1 for o in outs)


def test_all_reduce(results):
    k, outs = results
    ins = [_inputs(r) for r in range(k)]
    want_sum = sum(i[0] for i in ins)
    for o in outs:
        assert bool(o["sum_inplace"])
        np.testing.assert_allclose(o["sum"], want_sum, rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(o["tensor_sum"], want_sum, rtol=1e-14, atol=1e-14)
        assert o["mean"].dtype == np.float32
        np.testing.assert_allclose(o["mean"], sum(i[2].astype(np.float64) for i in ins) / k,
                                   rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(o["imax"], np.max([i[1] for i in ins], axis=0))
        np.testing.assert_array_equal(o["imin"], np.min([i[1] for i in ins], axis=0))
        np.testing.assert_array_equal(o["isum"], np.sum([i[1] for i in ins], axis=0))
        np.testing.assert_allclose(o["from_list"], [k * (k - 1) / 2, k])
        assert "floating" in str(o["mean_int_error"])
    # every rank holds the very same bits
    for o in outs[1:]:
        assert np.array_equal(o["sum"], outs[0]["sum"])


def test_broadcast_and_gather(results):
    k, outs = results
    for o in outs:
        np.testing.assert_array_equal(o["bcast_int"], np.arange(6).reshape(2, 3))
        np.testing.assert_array_equal(o["bcast_src"], np.full(3, k - 1, np.float32))
        np.testing.assert_array_equal(o["bcast_obj"], [0, 1])
        np.testing.assert_array_equal(o["gather"], [[r, 10 * r] for r in range(k)])


def test_sampler_shards_partition_the_padded_order(results):
    k, outs = results
    n = 45
    for key, epoch in (("shard_e0", 0), ("shard_e1", 1)):
        shards = [o[key] for o in outs]
        per = -(-n // k)
        assert all(len(s) == per for s in shards)
        # Interleaved, the shards are the loader's order for that epoch, padded with its
        # own beginning to a multiple of k.
        order = np.random.default_rng((3, epoch)).permutation(n)
        padded = np.concatenate([order, order[:per * k - n]])
        merged = np.empty(per * k, np.int64)
        for r, s in enumerate(shards):
            merged[r::k] = s
        np.testing.assert_array_equal(merged, padded)
    assert not np.array_equal(outs[0]["shard_e0"], outs[0]["shard_e1"])


def test_ddp_sends_buckets_while_backward_runs(results):
    k, outs = results
    for o in outs:
        np.testing.assert_array_equal(o["init_w"], outs[0]["init_w"])  # rank 0's weights
        # One bucket per parameter; when the first layer's weight gradient was ready (with
        # its bias, the last ones), the four of the two later layers had been sent.
        assert int(o["n_buckets"]) == 6
        assert int(o["launched_before_last"]) == 4


def test_no_sync_accumulates_then_averages_the_sum(results):
    k, outs = results
    # The no_sync pass stayed local (gradients differ across ranks) ...
    assert not np.allclose(outs[0]["local_grad"], outs[1]["local_grad"])
    # ... and the next pass averaged the accumulated sums (the model is linear in its
    # first layer's weight gradient per pass, so the mean of the two passes' sums).
    want = _ddp_reference(k)
    for o in outs:
        np.testing.assert_allclose(o["accumulated_grad"], want, rtol=1e-12, atol=1e-12)


def _ddp_reference(k):
    import fastconv as fc
    from fastconv import nn
    fc.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(),
                          nn.Linear(8, 3)).double()
    for r in range(k):
        g = np.random.default_rng(7 + r)
        for x in [g.standard_normal((5, 4)) for _ in range(2)]:
            model(fc.tensor(x)).sum().backward()
    return model[0].weight.grad / k


def test_loader_yields_the_shard(results):
    from fastconv.data import SyntheticShapes
    k, outs = results
    ds = SyntheticShapes(45, size=12, seed=1)
    for o in outs:
        np.testing.assert_array_equal(o["loader_y"], np.asarray(ds.targets)[o["shard_e0"]])
