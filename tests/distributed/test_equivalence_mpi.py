"""The bar of issue 7: K ranks with batch B per rank end with the same parameters after 20
SGD steps as one process with batch K x B, for a model with BatchNorm (SyncBatchNorm on the
ranks, plain BatchNorm2d in the single process) and one without.

One MPI job per world size trains every configuration; the single-process reference is
computed here. The ranks start from different random weights (DistributedDataParallel
must copy rank 0's) and the data are reshuffled between the two epochs (set_epoch)."""
import json

import numpy as np
import pytest

import fastconv as fc
import fastconv.functional as F
from fastconv import nn
from fctest import assert_close
from mpitest import check, needs_mpi, run_mpi

pytestmark = needs_mpi

BATCH = 6            # per rank
STEPS_PER_EPOCH = 10
EPOCHS = 2           # 20 steps
SEED = 5

COMMON = r"""
import numpy as np
import fastconv as fc
import fastconv.functional as F
from fastconv import nn


class Arrays:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def get_batch(self, indices):
        return self.x[indices], self.y[indices]


def dataset(n, dtype):
    g = np.random.default_rng(42)
    return Arrays(g.standard_normal((n, 3, 8, 8)).astype(dtype), g.integers(0, 5, n))


def build(kind, dtype, seed, norm=nn.BatchNorm2d):
    fc.manual_seed(seed)
    if kind == "bn":
        model = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), norm(6), nn.ReLU(),
            nn.Conv2d(6, 8, 3, stride=2, padding=1, bias=False), norm(8), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
    else:
        model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Flatten(), nn.Linear(6 * 4 * 4, 5))
    return model.to(dtype)


def optimizer(model):
    return fc.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
"""

# (model kind, dtype, bucket cap in MB: tiny = one bucket per parameter or so)
CONFIGS = [("bn", "float64", 25), ("plain", "float64", 0.0005), ("bn", "float32", 0.0005),
           ("plain", "float32", 25)]
# 3 ranks share 2 cores here, where every collective costs milliseconds: one configuration
CONFIGS_3 = [("bn", "float64", 0.0005)]

SCRIPT = COMMON + r"""
import json
import sys
import fastconv.distributed as dist

dist.init_process_group(timeout=60)
fc.set_num_threads(1)
rank, k = dist.get_rank(), dist.get_world_size()
batch, steps, epochs, seed = (int(a) for a in sys.argv[1:5])
for kind, dtype, cap in json.loads(sys.argv[5]):
    data = dataset(steps * k * batch, dtype)
    model = build(kind, dtype, seed=1000 + rank)          # different on every rank
    model = dist.SyncBatchNorm.convert_sync_batchnorm(model)
    ddp = dist.DistributedDataParallel(model, bucket_cap_mb=cap)
    opt = optimizer(model)
    loader = dist.DistributedDataLoader(data, batch, dist.DistributedSampler(data, seed=seed))
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(ddp(x), y).backward()
            opt.step()
    np.savez(f"{kind}-{dtype}-rank{rank}.npz", **model.state_dict())
"""


def _reference(kind, dtype, k):
    ns = {}
    exec(COMMON, ns)
    data = ns["dataset"](STEPS_PER_EPOCH * k * BATCH, dtype)
    model = ns["build"](kind, dtype, seed=1000)            # rank 0's weights
    opt = ns["optimizer"](model)
    loader = fc.data.DataLoader(data, batch_size=k * BATCH, shuffle=True, seed=SEED)
    for _ in range(EPOCHS):
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    return model.state_dict()


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """job(k): the directory of the (cached) k-rank run of its configurations."""
    done = {}

    def run(k):
        if k not in done:
            cwd = tmp_path_factory.mktemp(f"equivalence{k}")
            configs = CONFIGS if k == 2 else CONFIGS_3
            proc, _ = run_mpi(k, SCRIPT, args=(BATCH, STEPS_PER_EPOCH, EPOCHS, SEED,
                                               json.dumps(configs)), cwd=cwd, timeout=300)
            check(proc, f"equivalence job on {k} ranks")
            done[k] = cwd
        return done[k]
    return run


@pytest.mark.parametrize("k,kind,dtype,cap", [(2, *c) for c in CONFIGS] +
                         [(3, *c) for c in CONFIGS_3])
def test_k_ranks_match_one_process_with_k_times_the_batch(job, k, kind, dtype, cap):
    cwd = job(k)
    threads = fc.get_num_threads()
    fc.set_num_threads(1)
    try:
        want = _reference(kind, dtype, k)
    finally:
        fc.set_num_threads(threads)
    ranks = [dict(np.load(cwd / f"{kind}-{dtype}-rank{r}.npz")) for r in range(k)]
    assert sorted(ranks[0]) == sorted(want)
    moved = max(float(np.max(np.abs(want[key] - build_init(kind, dtype)[key])))
                for key in want if key.endswith("weight"))
    assert moved > 1e-2, "the parameters hardly changed: the test would prove nothing"
    for r, got in enumerate(ranks[1:], 1):
        # Data parallelism relies on the ranks never drifting apart: the all-reduce and
        # SyncBatchNorm's rank-ordered combination give every rank the same bits.
        for key in want:
            assert np.array_equal(got[key], ranks[0][key]), f"rank {r} differs: {key}"
    for r, got in enumerate(ranks):
        for key, value in want.items():
            # float64: the project bar 1e-10; float32: 20 steps of float32 rounding
            tol = 1e-10 if dtype == "float64" else 2e-4
            assert_close(got[key], value, tol=tol, what=f"rank {r} {kind} {dtype} {key}")


def build_init(kind, dtype):
    ns = {}
    exec(COMMON, ns)
    return ns["build"](kind, dtype, seed=1000).state_dict()
