"""fastconv.distributed in one process, without MPI: SyncBatchNorm's formulas (through a
group of one), the sampler's shards, the gradient buckets, and the errors before
init_process_group. (The tests that start MPI jobs are the *_mpi.py files.)"""
import numpy as np
import pytest

import fastconv as fc
import fastconv.distributed as dist
import fastconv.functional as F
from fastconv import nn
from fastconv.distributed import collectives
from fastconv.distributed.ddp import _make_buckets
from fastconv.distributed.sync_batchnorm import _combine, _LocalGroup, _SyncBatchNorm
from fctest import assert_close


# ------------------------------------------------------------------ SyncBatchNorm
def test_combined_statistics_of_parts_equal_those_of_the_whole(rng):
    c = 4
    x = rng.standard_normal((11, c, 5)) * 3 + 7
    rows = []
    for part in np.split(x, [3, 3, 8]):  # unequal parts, one of them empty
        row = np.zeros(1 + 2 * c)
        row[0] = part.shape[0] * part.shape[2]
        if part.size:
            mean = part.mean(axis=(0, 2))
            row[1:1 + c] = mean
            row[1 + c:] = ((part - mean[:, None]) ** 2).sum(axis=(0, 2))
        rows.append(row)
    total, mean, m2 = _combine(np.array(rows), c)
    assert total == 55
    assert_close(mean, x.mean(axis=(0, 2)), tol=1e-12)
    assert_close(m2 / total, x.var(axis=(0, 2)), tol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(6, 3, 4, 5), (7, 3), (4, 3, 9)])
def test_synchronised_path_matches_batch_norm(rng, dtype, shape):
    """The code path of K > 1 ranks, run with a group of one, against F.batch_norm."""
    x0 = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
    w0 = rng.uniform(0.5, 1.5, 3).astype(dtype)
    b0 = rng.standard_normal(3).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    results = []
    for sync in (True, False):
        x = fc.tensor(x0.copy(), requires_grad=True)
        w = fc.tensor(w0.copy(), requires_grad=True)
        b = fc.tensor(b0.copy(), requires_grad=True)
        rm, rv = np.full(3, 0.5, dtype), np.full(3, 2.0, dtype)
        if sync:
            y = _SyncBatchNorm.apply(x, w, b, running_mean=rm, running_var=rv, momentum=0.1,
                                     eps=1e-5, group=_LocalGroup)
        else:
            y = F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.1, eps=1e-5)
        y.backward(gy)
        results.append((y.data, x.grad, w.grad, b.grad, rm, rv))
    for got, want, what in zip(results[0], results[1], ("y", "gx", "gw", "gb", "rm", "rv")):
        assert got.dtype == want.dtype, what
        assert_close(got, want, what=what)


def test_synchronised_path_gradcheck(rng):
    x = fc.tensor(rng.standard_normal((5, 2, 3, 3)), requires_grad=True)
    w = fc.tensor(rng.uniform(0.5, 1.5, 2), requires_grad=True)
    b = fc.tensor(rng.standard_normal(2), requires_grad=True)
    assert fc.gradcheck(lambda x, w, b: _SyncBatchNorm.apply(
        x, w, b, running_mean=None, running_var=None, momentum=0.1, eps=1e-5,
        group=_LocalGroup), (x, w, b))


def test_one_value_per_channel_is_an_error():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        _SyncBatchNorm.apply(np.ones((1, 3)), None, None, running_mean=None,
                             running_var=None, momentum=0.1, eps=1e-5, group=_LocalGroup)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_sync_batchnorm_in_one_process_is_batchnorm2d(rng, momentum):
    fc.manual_seed(0)
    bn = nn.BatchNorm2d(3, momentum=momentum, dtype=np.float64)
    bn.weight.data[...] = rng.uniform(0.5, 1.5, 3)
    sync = dist.SyncBatchNorm(3, momentum=momentum, dtype=np.float64)
    sync.load_state_dict(bn.state_dict())
    for step in range(3):
        x = rng.standard_normal((4, 3, 5, 5))
        for m in (bn, sync):
            m.train(step < 2)
        assert_close(sync(fc.tensor(x)).data, bn(fc.tensor(x)).data)
    for key, value in bn.state_dict().items():
        assert_close(sync.state_dict()[key], value, dtype=np.float64, what=key)


def test_sync_batchnorm_checks_its_input():
    sync = dist.SyncBatchNorm(3)
    with pytest.raises(ValueError, match=r"expected input \(N, 3, \.\.\.\)"):
        sync(fc.tensor(np.ones((2, 4, 3, 3), np.float32)))
    sync._group = _LocalGroup
    with pytest.raises(TypeError, match="float32"):
        sync(fc.tensor(np.ones((2, 3, 3, 3), np.float64)))


def test_convert_sync_batchnorm_shares_parameters_and_keys():
    fc.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, momentum=0.3),
                          nn.Sequential(nn.ReLU(), nn.BatchNorm2d(4, affine=False)))
    params = list(model.parameters())
    buffers = list(model.buffers())
    keys = list(model.state_dict())
    out = dist.SyncBatchNorm.convert_sync_batchnorm(model)
    assert out is model
    assert isinstance(model[1], dist.SyncBatchNorm) and model[1].momentum == 0.3
    assert isinstance(model[2][1], dist.SyncBatchNorm) and not model[2][1].affine
    assert all(a is b for a, b in zip(model.parameters(), params))
    assert all(a is b for a, b in zip(model.buffers(), buffers))
    assert list(model.state_dict()) == keys
    single = dist.SyncBatchNorm.convert_sync_batchnorm(nn.BatchNorm2d(2))
    assert type(single) is dist.SyncBatchNorm


# ------------------------------------------------------------------ sampler
def _shards(n, k, **kw):
    data = np.arange(n)
    return [dist.DistributedSampler(data, num_replicas=k, rank=r, **kw) for r in range(k)]


@pytest.mark.parametrize("n,k", [(10, 3), (12, 4), (2, 5), (7, 1)])
def test_sampler_pads_like_pytorch(n, k):
    shards = _shards(n, k, shuffle=False)
    per = -(-n // k)
    assert [len(s) for s in shards] == [per] * k
    padded = np.resize(np.arange(n), per * k)  # the order, then its start again
    for r, s in enumerate(shards):
        np.testing.assert_array_equal(list(s), padded[r::k])


def test_sampler_drop_last_and_epochs():
    shards = _shards(10, 3, seed=7, drop_last=True)
    assert [len(s) for s in shards] == [3, 3, 3]
    seen = np.concatenate([s.indices() for s in shards])
    assert len(set(seen.tolist())) == 9  # no repeats, one sample dropped
    first = shards[0].indices()
    shards[0].set_epoch(1)
    assert not np.array_equal(first, shards[0].indices())
    shards[0].set_epoch(0)
    np.testing.assert_array_equal(first, shards[0].indices())
    other_seed = _shards(10, 3, seed=8, drop_last=True)[0].indices()
    assert not np.array_equal(first, other_seed)


def test_sampler_errors():
    with pytest.raises(ValueError, match="rank in"):
        dist.DistributedSampler(np.arange(4), num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas"):
        dist.DistributedSampler(np.arange(4), num_replicas=0, rank=0)
    with pytest.raises(RuntimeError, match="init_process_group"):
        dist.DistributedSampler(np.arange(4))  # rank from a group that does not exist


def test_loader_batches_of_the_shard():
    data = fc.data.SyntheticShapes(23, size=12, seed=0)
    sampler = dist.DistributedSampler(data, num_replicas=2, rank=1, seed=4)
    loader = dist.DistributedDataLoader(data, batch_size=5, sampler=sampler)
    assert len(loader) == 3 and loader.num_samples == 12 and loader.seed == 4
    loader.set_epoch(2)
    ys = np.concatenate([y.data for _, y in loader])
    np.testing.assert_array_equal(ys, np.asarray(data.targets)[sampler.indices()])
    loader.seed = 9
    assert sampler.seed == 9
    assert len(dist.DistributedDataLoader(data, 5, sampler, drop_last=True)) == 2


# ------------------------------------------------------------------ DDP buckets
def test_buckets_reverse_order_caps_and_dtypes():
    params = [nn.Parameter(np.zeros(n, dt)) for n, dt in
              [(100, np.float32), (300, np.float32), (50, np.float64), (200, np.float32),
               (10, np.float32), (400, np.float32)]]
    buckets = _make_buckets(params, cap_bytes=1000, first_cap_bytes=1000)
    flat = [p for b in buckets for p in b]
    assert [id(p) for p in flat] == [id(p) for p in reversed(params)]
    for b in buckets:
        assert len({p.data.dtype for p in b}) == 1
        assert len(b) == 1 or sum(p.data.nbytes for p in b) <= 1000
    assert [len(b) for b in buckets] == [1, 2, 1, 1, 1]  # 1600; 40+800; f64; 1200; 400 B


# ------------------------------------------------------------------ no process group
def test_everything_needs_init_process_group():
    assert not dist.is_initialized()
    for call in (dist.get_rank, dist.get_world_size, dist.barrier,
                 lambda: dist.all_reduce(np.ones(2)),
                 lambda: dist.DistributedDataParallel(nn.Linear(2, 2))):
        with pytest.raises(RuntimeError, match="init_process_group"):
            call()


def test_timeout_from_the_environment(monkeypatch):
    monkeypatch.delenv("FASTCONV_DIST_TIMEOUT", raising=False)
    assert collectives._timeout_from_env() == dist.DEFAULT_TIMEOUT
    monkeypatch.setenv("FASTCONV_DIST_TIMEOUT", "2.5")
    assert collectives._timeout_from_env() == 2.5
    for bad in ("0", "-1", "soon", "nan"):
        monkeypatch.setenv("FASTCONV_DIST_TIMEOUT", bad)
        with pytest.raises(ValueError, match="FASTCONV_DIST_TIMEOUT"):
            collectives._timeout_from_env()


def test_local_context_has_every_seam():
    from fastconv.training.context import LocalContext, MPIContext
    ctx = LocalContext()
    for name in ("average_gradients", "reduce_sums", "barrier", "broadcast_buffers"):
        assert callable(getattr(ctx, name)) and callable(getattr(MPIContext, name))
    assert ctx.broadcast_buffers(nn.BatchNorm2d(2)) is None
