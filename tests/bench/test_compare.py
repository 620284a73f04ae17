"""``fastconv bench --compare torch`` tooling (bench/compare.py, bench/train_step.py).

Nothing here depends on how fast anything ran: ratios and rates are checked on times fed in
through a fake clock, and real runs (tiny sizes, one repeat) are checked for structure only.
Tests that need PyTorch skip without it; the no-PyTorch path is simulated."""
import json
import types
from importlib import import_module

import numpy as np
import pytest

import fastconv as fc
from fastconv import cli

BENCH = cli._bench_package()  # fastconv.bench when installed, bench/ in a dev checkout
compare = import_module(f"{BENCH.__name__}.compare")
timing = import_module(f"{BENCH.__name__}._timing")
train_step = import_module(f"{BENCH.__name__}.train_step")
conv_suite = import_module(f"{BENCH.__name__}.conv")
ops_suite = import_module(f"{BENCH.__name__}.ops")

PEAKS = compare.machine_peaks(2, peak_gflops=10.0, mem_gbps=5.0)  # 20 GFLOP/s, 10 GB/s


def _torch():
    return pytest.importorskip("torch")


# ------------------------------------------------------------------ pure arithmetic
def test_make_row_ratio_rates_and_peak_fraction():
    row = compare.make_row("conv", "layer", "fwd", 2.0, 4.0, PEAKS, flops=8e6, algorithm="x")
    assert row["ratio"] == pytest.approx(0.5)
    assert row["fastconv_gflops"] == pytest.approx(4.0)  # 8e6 FLOP in 2 ms
    assert row["torch_gflops"] == pytest.approx(2.0)
    assert row["fastconv_peak"] == pytest.approx(0.2)    # of 2 x 10 GFLOP/s
    assert row["torch_peak"] == pytest.approx(0.1)
    assert row["algorithm"] == "x" and row["table"] == "conv" and row["pass"] == "fwd"

    row = compare.make_row("ops", "op", "bwd", 5.0, 1.0, PEAKS, nbytes=20e6)
    assert row["ratio"] == pytest.approx(5.0)
    assert row["fastconv_gbps"] == pytest.approx(4.0) and row["torch_gbps"] == 20.0
    assert row["fastconv_peak"] == pytest.approx(0.4)    # of 2 x 5 GB/s
    assert "fastconv_gflops" not in row

    row = compare.make_row("train", "m", "step", 32.0, 64.0, PEAKS, flops=64e7, images=64)
    assert row["fastconv_img_s"] == pytest.approx(2000.0)
    assert row["torch_img_s"] == pytest.approx(1000.0)
    assert row["fastconv_peak"] == pytest.approx(1.0)    # 20 GFLOP/s


def test_geomean():
    assert compare.geomean([0.5, 2.0]) == pytest.approx(1.0)
    assert compare.geomean([0.25, 1.0, None]) == pytest.approx(0.5)
    assert compare.geomean([]) is None


def test_machine_peaks_constants_environment_and_flags(monkeypatch):
    monkeypatch.delenv("FASTCONV_PEAK_GFLOPS", raising=False)
    monkeypatch.delenv("FASTCONV_MEM_GBPS", raising=False)
    p = compare.machine_peaks(2)
    assert p["gflops"] == 2 * compare.PEAK_GFLOPS_PER_CORE
    assert p["gbps"] == 2 * compare.MEM_GBPS_PER_CORE
    monkeypatch.setenv("FASTCONV_PEAK_GFLOPS", "50")
    monkeypatch.setenv("FASTCONV_MEM_GBPS", "7")
    p = compare.machine_peaks(3)
    assert (p["gflops"], p["gbps"], p["gflops_per_core"]) == (150.0, 21.0, 50.0)
    assert compare.machine_peaks(1, peak_gflops=9.0)["gflops"] == 9.0  # flag beats env


class _FakeClock:
    """perf_counter that only moves when a timed callable says how long it took."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_interleaved_ms_alternates_and_takes_medians(monkeypatch):
    clock = _FakeClock()
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=clock))
    calls = []

    def timed(name, costs_ms):
        it = iter(costs_ms)

        def fn():
            calls.append(name)
            clock.now += next(it) / 1e3
        return fn

    # first cost of each is the warm-up, then three timed repeats
    ours = timed("fc", [100, 2, 9, 4])
    theirs = timed("torch", [100, 8, 10, 6])
    t_ours, t_theirs = timing.interleaved_ms([ours, theirs], repeat=3, warmup=1)
    assert calls == ["fc", "torch", "fc", "torch", "torch", "fc", "fc", "torch"]
    assert t_ours == pytest.approx(4.0) and t_theirs == pytest.approx(8.0)
    assert compare.make_row("x", "y", "fwd", t_ours, t_theirs, PEAKS)["ratio"] == \
        pytest.approx(0.5)


def test_interleaved_ms_settles_before_each_timed_call(monkeypatch):
    """settle_ms: untimed calls of the same callable until that long has passed (at least
    one), then the timed call; the other callable's calls never come in between."""
    clock = _FakeClock()
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=clock))
    calls = []

    def timed(name, cost_ms):
        def fn():
            calls.append(name)
            clock.now += cost_ms / 1e3
        return fn

    t_ours, t_theirs = timing.interleaved_ms([timed("fc", 0.4), timed("torch", 3.0)],
                                             repeat=2, warmup=1, settle_ms=1.0)
    # warm-ups; then 3 settling calls of 0.4 ms (1.2 >= 1) + the timed one, 1 of 3 ms + 1
    assert calls == (["fc", "torch"] + ["fc"] * 4 + ["torch"] * 2
                     + ["torch"] * 2 + ["fc"] * 4)
    assert t_ours == pytest.approx(0.4) and t_theirs == pytest.approx(3.0)
    calls.clear()
    assert timing.median_ms(timed("fc", 0.3), repeat=2, warmup=1, settle_ms=1.0) == \
        pytest.approx(0.3)
    assert calls == ["fc"] * (4 + 2)


def test_probe_verdict():
    ok = compare.probe_verdict({"gflops_1t": 60.0, "gflops": 118.0, "threads": 2,
                                "scaling": 118 / 60})
    assert "yes, 2 threads got 2 cores" in ok
    busy = compare.probe_verdict({"gflops_1t": 60.0, "gflops": 66.0, "threads": 2,
                                  "scaling": 1.1})
    assert "NO" in busy and "1.1 cores" in busy
    assert "nothing to check" in compare.probe_verdict(
        {"gflops_1t": 60.0, "gflops": 60.0, "threads": 1, "scaling": 1.0})


def test_memory_probe(monkeypatch):
    rates = []
    monkeypatch.setattr(compare, "memory_probe", lambda t: rates.append(t) or 5.0 * t)
    probe = compare.probe_memory(2)
    assert rates == [1, 2] and probe == {"gbps_1t": 5.0, "gbps": 10.0, "threads": 2}
    assert compare.memory_verdict(probe) == (
        "memory probe (parallel copy, bytes read + written): 5.0 GB/s at 1 thread, 10.0 at 2")
    assert timing.memory_probe(1, mib=1) > 0   # the real copy: a positive rate


def test_table_printer_prints_rows_and_geometric_mean():
    lines = []
    printer = compare.TablePrinter("ops", 2, lines.append)
    for name, ours, theirs in (("a", 1.0, 4.0), ("b", 3.0, 3.0)):
        printer.add(compare.make_row("ops", name, "fwd", ours, theirs, PEAKS, nbytes=1e6))
    g = printer.close()
    assert g == pytest.approx(0.5)
    text = "\n".join(lines)
    assert "[ops]" in text and "ratio" in lines[2] and "GB/s" in lines[2]
    assert lines[4].split()[:5] == ["a", "fwd", "1.000", "4.000", "0.25"]
    assert lines[-1] == "geometric mean of ratios (ops, 2 rows): 0.500"


# ------------------------------------------------------------------ without PyTorch
def test_compare_without_torch_gives_a_clear_message(monkeypatch, capsys):
    monkeypatch.setattr(compare, "try_import_torch", lambda: None)
    with pytest.raises(compare.TorchMissing, match="PyTorch is not installed"):
        compare.run("conv", probe=False)
    assert cli.main(["bench", "--compare", "torch", "--suite", "conv"]) == 2
    err = capsys.readouterr().err
    assert "PyTorch is not installed" in err and "pip install torch" in err


def test_plain_bench_still_works_without_torch(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(conv_suite, "try_import_torch", lambda: None)
    path = tmp_path / "conv.json"
    assert cli.main(["bench", "--suite", "conv", "--layers", "lenet_c2", "--repeat", "1",
                     "--no-reference", "--json", str(path)]) == 0
    assert "lenet_c2" in capsys.readouterr().out
    rows = json.loads(path.read_text())["rows"]
    assert rows and all("speedup_vs_torch" not in r for r in rows)


def test_bad_arguments(capsys):
    assert cli.main(["bench", "--suite", "train"]) == 2
    assert "need --compare torch" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown suite"):
        compare.expand_suites("everything")


def test_plot_without_matplotlib(monkeypatch, capsys, tmp_path):
    import fastconv.training.plot as fc_plot
    monkeypatch.setattr(fc_plot, "matplotlib_missing", lambda: "plotting needs matplotlib")
    assert cli.main(["bench", "--compare", "torch", "--plot", str(tmp_path / "x.png")]) == 2
    assert "needs matplotlib" in capsys.readouterr().err
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        compare.plot_bars(["a"], {"s": [0.5]}, str(tmp_path / "y.png"), "y", "t")
    assert not (tmp_path / "y.png").exists()


# ------------------------------------------------------------------ with PyTorch, tiny
def test_conv_and_ops_rows_on_tiny_cases():
    torch = _torch()
    specs = {"tiny": (2, 3, 9, 9, 4, 3, 1, 1, 1, 1, False),
             "tiny_dw_s2": (2, 4, 8, 8, 4, 3, 2, 1, 1, 4, False),
             "tiny_up": (2, 4, 5, 5, 3, 4, 2, 1, 1, 1, True)}
    seen = []
    rows = compare.conv_rows(torch, PEAKS, 1, specs=specs, emit=seen.append)
    assert seen == rows
    assert [(r["name"], r["pass"]) for r in rows] == [
        (n, p) for n in specs for p in ("fwd", "bwd")]
    for r in rows:
        case = conv_suite.Case(r["name"], specs[r["name"]])
        flops = case.flops * (1 if r["pass"] == "fwd" else 2)
        assert r["fastconv_gflops"] == pytest.approx(flops / r["fastconv_ms"] / 1e6)
        assert r["ratio"] == pytest.approx(r["fastconv_ms"] / r["torch_ms"])
        assert r["algorithm"] in fc.conv_algorithms()
    assert rows[2]["algorithm"] == "depthwise"
    assert compare.conv_rows(torch, PEAKS, 1, layers=["tiny_up"], specs=specs)[0]["name"] \
        == "tiny_up"

    cases = [ops_suite.MaxPool("mp", (2, 3, 8, 8), 2, 2, 0), ops_suite.ReLU("relu", (2, 3, 4, 4))]
    rows = compare.ops_rows(torch, PEAKS, 1, cases=cases)
    assert [(r["name"], r["pass"]) for r in rows] == [
        ("mp", "fwd"), ("mp", "bwd"), ("relu", "fwd"), ("relu", "bwd")]
    assert rows[0]["fastconv_gbps"] == pytest.approx(
        cases[0].bytes()[0] / rows[0]["fastconv_ms"] / 1e6)
    assert "fastconv_copy" not in rows[0]
    rows = compare.ops_rows(torch, PEAKS, 1, cases=cases[1:], copy_gbps=4.0)
    assert rows[1]["fastconv_copy"] == pytest.approx(rows[1]["fastconv_gbps"] / 4.0)


def test_every_interleaved_table_settles_before_each_timed_call(monkeypatch):
    """conv, ops, train and eval time each call after untimed calls of the same library
    (bench._timing._settle), not straight after the other library's."""
    torch = _torch()
    seen = []

    def record(fns, repeat=5, warmup=1, settle_ms=0.0):
        seen.append(settle_ms)
        return [1.0] * len(fns)

    monkeypatch.setattr(compare, "interleaved_ms", record)
    compare.conv_rows(torch, PEAKS, 1, specs={"tiny": (2, 3, 9, 9, 4, 3, 1, 1, 1, 1, False)})
    compare.ops_rows(torch, PEAKS, 1, cases=[ops_suite.ReLU("relu", (2, 3, 4, 4))])
    compare.train_rows(torch, PEAKS, 1, layers=["lenet5"], batch=2)
    compare.eval_rows(torch, PEAKS, 1, layers=["lenet5"], batch=2)
    assert len(seen) == 2 + 2 + 1 + 1
    assert all(ms > 0 for ms in seen)


def _float64_twin(torch, name):
    """A TrainPair whose PyTorch twin runs in float64 (same weights, batch and SGD)."""
    pair = train_step.TrainPair(name, torch, batch=2)
    pair.tmodel.double()
    pair.tx = pair.tx.double()
    pair.topt = torch.optim.SGD(pair.tmodel.parameters(), lr=train_step.LR,
                                momentum=train_step.MOMENTUM)
    return pair


def test_torch_twins_match_the_fastconv_models():
    # same weights, same batch: the timed work is the same work. At batch 2 the loss after
    # the first update is sensitive to rounding: for mobilenet_small PyTorch's float32 twin
    # and its float64 twin differ by 4.5e-4 (2026-11-23), and a float32 fastconv lands on
    # either side depending on its summation order. So each step must match the float32 twin
    # or the float64 one to 1e-4; an lr 5% off misses by 3.8e-4 (lenet5) to 1.2e-2 (resnet20).
    torch = _torch()
    for name in train_step.MODELS:
        pair = train_step.EvalPair(name, torch, batch=2)
        ref = pair.torch_forward()
        np.testing.assert_allclose(pair.fc_forward(), ref, rtol=1e-4, atol=1e-4, err_msg=name)
        np.testing.assert_allclose(pair.fc_fused_forward(), ref, rtol=1e-4, atol=1e-4)
        pair, exact = train_step.TrainPair(name, torch, batch=2), _float64_twin(torch, name)
        for _ in range(2):  # the second step also checks the first SGD update
            ours, theirs, truth = pair.fc_step(), pair.torch_step(), exact.torch_step()
            assert (ours == pytest.approx(theirs, rel=1e-4)
                    or ours == pytest.approx(truth, rel=1e-4)), (name, ours, theirs, truth)
    assert train_step.TrainPair("lenet5", torch, batch=3).flops == 6 * 416520 * 3
    with pytest.raises(ValueError, match="no PyTorch twin"):
        train_step.torch_model("resnet18")


def test_cli_compare_writes_json_and_plot(tmp_path, capsys):
    _torch()
    pytest.importorskip("matplotlib")
    js, png = tmp_path / "c.json", tmp_path / "c.png"
    assert cli.main(["bench", "--compare", "torch", "--suite", "train", "--layers", "lenet5",
                     "--batch", "4", "--repeat", "1", "--threads", "1",
                     "--json", str(js), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "[train]" in out and "geometric mean of ratios (train, 1 rows)" in out
    assert out.count("GEMM probe:") == 2
    result = json.loads(js.read_text())
    assert {"threads", "peaks", "gemm_probe", "geomean", "rows", "build", "torch_version",
            "fastconv_version"} <= set(result)
    assert result["threads"] == 1 and set(result["gemm_probe"]) == {"before", "after"}
    (row,) = result["rows"]
    for key in ("table", "name", "pass", "fastconv_ms", "torch_ms", "ratio",
                "fastconv_img_s", "torch_img_s", "fastconv_gflops", "fastconv_peak", "batch"):
        assert key in row, key
    assert row["ratio"] == pytest.approx(row["fastconv_ms"] / row["torch_ms"])
    assert result["geomean"]["train"] == pytest.approx(row["ratio"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli.main(["bench", "--compare", "torch", "--suite", "conv", "--layers",
                     "lenet5"]) == 2
    assert "unknown names ['lenet5']" in capsys.readouterr().err


def test_eval_rows():
    torch = _torch()
    (row,) = compare.eval_rows(torch, PEAKS, 1, layers=["resnet20"], batch=2)
    assert row["fuse_speedup"] == pytest.approx(row["unfused_ms"] / row["fastconv_ms"])
    assert row["fastconv_img_s"] == pytest.approx(2e3 / row["fastconv_ms"])


def test_peak_memory_child_process():
    # the PyTorch child is the same code path with the other library (run by the bench)
    # While this process holds 400 MB, the child must still report only its own memory
    # (ru_maxrss would not: it inherits the spawning process's peak across exec).
    hog = np.ones(50_000_000)
    report = train_step.peak_memory("fastconv", 1, model="lenet5", batch=2, steps=1)
    assert hog.sum() == hog.size
    assert report["lib"] == "fastconv" and report["batch"] == 2
    assert report["peak_mb"] >= report["import_mb"] > 0
    assert report["peak_mb"] < 300  # importing fastconv takes about 40 MB
    assert np.isfinite(report["loss"])
    with pytest.raises(RuntimeError, match="expected fastconv or torch"):
        train_step.peak_memory("jax", 1, model="lenet5", batch=2, steps=1)


def test_memory_rows_from_given_reports(monkeypatch):
    reports = {"fastconv": {"peak_mb": 150.0, "import_mb": 40.0},
               "torch": {"peak_mb": 600.0, "import_mb": 250.0}}
    monkeypatch.setattr(train_step, "peak_memory", lambda lib, *a, **k: reports[lib])
    (row,) = compare.memory_rows(2)
    assert row["ratio"] == pytest.approx(0.25)
    assert (row["fastconv_mb"], row["torch_import_mb"], row["name"]) == (150.0, 250.0,
                                                                         "resnet20")
    assert compare.memory_rows(2, layers=["lenet5"]) == []
