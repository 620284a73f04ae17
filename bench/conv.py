"""Convolution suite: every algorithm on the layers small CNNs use, forward and backward.

Forward is the public op (``F.conv2d`` / ``F.conv_transpose2d`` with ``algorithm=``).
Backward is what the op's backward runs: input gradient + weight gradient, outputs allocated
per call as in training. Baselines: the NumPy reference (im2col via sliding windows + BLAS
tensordot) and PyTorch when installed (``aten.convolution_backward`` for backward).
"""
import numpy as np

import fastconv as fc
import fastconv.functional as F
from fastconv import reference as ref
from fastconv.functional._dispatch import (KERNELS, SPECIALISED, ConvParams,
                                           select_conv_algorithm)
from fastconv.functional.conv import conv2d_grads

from ._timing import blas_sgemm_gflops, median_ms, try_import_torch

# name: (N, C_in, H, W, C_out, k, stride, padding, dilation, groups, transposed)
LAYERS = {
    "lenet_c1": (64, 1, 28, 28, 6, 5, 1, 2, 1, 1, False),
    "lenet_c2": (64, 6, 14, 14, 16, 5, 1, 0, 1, 1, False),
    "mnist_c2": (64, 32, 14, 14, 64, 3, 1, 1, 1, 1, False),
    "resnet_cifar_64": (32, 64, 32, 32, 64, 3, 1, 1, 1, 1, False),
    "resnet_cifar_down": (32, 64, 32, 32, 128, 3, 2, 1, 1, 1, False),
    "resnet_cifar_128": (32, 128, 16, 16, 128, 3, 1, 1, 1, 1, False),
    "resnet_cifar_256": (32, 256, 8, 8, 256, 3, 1, 1, 1, 1, False),
    "resnet_1x1_down": (32, 64, 32, 32, 128, 1, 2, 0, 1, 1, False),
    "resnet18_stem": (8, 3, 224, 224, 64, 7, 2, 3, 1, 1, False),
    "mobilenet_dw": (32, 64, 56, 56, 64, 3, 1, 1, 1, 64, False),
    "mobilenet_dw_s2": (32, 128, 28, 28, 128, 3, 2, 1, 1, 128, False),
    "mobilenet_pw": (32, 64, 56, 56, 128, 1, 1, 0, 1, 1, False),
    "dilated_d2": (16, 64, 32, 32, 64, 3, 1, 2, 2, 1, False),
    "transposed_up": (32, 128, 16, 16, 64, 4, 2, 1, 1, 1, True),
}


class Case:
    """Arrays and geometry of one table row (float32)."""

    def __init__(self, name, spec, dtype=np.float32, seed=0):
        n, c_in, h, w, c_out, k, s, p, d, g, transposed = spec
        rng = np.random.default_rng(seed)
        self.name, self.transposed = name, transposed
        self.stride, self.padding, self.dilation, self.groups = s, p, d, g
        self.x = rng.standard_normal((n, c_in, h, w)).astype(dtype)
        if transposed:
            self.w = rng.standard_normal((c_in, c_out // g, k, k)).astype(dtype)
            oh = (h - 1) * s - 2 * p + d * (k - 1) + 1
            # in conv terms: a conv from (c_out, oh, oh) to (c_in, h, w)
            self.params = ConvParams(n, c_out, oh, oh, c_in, k, k, (s, s), (p, p), (d, d), g)
            self.conv_x_shape = (n, c_out, oh, oh)
            macs = n * c_in * h * w * (c_out // g) * k * k
        else:
            self.w = rng.standard_normal((c_out, c_in // g, k, k)).astype(dtype)
            oh = (h + 2 * p - d * (k - 1) - 1) // s + 1
            self.params = ConvParams(n, c_in, h, w, c_out, k, k, (s, s), (p, p), (d, d), g)
            macs = n * c_out * oh * oh * (c_in // g) * k * k
        self.out_shape = (n, c_out, oh, oh)
        self.gy = rng.standard_normal(self.out_shape).astype(dtype)
        self.flops = 2 * macs  # per pass: forward, backward-input and backward-weight alike

    def algorithms(self):
        return [a for a in KERNELS
                if a not in SPECIALISED or SPECIALISED[a](self.params)]

    # --- fastconv -------------------------------------------------------------------------
    def fc_forward(self, algorithm):
        if self.transposed:
            return lambda: F.conv_transpose2d(self.x, self.w, None, self.stride, self.padding,
                                              0, self.groups, self.dilation,
                                              algorithm=algorithm)
        return lambda: F.conv2d(self.x, self.w, None, self.stride, self.padding,
                                self.dilation, self.groups, algorithm=algorithm)

    def fc_backward(self, algorithm):
        kernel = KERNELS[algorithm]
        geo = self.params.kernel_args()
        b0 = np.empty(0, self.x.dtype)
        # the thread count is read per call, as the ops do (bench.scaling switches it)
        if self.transposed:
            def run():
                threads = fc.get_num_threads()
                gx = np.empty_like(self.x)
                kernel.forward(self.gy, self.w, b0, gx, *geo, threads)
                gw = np.empty_like(self.w)
                kernel.backward_weight(self.gy, self.x, gw, *geo, threads)
        else:
            def run():
                conv2d_grads(kernel, self.x, self.w, self.gy, geo, fc.get_num_threads())
        return run

    # --- NumPy reference ------------------------------------------------------------------
    def ref_forward(self):
        if self.transposed:
            return lambda: ref.conv_transpose2d(self.x, self.w, None, self.stride,
                                                self.padding, 0, self.groups, self.dilation)
        return lambda: ref.conv2d(self.x, self.w, None, self.stride, self.padding,
                                  self.dilation, self.groups)

    def ref_backward(self):
        s, p, d, g = self.stride, self.padding, self.dilation, self.groups
        if self.transposed:
            return lambda: (
                ref.conv_transpose2d_backward_input(self.gy, self.w, self.x.shape, s, p, 0, g,
                                                    d),
                ref.conv_transpose2d_backward_weight(self.x, self.gy, self.w.shape, s, p, 0,
                                                     g, d))
        return lambda: (ref.conv2d_backward_input(self.gy, self.w, self.x.shape, s, p, d, g),
                        ref.conv2d_backward_weight(self.x, self.gy, self.w.shape, s, p, d, g))

    # --- PyTorch --------------------------------------------------------------------------
    def torch_fns(self, torch):
        x, w, gy = (torch.from_numpy(a) for a in (self.x, self.w, self.gy))
        s, p, d, g = self.stride, self.padding, self.dilation, self.groups
        tf = torch.nn.functional
        if self.transposed:
            def fwd():
                with torch.no_grad():
                    tf.conv_transpose2d(x, w, None, s, p, 0, g, d)
        else:
            def fwd():
                with torch.no_grad():
                    tf.conv2d(x, w, None, s, p, d, g)

        def bwd():
            torch.ops.aten.convolution_backward(gy, x, w, None, [s, s], [p, p], [d, d],
                                                self.transposed, [0, 0], g,
                                                [True, True, False])
        return fwd, bwd


def run(threads=None, repeat=5, layers=None, with_reference=True, with_torch=True,
        out=print):
    """Time every layer; return a list of row dicts and print a table through ``out``."""
    if threads is not None:
        fc.set_num_threads(threads)
    threads = fc.get_num_threads()
    torch = try_import_torch() if with_torch else None
    if torch is not None:
        torch.set_num_threads(threads)
    rows = []
    names = layers or list(LAYERS)
    blas, blas_threads = blas_sgemm_gflops(threads)
    header = (f"{'layer':18s} {'algorithm':10s} {'pass':4s} {'ms':>9s} {'GFLOP/s':>8s} "
              f"{'% BLAS':>7s} {'x numpy':>8s} {'x torch':>8s}")
    out(f"conv suite, float32, {threads} thread(s); 'x numpy'/'x torch' = their time / ours; "
        f"'% BLAS' = GFLOP/s / NumPy's BLAS sgemm 1024^3 in this run ({blas:.0f} GFLOP/s at "
        f"{blas_threads or 'its default number of'} thread(s))")
    out(header)
    out("-" * len(header))
    for name in names:
        case = Case(name, LAYERS[name])
        base = {}
        if with_reference:
            base["numpy"] = (median_ms(case.ref_forward(), repeat=min(repeat, 3), budget_s=10),
                             median_ms(case.ref_backward(), repeat=min(repeat, 3), budget_s=10))
        if torch is not None:
            tf, tb = case.torch_fns(torch)
            base["torch"] = (median_ms(tf, repeat), median_ms(tb, repeat))
        auto = select_conv_algorithm(case.params, need_grad=True)
        for algorithm in case.algorithms():
            times = (median_ms(case.fc_forward(algorithm), repeat, budget_s=20),
                     median_ms(case.fc_backward(algorithm), repeat, budget_s=20))
            for i, pass_name in enumerate(("fwd", "bwd")):
                flops = case.flops * (1 if i == 0 else 2)
                row = {"layer": name, "algorithm": algorithm, "auto": algorithm == auto,
                       "pass": pass_name, "ms": times[i], "gflops": flops / times[i] / 1e6,
                       "threads": threads, "blas_gflops": blas}
                row["fraction_of_blas"] = row["gflops"] / blas
                for lib, t in base.items():
                    row[f"{lib}_ms"] = t[i]
                    row[f"speedup_vs_{lib}"] = t[i] / times[i]
                rows.append(row)
                vs = [f"{row[k]:8.2f}" if k in row else f"{'-':>8s}"
                      for k in ("speedup_vs_numpy", "speedup_vs_torch")]
                mark = "*" if row["auto"] else " "
                out(f"{name:18s} {algorithm + mark:10s} {pass_name:4s} {row['ms']:9.2f} "
                    f"{row['gflops']:8.1f} {100 * row['fraction_of_blas']:6.0f}% {vs[0]} "
                    f"{vs[1]}")
        for lib, t in base.items():
            out(f"{name:18s} {'(' + lib + ')':10s} fwd  {t[0]:9.2f} "
                f"{case.flops / t[0] / 1e6:8.1f}")
            out(f"{name:18s} {'(' + lib + ')':10s} bwd  {t[1]:9.2f} "
                f"{2 * case.flops / t[1] / 1e6:8.1f}")
    out("* = the algorithm algorithm=None picks")
    return rows
