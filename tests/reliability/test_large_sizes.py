"""Large and odd sizes: element counts and index products beyond 2**31 do not overflow (the
kernels index with 64-bit integers), sizes beyond the kernels' C int range are a clear
ValueError, and an allocation that cannot be satisfied raises MemoryError, not a crash.

The > 2**31-element input is cheap: ``np.zeros`` maps it lazily, and pages that are only read
stay the kernel's shared zero page, so only the few rows written cost memory; the kernels
still read all 2**31 + 2**15 elements.
"""
import resource
import textwrap

import numpy as np
import pytest

import fastconv as fc
import fastconv.functional as F
import fastconv.reference as R
from fctest import run_python

H, W = 2 ** 16 + 1, 2 ** 15          # H * W = 2**31 + 2**15 elements


@pytest.fixture(scope="module")
def huge():
    """(1, 1, H, W) float32 zeros with a known value in a few rows, one of them the last,
    whose flat index is beyond 2**31; (array, {row: column})."""
    try:
        x = np.zeros((1, 1, H, W), np.float32)
    except MemoryError:
        pytest.skip("cannot map 8.6 GB of (lazily allocated) address space here")
    marks = {r: (r * 7919 + 5) % W for r in list(range(0, H, 4096)) + [H - 1]}
    for r, c in marks.items():
        x[0, 0, r, c] = 1.0 + r % 3
    return x, marks


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = fc.get_num_threads()
    yield
    fc.set_num_threads(threads)


def test_max_pool_over_more_than_2_31_elements(huge):
    x, marks = huge
    assert x.size > 2 ** 31
    y, idx = F.max_pool2d(x, (1, W), return_indices=True)      # one window per row
    rows = np.arange(H)
    want_idx = rows * W                                         # zero rows: the first tap
    want_y = np.zeros(H, np.float32)
    for r, c in marks.items():
        want_idx[r] += c
        want_y[r] = 1.0 + r % 3
    assert np.array_equal(y.data.ravel(), want_y)
    assert np.array_equal(idx.ravel(), want_idx)
    assert idx.max() == (H - 1) * W + marks[H - 1] > 2 ** 31


@pytest.mark.slow
def test_more_ops_over_more_than_2_31_elements(huge):
    x, marks = huge
    total = sum(1.0 + r % 3 for r in marks)
    mean = F.adaptive_avg_pool2d(x, 1).data.ravel()[0]
    assert mean == pytest.approx(total / x.size, rel=1e-4)
    y, idx = F.adaptive_max_pool2d(x, (2, 1), return_indices=True)
    lower = sorted(r for r in marks if r >= H // 2)
    first = max(lower, key=lambda r: (1.0 + r % 3, -r))   # the first maximum wins ties
    assert idx.ravel()[1] == first * W + marks[first] > 2 ** 30
    assert y.data.ravel()[1] == 1.0 + first % 3
    w = np.full((1, 1, 1, 1), 2.0, np.float32)
    for alg in ("direct", "im2col"):      # a 1x1 conv reading one column per row
        out = F.conv2d(x, w, stride=(1, W), padding=(0, 0), algorithm=alg).data
        assert out.shape == (1, 1, H, 1)
        want = np.zeros(H, np.float32)
        want[[r for r, c in marks.items() if c == 0]] = 2.0
        assert np.array_equal(out.ravel(), want), alg


def _adaptive_expected(x, out):
    """Windows [floor(i*n/o), ceil((i+1)*n/o)) along H, in int64 NumPy (no overflow)."""
    start, end = R.pool.adaptive_windows(x.shape[2], out)
    assert (np.arange(out, dtype=np.int64) * x.shape[2]).max() > 2 ** 31
    c = np.concatenate([[0.0], np.cumsum(x[0, 0, :, 0], dtype=np.float64)])
    avg = (c[end] - c[start]) / (end - start)
    longest = int((end - start).max())
    taps = start[:, None] + np.arange(longest)[None, :]
    valid = taps < end[:, None]
    vals = np.where(valid, x[0, 0, np.minimum(taps, x.shape[2] - 1), 0], -np.inf)
    return avg, vals.max(axis=1), start + vals.argmax(axis=1)


def test_tall_thin_adaptive_pooling_index_products_beyond_2_31():
    """Output row i of an H -> OH adaptive pooling starts at floor(i * H / OH): i * H passes
    2**31 here although the arrays are small."""
    h, oh = 70001, 65537
    x = np.random.default_rng(0).standard_normal((1, 1, h, 1))
    avg, mx, arg = _adaptive_expected(x, oh)
    np.testing.assert_allclose(F.adaptive_avg_pool2d(x, (oh, 1)).data.ravel(), avg,
                               rtol=1e-7, atol=1e-9)    # the oracle's cumsum rounds
    y, idx = F.adaptive_max_pool2d(x, (oh, 1), return_indices=True)
    assert np.array_equal(y.data.ravel(), mx) and np.array_equal(idx.ravel(), arg)
    xt = fc.tensor(x, requires_grad=True)
    F.adaptive_avg_pool2d(xt, (oh, 1)).sum().backward()
    want = R.pool.adaptive_avg_pool2d_backward(np.ones((1, 1, oh, 1)), x.shape)
    np.testing.assert_allclose(xt.grad, want, rtol=1e-12)


@pytest.mark.parametrize("call, name", [
    (lambda: F.conv2d(np.ones((1, 1, 1, 1)), np.ones((1, 1, 1, 1)), padding=2 ** 31), "padding"),
    (lambda: F.conv2d(np.ones((1, 1, 1, 1)), np.ones((1, 1, 1, 1)), stride=(1, 2 ** 31)),
     "stride"),
    (lambda: F.conv_transpose2d(np.ones((1, 1, 1, 1)), np.ones((1, 1, 1, 1)),
                                dilation=2 ** 40), "dilation"),
    (lambda: F.max_pool2d(np.ones((1, 1, 1, 1)), 2 ** 31), "kernel_size"),
    (lambda: F.pixel_shuffle(np.ones((1, 1, 1, 1)), 2 ** 32), "upscale_factor"),
])
def test_sizes_beyond_the_kernels_int_range_are_value_errors(call, name):
    with pytest.raises(ValueError, match=f"expected {name} <= 2\\*\\*31 - 1"):
        call()


# In a child whose address space is capped at 3 GiB, so no allocation below can succeed by
# taking the machine's memory, and a NULL from malloc in a kernel would crash it.
_ALLOC = textwrap.dedent("""
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
    import numpy as np
    import fastconv as fc
    import fastconv.functional as F
    f = np.float32
    one = np.ones((1, 2, 1, 1), f)
    dw = np.full((2, 1, 1, 1), 3.0, f)

    def im2col_backward_columns():
        # the column workspace of backward_input: K x OW = 3 * 2**17 x 2**12 floats (6 GiB;
        # 3 input channels, so not the flipped form, which needs no columns); the kernel is
        # called directly, the forward pass would only cost time
        from fastconv._ext import conv2d_im2col
        gy = np.zeros((1, 1, 1, 2 ** 12), f)
        w = np.zeros((1, 3, 1, 2 ** 17), f)
        gx = np.empty((1, 3, 1, 2 ** 17 + 2 ** 12 - 1), f)
        conv2d_im2col.backward_input(gy, w, gx, 1, 1, 0, 0, 1, 1, 1, 2)

    cases = {
        "conv2d output of petabytes": lambda: F.conv2d(one, dw, padding=2 ** 23, groups=2,
                                                        algorithm="direct"),
        "conv_transpose2d output of petabytes": lambda: F.conv_transpose2d(
            np.ones((1, 2, 2, 2), f), dw, stride=2 ** 24, groups=2),
        "depthwise packed input plane (kernel scratch)": lambda: F.conv2d(
            one, dw, padding=2 ** 14, stride=2 ** 14, groups=2, algorithm="depthwise"),
        "depthwise transposed phase tables (kernel)": lambda: F.conv_transpose2d(
            one, dw, stride=2 ** 24, groups=2, algorithm="depthwise"),
        "im2col backward column workspace (kernel scratch)": im2col_backward_columns,
        "adaptive pooling output": lambda: F.adaptive_avg_pool2d(one, 2 ** 26),
        "interpolate output": lambda: F.interpolate(one, scale_factor=2.0 ** 26),
        "max_pool2d of a huge padded input": lambda: F.max_pool2d(
            np.ones((2 ** 16, 2 ** 16, 1, 1), f), 1),
    }
    for name, case in cases.items():
        try:
            case()
            print("NO ERROR", name, flush=True)
        except MemoryError:
            print("MemoryError", name, flush=True)
        except Exception as exc:
            print(type(exc).__name__, name, exc, flush=True)
    # the process is still healthy
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5)).astype(f)
    w = np.random.default_rng(1).standard_normal((3, 2, 3, 3)).astype(f)
    ys = [F.conv2d(x, w, padding=1, algorithm=a).data for a in ("direct", "im2col")]
    print("healthy", bool(np.allclose(ys[0], ys[1], atol=1e-5)), flush=True)
""")


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_AS"), reason="needs RLIMIT_AS")
def test_unsatisfiable_allocations_raise_memory_error():
    r = run_python(["-c", _ALLOC], timeout=300)
    assert r.returncode == 0, f"the child crashed ({r.returncode}): {r.stdout}{r.stderr[-3000:]}"
    lines = r.stdout.strip().splitlines()
    assert lines[-1] == "healthy True", r.stdout
    results = lines[:-1]
    assert len(results) == 8, r.stdout
    for line in results:
        assert line.startswith("MemoryError "), line


def test_huge_padding_and_stride_use_64_bit_geometry():
    """Padding 2**30 with stride 2**30 on a 1x1 image: the padded plane has 2**62 pixels, the
    output 3 x 3 with the image at its centre. Kernels that pad by index bounds compute it;
    a kernel that needs the padded plane in memory may refuse with MemoryError (checked in a
    child with a capped address space), but none may overflow or crash."""
    script = textwrap.dedent("""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
        import numpy as np
        import fastconv as fc
        import fastconv.functional as F
        x = np.full((2, 2, 1, 1), 2.0, np.float32)
        w = np.full((4, 1, 1, 1), 3.0, np.float32)
        b = np.array([0.5, 1.0, 1.5, 2.0], np.float32)
        for alg in fc.conv_algorithms():
            try:
                y = F.conv2d(x, w, b, stride=2 ** 30, padding=2 ** 30, groups=2,
                             algorithm=alg).data
            except MemoryError:
                print(alg, "MemoryError")
                continue
            except ValueError as exc:     # a 1x1 kernel is outside the algorithm's domain
                print(alg, "ValueError", exc)
                continue
            want = np.broadcast_to(b.reshape(1, 4, 1, 1), (2, 4, 3, 3)).copy()
            want[:, :, 1, 1] += 6.0
            print(alg, "ok" if np.array_equal(y, want) else f"WRONG {y.ravel()}")
    """)
    r = run_python(["-c", script], timeout=300)
    assert r.returncode == 0, f"crashed ({r.returncode}): {r.stdout}{r.stderr[-3000:]}"
    out = dict(line.split(" ", 1) for line in r.stdout.strip().splitlines())
    assert set(out) == set(fc.conv_algorithms())
    assert out["direct"] == "ok" and out["im2col"] == "ok", out
    assert out.pop("winograd").startswith("ValueError conv2d: algorithm 'winograd'"), out
    assert all(v in ("ok", "MemoryError") for v in out.values()), out
