"""``fastconv bench --suite scaling`` (bench/scaling.py): structure and the thread switch;
nothing here depends on how fast anything ran."""
import json
from importlib import import_module

import pytest

import fastconv as fc
from fastconv import cli

BENCH = cli._bench_package()
scaling = import_module(f"{BENCH.__name__}.scaling")
conv_suite = import_module(f"{BENCH.__name__}.conv")


@pytest.fixture
def restore_threads():
    n = fc.get_num_threads()
    yield
    fc.set_num_threads(n)


def test_each_timed_call_runs_at_its_own_thread_count(monkeypatch, restore_threads):
    seen = []
    scaling._at(1, lambda: seen.append(fc.get_num_threads()))()
    scaling._at(3, lambda: seen.append(fc.get_num_threads()))()
    assert seen == [1, 3]
    # the conv suite's backward reads the thread count per call, not when it is built
    got = []
    monkeypatch.setattr(conv_suite, "conv2d_grads", lambda *args: got.append(args[-1]))
    case = conv_suite.Case("lenet_c2", conv_suite.LAYERS["lenet_c2"])
    run = case.fc_backward("im2col")
    for n in (1, 2):
        fc.set_num_threads(n)
        run()
    assert got == [1, 2]


def test_rows_and_table(restore_threads):
    fc.set_num_threads(2)
    lines = []
    rows = scaling.run(threads=2, repeat=1, layers=["lenet_c2"], out=lines.append)
    assert [(r["layer"], r["pass"]) for r in rows] == [("lenet_c2", "fwd"), ("lenet_c2", "bwd")]
    for r in rows:
        assert r["threads"] == 2
        assert r["speedup"] == pytest.approx(r["ms_1t"] / r["ms"])
        assert r["algorithm"] in fc.conv_algorithms()
    assert any(line.startswith("lenet_c2") for line in lines)
    assert fc.get_num_threads() == 2   # restored after the 1-thread calls
    with pytest.raises(ValueError, match="unknown layers"):
        scaling.run(layers=["nope"], out=lines.append)


def test_run_restores_the_callers_thread_count(restore_threads):
    fc.set_num_threads(1)
    scaling.run(threads=2, repeat=1, layers=["lenet_c2"], out=lambda line: None)
    assert fc.get_num_threads() == 1   # not left at threads=2


def test_cli_scaling_json(tmp_path, capsys, restore_threads):
    path = tmp_path / "scaling.json"
    assert cli.main(["bench", "--suite", "scaling", "--layers", "lenet_c2", "--repeat", "1",
                     "--threads", "2", "--json", str(path)]) == 0
    assert "speedup" in capsys.readouterr().out
    data = json.loads(path.read_text())
    assert data["suite"] == "scaling" and len(data["rows"]) == 2
