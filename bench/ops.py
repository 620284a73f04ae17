"""Ops suite: pooling, BatchNorm and ReLU, forward and backward, in GB/s.

GB/s counts the bytes an op must read and write (inputs, outputs, and the saved indices that
max pooling's backward reads) over its time: the memory-bound figure of merit for these
layers; "% copy" is that as a fraction of a parallel copy's rate measured just before (the
memory probe). Forward is the public op under ``no_grad``; backward is the recorded node's
backward (what ``Tensor.backward`` runs). Baselines: the NumPy reference, and PyTorch when
installed (forward under ``no_grad``, backward through ``torch.autograd.grad`` on a retained
graph).
"""
import numpy as np

import fastconv as fc
import fastconv.functional as F
from fastconv.reference import activations as ref_act
from fastconv.reference import batchnorm as ref_bn
from fastconv.reference import pool as ref_pool

from ._timing import median_ms, memory_probe, try_import_torch, under_no_grad

F32 = 4
# untimed calls of the same library before timing (bench._timing._settle): another
# library's spinning threads would otherwise be timed with these sub-millisecond ops
SETTLE_MS = 1.0


class Op:
    """One table row: fastconv, reference and torch callables plus the bytes they move."""

    def __init__(self, name, shape, seed=0):
        self.name, self.shape = name, shape
        rng = np.random.default_rng(seed)
        self.x = rng.standard_normal(shape).astype(np.float32)
        y = self.fc(self.x)
        self.out_shape = y.shape
        self.gy = rng.standard_normal(self.out_shape).astype(np.float32)

    def fc_forward(self):
        return lambda: self.fc(self.x)

    def fc_backward(self):
        xt = fc.Tensor(self.x, requires_grad=True)
        node = self._fc_graph(xt).grad_fn
        return lambda: node.function.backward(node.ctx, self.gy)

    def _fc_graph(self, xt):
        return self.fc(xt)

    def torch_fns(self, torch):
        x = torch.from_numpy(self.x)
        gy = torch.from_numpy(self.gy)
        xg = x.clone().requires_grad_(True)
        y = self.torch(torch, xg)

        def fwd():
            with torch.no_grad():
                self.torch(torch, x)

        def bwd():
            torch.autograd.grad(y, xg, gy, retain_graph=True)
        return fwd, bwd

    def bytes(self):
        n_in, n_out = self.x.size * F32, int(np.prod(self.out_shape)) * F32
        return n_in + n_out, n_in + n_out  # forward, backward (read gy, write gx)


class MaxPool(Op):
    def __init__(self, name, shape, k, s, p):
        self.k, self.s, self.p = k, s, p
        super().__init__(name, shape)

    def fc(self, x):
        return F.max_pool2d(x, self.k, self.s, self.p)

    def ref_fns(self):
        y, idx = ref_pool.max_pool2d(self.x, self.k, self.s, self.p)
        return (lambda: ref_pool.max_pool2d(self.x, self.k, self.s, self.p),
                lambda: ref_pool.max_pool2d_backward(self.gy, idx, self.x.shape))

    def torch(self, torch, x):
        return torch.nn.functional.max_pool2d(x, self.k, self.s, self.p)

    def bytes(self):
        # forward runs under no_grad: no index is stored; backward reads the saved int64 ones
        fwd, bwd = super().bytes()
        return fwd, bwd + int(np.prod(self.out_shape)) * 8


class AvgPool(Op):
    def __init__(self, name, shape, k, s):
        self.k, self.s = k, s
        super().__init__(name, shape)

    def fc(self, x):
        return F.avg_pool2d(x, self.k, self.s)

    def ref_fns(self):
        return (lambda: ref_pool.avg_pool2d(self.x, self.k, self.s),
                lambda: ref_pool.avg_pool2d_backward(self.gy, self.x.shape, self.k, self.s))

    def torch(self, torch, x):
        return torch.nn.functional.avg_pool2d(x, self.k, self.s)


class GlobalAvgPool(Op):
    def fc(self, x):
        return F.adaptive_avg_pool2d(x, (1, 1))

    def ref_fns(self):
        return (lambda: ref_pool.adaptive_avg_pool2d(self.x, (1, 1)),
                lambda: ref_pool.adaptive_avg_pool2d_backward(self.gy, self.x.shape))

    def torch(self, torch, x):
        return torch.nn.functional.adaptive_avg_pool2d(x, (1, 1))


class BatchNormTrain(Op):
    def __init__(self, name, shape):
        c = shape[1]
        self.w = np.ones(c, np.float32)
        self.b = np.zeros(c, np.float32)
        self.rm, self.rv = np.zeros(c, np.float32), np.ones(c, np.float32)
        super().__init__(name, shape)

    def fc(self, x):
        return F.batch_norm(x, self.rm, self.rv, self.w, self.b, training=True)

    def _fc_graph(self, xt):
        w, b = fc.Tensor(self.w, requires_grad=True), fc.Tensor(self.b, requires_grad=True)
        return F.batch_norm(xt, self.rm, self.rv, w, b, training=True)

    def ref_fns(self):
        return (lambda: ref_bn.batch_norm_train(self.x, self.w, self.b),
                lambda: ref_bn.batch_norm_backward(self.gy, self.x, self.w))

    def torch(self, torch, x):
        w, b = torch.from_numpy(self.w), torch.from_numpy(self.b)
        rm, rv = torch.from_numpy(self.rm.copy()), torch.from_numpy(self.rv.copy())
        return torch.nn.functional.batch_norm(x, rm, rv, w, b, training=True)

    def bytes(self):
        n = self.x.size * F32
        return 2 * n, 3 * n  # forward: read x, write y; backward: read gy and x, write gx


class ReLU(Op):
    def fc(self, x):
        return F.relu(x)

    def ref_fns(self):
        return (lambda: ref_act.relu(self.x),
                lambda: ref_act.relu_backward(self.gy, self.x))

    def torch(self, torch, x):
        return torch.relu(x)


def cases():
    return [
        MaxPool("maxpool2x2_s2", (32, 64, 32, 32), 2, 2, 0),
        MaxPool("maxpool3x3_s2_p1", (32, 64, 112, 112), 3, 2, 1),
        AvgPool("avgpool2x2_s2", (32, 64, 32, 32), 2, 2),
        GlobalAvgPool("global_avgpool", (32, 256, 8, 8)),
        BatchNormTrain("batchnorm_train", (64, 64, 32, 32)),
        ReLU("relu", (64, 64, 32, 32)),
    ]


def _times(ops, fns, **timing):
    """{op name: [median_ms(f, **timing) for f in fns(op)]}: one library, in one loop over
    the ops."""
    return {op.name: [median_ms(f, **timing) for f in fns(op)] for op in ops}


def run(threads=None, repeat=7, layers=None, with_reference=True, with_torch=True,
        with_probe=True, out=print):
    """Time every op; return row dicts and print a table through ``out``. ``with_probe``:
    first measure the memory bandwidth (``bench._timing.memory_probe``) and give each row's
    GB/s as a fraction of it (``copy_fraction``, the "% copy" column)."""
    if threads is not None:
        fc.set_num_threads(threads)
    threads = fc.get_num_threads()
    torch = try_import_torch() if with_torch else None
    if torch is not None:
        torch.set_num_threads(threads)
    header = (f"{'op':18s} {'pass':4s} {'ms':>8s} {'GB/s':>7s} {'% copy':>6s} "
              f"{'numpy ms':>9s} {'x numpy':>8s} {'torch ms':>9s} {'x torch':>8s}")
    out(f"ops suite, float32, {threads} thread(s); 'x numpy'/'x torch' = their time / ours")
    copy_gbps = None
    if with_probe:
        copy_gbps = memory_probe(threads)
        out(f"memory probe (parallel copy, bytes read + written): {copy_gbps:.1f} GB/s at "
            f"{threads} thread(s); '% copy' = GB/s / that")
    out(header)
    out("-" * len(header))
    rows = []
    chosen = [op for op in cases() if not layers or op.name in layers]
    # each library in a loop of its own over the ops (fastconv, then NumPy, then PyTorch):
    # another library's threads still spin after its calls, and a sub-millisecond op timed
    # then measures them (global average pooling forward at 2 threads on the Zen 3 VM,
    # 2026-11-23: 0.044-0.055 ms after fastconv's own rows, 0.071-0.074 right after a
    # PyTorch row, despite SETTLE_MS of its own calls first)
    ours = _times(chosen, lambda op: (under_no_grad(op.fc_forward()), op.fc_backward()),
                  repeat=repeat, settle_ms=SETTLE_MS)
    base = {}
    if with_reference:
        base["numpy"] = _times(chosen, lambda op: op.ref_fns(), repeat=repeat, budget_s=10)
    if torch is not None:
        base["torch"] = _times(chosen, lambda op: op.torch_fns(torch), repeat=repeat,
                               settle_ms=SETTLE_MS)
    for op in chosen:
        nbytes, mine = op.bytes(), ours[op.name]
        theirs = {lib: times[op.name] for lib, times in base.items()}
        for i, pass_name in enumerate(("fwd", "bwd")):
            row = {"op": op.name, "shape": op.shape, "pass": pass_name, "ms": mine[i],
                   "gbps": nbytes[i] / mine[i] / 1e6, "threads": threads}
            if copy_gbps:
                row["copy_fraction"] = row["gbps"] / copy_gbps
            for lib, t in theirs.items():
                row[f"{lib}_ms"] = t[i]
                row[f"speedup_vs_{lib}"] = t[i] / mine[i]
            rows.append(row)
            cells = []
            for lib in ("numpy", "torch"):
                if lib in theirs:
                    cells.append(f"{row[lib + '_ms']:9.2f} {row['speedup_vs_' + lib]:8.1f}")
                else:
                    cells.append(f"{'-':>9s} {'-':>8s}")
            frac = (f"{100 * row['copy_fraction']:5.0f}%" if copy_gbps else f"{'-':>6s}")
            out(f"{op.name:18s} {pass_name:4s} {mine[i]:8.3f} {row['gbps']:7.1f} {frac} "
                f"{cells[0]} {cells[1]}")
    return rows
