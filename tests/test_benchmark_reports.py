"""benchmarks/run.py's reports: a failed benchmark is recorded and the others still run,
the JSON is kept after every benchmark, and RESULTS.md / the README table render a main
run with a GPU run beside it. (The benchmarks themselves run in CI's smoke run.)"""

from __future__ import annotations

import importlib
import json
import pathlib
import sys
import types

import pytest

BENCH = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def run_py(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    for name in ("run", "_harness"):
        sys.modules.pop(name, None)
    return importlib.import_module("run")


def _row(benchmark, case, ours, baseline, goal=None, name="base"):
    return {"benchmark": benchmark, "case": case, "ours": ours, "baseline_name": name,
            "baseline": baseline, "goal": goal, "unit": "s", "note": ""}  # fmt: skip


def _doc(backend, device, results, **extra):
    machine = {"backend": backend, "device": device, "jax_version": "0.0", "cpu": "x (2 cores)"}
    return {"machine": machine, "date": "2026-01-01", "results": results, **extra}


def test_a_failing_benchmark_is_reported_and_the_rest_still_run(run_py, monkeypatch, tmp_path):
    import _harness

    calls = []

    class Fine:
        @staticmethod
        def run(quick):
            calls.append("fine")
            return [_harness.Row("checker", "case", 1.0, "base", 2.0, 1.5)]

    class Broken:
        @staticmethod
        def run(quick):
            calls.append("broken")
            raise RuntimeError("no device")

    modules = {"bench_kinks": Broken, "bench_checker": Fine}
    monkeypatch.setattr(run_py, "importlib", types.SimpleNamespace(import_module=modules.get))
    monkeypatch.setitem(_harness.OPTIONS, "torch_compile", True)
    monkeypatch.setattr(run_py, "machine", lambda: {"backend": "cpu", "device": "cpu",
                                                    "jax_version": "0", "cpu": "x"})  # fmt: skip
    out = tmp_path / "r.json"
    rc = run_py.main(["--only", "kinks", "checker", "--json", str(out), "--no-torch-compile"])
    assert rc == 1 and calls == ["broken", "fine"]
    doc = json.loads(out.read_text())
    assert doc["complete"] is True
    assert doc["failed"] == {"kinks": "RuntimeError: no device"}
    assert [r["case"] for r in doc["results"]] == ["case"]
    assert "torch.compile" in doc["left_out"] and "activations" in doc["left_out"]
    assert _harness.OPTIONS["torch_compile"] is False


def test_an_interrupted_run_keeps_the_benchmarks_it_finished(run_py, monkeypatch, tmp_path):
    import _harness

    class Fine:
        @staticmethod
        def run(quick):
            return [_harness.Row("checker", "case", 1.0, "base", 2.0)]

    class Stopped:
        @staticmethod
        def run(quick):
            raise KeyboardInterrupt

    modules = {"bench_checker": Fine, "bench_kinks": Stopped}
    monkeypatch.setattr(run_py, "importlib", types.SimpleNamespace(import_module=modules.get))
    monkeypatch.setattr(run_py, "machine", lambda: {"backend": "cpu", "device": "cpu",
                                                    "jax_version": "0", "cpu": "x"})  # fmt: skip
    out = tmp_path / "r.json"
    with pytest.raises(KeyboardInterrupt):
        run_py.main(["--only", "checker", "kinks", "--json", str(out)])
    doc = json.loads(out.read_text())
    assert doc["complete"] is False and [r["case"] for r in doc["results"]] == ["case"]
    assert doc["machine"]["commit"]  # the checkout the figures came from


def test_results_render_a_gpu_run_beside_the_main_one(run_py, tmp_path):
    check = lambda b: [_row("checker", "256 points", 1.0, b, 50.0, "loop of check_grads")]
    cpu = _doc("cpu", "cpu", check(60.0))
    gpu = _doc("gpu", "NVIDIA H100", check(40.0), failed={"volume": "AssertionError: mismatch"},
               left_out="left out: memory")  # fmt: skip
    paths = []
    for name, doc in (("cpu", cpu), ("gpu", gpu)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(doc))
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench-table -->\n| old |\n|---|\nafter\n")
    md = tmp_path / "RESULTS.md"
    args = ["--render", *map(str, paths), "--markdown", str(md), "--readme", str(readme)]
    assert run_py.main(args) == 0
    text = md.read_text()
    main, _, other = text.partition("# Results on NVIDIA H100")
    assert "1 comparisons meet their goal, 0 do not" in main
    assert "0 comparisons meet their goal, 1 do not" in other  # 40x against a goal of 50x
    assert "- volume: AssertionError: mismatch" in other and "left out: memory" in other
    assert "(#results-on-nvidia-h100)" in main
    table = readme.read_text()
    assert "| on NVIDIA H100 |" in table.splitlines()[2]
    assert "| 60× | 40× | ≥ 50× |" in table
    assert table.endswith("after\n") and "| old |" not in table


def test_render_of_a_missing_file_is_a_one_line_error(run_py, tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        run_py.main(["--render", str(tmp_path / "nope.json"), "--markdown", "x.md"])
    assert err.value.code == 2
    assert "cannot read" in capsys.readouterr().err


HLO = """HloModule m

%cond.1 (p: (s32[], f32[4])) -> pred[] {
  %p = (s32[], f32[4]) parameter(0)
  ROOT %lt = pred[] compare(s32[] %a, s32[] %b), direction=LT
}

%body.2 (p: (s32[], f32[4])) -> (s32[], f32[4]) {
  %p = (s32[], f32[4]) parameter(0)
  %g = f32[4] get-tuple-element(%p), index=1
  %f = f32[4] fusion(f32[4] %g), kind=kLoop, calls=%fused
  %c = f32[4] copy(f32[4] %f)
  %f2 = f32[4] fusion(f32[4] %c), kind=kLoop, calls=%fused2
  ROOT %t = (s32[], f32[4]) tuple(s32[] %i, f32[4] %f2)
}

%small.3 (p: (s32[])) -> (s32[]) {
  %p = (s32[]) parameter(0)
  ROOT %t = (s32[]) tuple(%p)
}

ENTRY %main.4 (a: f32[4]) -> f32[4] {
  %w = (s32[], f32[4]) while(%init), condition=%cond.1, body=%body.2
  %w2 = (s32[]) while(%init2), condition=%cond.1, body=%small.3
  ROOT %r = f32[4] get-tuple-element(%w), index=1
}
"""


def test_probe_counts_the_largest_loop_body(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    probe = importlib.import_module("probe_instrumentation")
    assert probe.body_counts(HLO) == {"fusion": 2, "copy": 1}
    assert probe.body_counts("HloModule m\nENTRY %e () -> f32[] {\n}\n") == {}


def test_parts_of_one_run_merge_into_one(run_py, tmp_path):
    one = _doc("gpu", "H100", [_row("training", "a", 1.0, 2.0)], complete=True, failed={},
               left_out="left out: volume (`--only`)")  # fmt: skip
    one["machine"].update(minutes=3.5, load_end="1")
    two = _doc("gpu", "H100", [_row("volume", "b", 1.0, 3.0)], complete=False,
               failed={"kinks": "Error: x"})  # fmt: skip
    two["machine"].update(minutes=2.0, load_end="2")
    paths = []
    for i, doc in enumerate((one, two)):
        paths.append(tmp_path / f"p{i}.json")
        paths[-1].write_text(json.dumps(doc))
    out = tmp_path / "gpu.json"
    assert run_py.main(["--merge", *map(str, paths), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [r["case"] for r in doc["results"]] == ["a", "b"]
    assert doc["failed"] == {"kinks": "Error: x"} and doc["complete"] is False
    assert doc["machine"]["minutes"] == 5.5 and doc["machine"]["load_end"] == "2"
    assert doc["left_out"].startswith("run in 2 parts (training; volume)")
    assert "part 1: left out: volume" in doc["left_out"]
    with pytest.raises(SystemExit):
        run_py.main(["--merge", str(paths[0])])  # no --json


def _bench_and_row(monkeypatch, name: str):
    """A benchmark module, freshly imported from benchmarks/, and its Row class."""
    monkeypatch.syspath_prepend(str(BENCH))
    for mod in (name, "_harness"):
        sys.modules.pop(mod, None)
    return importlib.import_module(name), importlib.import_module("_harness").Row


def test_a_missed_pytorch_goal_cites_the_products_alone(monkeypatch):
    # the training explanation reads the same network's rows: the scan loop's own ratio to
    # PyTorch and the step's products alone (XLA against PyTorch, weight gradients apart)
    bench, Row = _bench_and_row(monkeypatch, "bench_training")
    label = "MLP 64-512-512-10, batch 128"
    missed = Row(
        "training",
        f"{label}: engine (instrumented) vs PyTorch eager",
        1.6e-3,
        "PyTorch eager",
        1.7e-3,
        1.2,
        ours_spread=0.01,
        baseline_spread=0.01,
    )
    scan = Row(
        "training",
        f"{label}: engine (instrumented) vs hand-written lax.scan loop",
        1.6e-3,
        "hand-written lax.scan loop",
        1.6e-3,
        0.95,
    )
    prod = Row(
        "training",
        f"{label}: the step's matrix products alone, XLA vs PyTorch",
        1.0e-3,
        "PyTorch's products",
        0.6e-3,
        extra={"xla_dw": 4e-4, "torch_dw": 2e-4},
    )
    other = Row(
        "training",
        "MLP 64-128-128-10, batch 64: the step's matrix products alone, XLA vs PyTorch",
        1.0,
        "PyTorch's products",
        9.0,
        extra={"xla_dw": 1, "torch_dw": 9},
    )
    text = bench.explain(missed, [missed, scan, prod, other])
    assert "scan loop is 1.06x PyTorch eager too" in text
    assert (
        "products alone run at 0.60x PyTorch's in XLA (the weight gradients h.T @ dz at 0.50x)"
        in text
    )
    assert "within them" not in text  # 1 - 1.0625 / 1.2 = 11% > the 2% of spreads


def test_a_missed_lexicographic_goal_says_whether_the_spreads_cover_it(monkeypatch):
    bench, Row = _bench_and_row(monkeypatch, "bench_lexicographic")

    def row(ours, spread):
        return Row("lexicographic", "certified_grad", ours, "value_and_grad", 1.0, 1 / 1.5,
                   ours_spread=spread, baseline_spread=0.01)  # fmt: skip

    # 1.52 s against a goal of 1.5: 1.3% short
    assert "1.3% short of the goal, within" in bench.explain(row(1.52, 0.01), [])
    assert "beyond" in bench.explain(row(1.52, 0.001), [])
    assert "beyond" in bench.explain(row(1.6, 0.02), [])
