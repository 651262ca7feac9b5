"""``reproduce``: resume integrity (an interrupted run equals an uninterrupted one; changed
data, plan or versions recompute; damaged saved results are recomputed), output safety,
permissions, the JSON schema, and Ctrl-C on the real command (exit 130, resume)."""

import dataclasses
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import jsonschema
import numpy as np
import pytest

import jaxrelu
from jaxrelu.study import experiments, interrupt, outputs
from jaxrelu.study import plan as plans
from jaxrelu.study import reproduce as R
from jaxrelu.study.data import Dataset, synthetic

pytestmark = pytest.mark.slow  # end-to-end runs of reproduce (seconds each)

TINY = dataclasses.replace(
    plans.QUICK,
    volume_base={"width": 8, "depth": 1, "batch_size": 64},
    volume_dtypes=("float64",),
    depths=(1, 2),
    widths=(8,),
    sweep_dtypes=("float64",),
    inits=4,
    train_dtypes=("float32",),
    epochs=1,
    train_width=8,
    divergence_dtypes=("float32",),  # the training runs' program: no other compilation
    divergence_steps=3,
    divergence_width=8,
    accumulate_dtypes=(),
    exposure={},
    collapse_dtypes=(),
)
N_JOBS = 2 + 1 + 1  # volume: the base and depth 2 (width 8 is the base); train; divergence


@pytest.fixture(scope="module")
def small():
    return synthetic(300, 60, dim=12, num_classes=4, seed=1)


@pytest.fixture
def calls(monkeypatch):
    """Counts the experiments actually computed (not loaded from a saved result)."""
    counted = []
    for name in ("volume", "train_comparison", "divergence"):
        real = getattr(experiments, name)

        def wrapper(*a, _real=real, _name=name, **k):
            counted.append(_name)
            hook = getattr(wrapper_hooks, "before", None)
            if hook:
                hook(len(counted))
            return _real(*a, **k)

        monkeypatch.setattr(experiments, name, wrapper)
    yield counted
    wrapper_hooks.before = None


class wrapper_hooks:  # a namespace for the fixture's hook
    before = None


def run(out, data, plan=TINY, log=None):
    return R.reproduce(str(out), data, plan=plan, progress=False, echo=lambda s: None,
                       log=(log.append if log is not None else lambda s: None))  # fmt: skip


def rows_without_timing(outcome):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in outcome.doc["results"]]


@pytest.fixture(scope="module")
def reference(small, tmp_path_factory):
    """An uninterrupted run (computed once for the module)."""
    out = tmp_path_factory.mktemp("reference")
    return out, run(out, small)


def test_interrupted_run_resumes_to_the_uninterrupted_result(small, reference, tmp_path, calls):
    out = tmp_path / "out"

    def ctrl_c_at_second(n):
        if n == 2:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while job 2 is about to compute

    wrapper_hooks.before = ctrl_c_at_second
    with interrupt.deferred(), pytest.raises(interrupt.Interrupted):
        run(out, small)
    saved = sorted(os.listdir(out / "runs"))
    assert len(saved) == 1 and not any(f.startswith(".tmp") for f in saved)
    wrapper_hooks.before = None
    resumed = run(out, small)
    assert calls.count("volume") == 2 + 1  # the saved one not rerun, the interrupted one rerun
    assert len(calls) == 2 + N_JOBS - 1
    assert rows_without_timing(resumed) == rows_without_timing(reference[1])
    again = run(out, small)
    assert len(calls) == 2 + N_JOBS - 1  # a complete rerun computes nothing
    assert rows_without_timing(again) == rows_without_timing(reference[1])


def test_changed_data_recomputes_and_says_so(small, reference, tmp_path, calls):
    out = tmp_path / "out"
    run(out, small)
    x = small.x_train.copy()
    x[0, 0] = 1.0 - x[0, 0]  # one pixel, same name, same sizes
    edited = Dataset(small.name, x, small.y_train, small.x_test, small.y_test, 4)
    log = []
    outcome = run(out, edited, log=log)
    assert len(calls) == 2 * N_JOBS
    assert len(log) == N_JOBS and all("saved with different data" in line for line in log)
    assert outcome.doc["dataset"]["sha256"] == edited.fingerprint != small.fingerprint


def test_changed_versions_recompute(small, reference, tmp_path, calls, monkeypatch):
    out = tmp_path / "out"
    run(out, small)
    monkeypatch.setattr(jaxrelu, "__version__", "99.0")
    log = []
    run(out, small, log=log)
    assert len(calls) == 2 * N_JOBS and all("another jaxrelu version" in s for s in log)


def test_changed_plan_computes_only_new_jobs_and_reports_only_its_own(small, tmp_path, calls):
    out = tmp_path / "out"
    run(out, small)
    bigger = dataclasses.replace(TINY, volume_dtypes=("float64", "float32"))
    outcome = run(out, small, plan=bigger)
    assert calls.count("volume") == 2 + 1
    smaller = dataclasses.replace(TINY, volume_dtypes=("float64",), depths=())
    outcome = run(out, small, plan=smaller)
    vol = [r for r in outcome.doc["results"] if r["experiment"] == "volume"]
    assert [(r["dtype"], r["depth"]) for r in vol] == [("float64", 1)]
    assert len(calls) == N_JOBS + 1  # nothing new computed for the smaller plan


def test_damaged_saved_results_are_recomputed(small, tmp_path, calls):
    out = tmp_path / "out"
    run(out, small)
    files = sorted((out / "runs").iterdir())
    assert [f.name.split("-")[0] for f in files] == ["divergence", "train", "volume", "volume"]
    damage = {
        files[0]: lambda t: t[: len(t) // 2],  # truncated
        files[1]: lambda t: t.replace('"schema_version": 1', '"schema_version": 0'),
        files[2]: lambda t: t.replace('"in_zone"', '"in_zones"'),
        files[3]: lambda t: "NaN",
    }
    for path, edit in damage.items():
        path.write_text(edit(path.read_text()))
    log = []
    outcome = run(out, small, log=log)
    assert len(calls) == N_JOBS + 4 and len(log) == 4
    assert any("unreadable" in s for s in log) and any("schema version 0" in s for s in log)
    assert any("rows missing fields" in s for s in log)
    for f in files:
        outputs.loads(f.read_text())  # all rewritten, valid again
    assert len(outcome.doc["results"]) == len(run(out, small).doc["results"])


def test_outputs_validate_are_strict_and_use_the_umask(small, tmp_path):
    old = os.umask(0o027)
    try:
        outcome = run(tmp_path / "out", small)
    finally:
        os.umask(old)
    schema = outputs.schema()
    written = [outcome.results, *(str(p) for p in (tmp_path / "out" / "runs").iterdir())]
    for path in written:
        with open(path) as fh:
            doc = outputs.loads(fh.read())  # strict: no NaN
        jsonschema.validate(doc, schema)
    with open(outcome.results) as fh:
        results = outputs.loads(fh.read())
    assert results["kind"] == "reproduce" and results["interval"]["level"] == 0.95
    assert results["dataset"]["sha256"] == small.fingerprint
    for path in [*written, outcome.report, *outcome.plots]:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640, path
    assert len(outcome.plots) == 4  # by precision, by depth, accuracy, divergence
    with open(outcome.report) as fh:
        md = fh.read()
    assert "| float64 | 0.000 [0.00, 0.49] |" in md and "± 0.0000" not in md


def test_schema_rejects_what_it_should(small, reference):
    with open(reference[1].results) as fh:
        doc = outputs.loads(fh.read())
    jsonschema.validate(doc, outputs.schema())
    bad = json.loads(json.dumps(doc))
    bad["results"][0]["probability"] = None  # a volume row needs its probability
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, outputs.schema())
    bad = dict(doc, schema_version=2)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, outputs.schema())


@pytest.mark.parametrize("kind", ["directory", "symlink", "fifo"])
def test_unsafe_output_paths_are_refused_before_any_work(small, tmp_path, calls, kind):
    out = tmp_path / "out"
    out.mkdir()
    target = out / "results.json"
    if kind == "directory":
        target.mkdir()
    elif kind == "symlink":
        (tmp_path / "elsewhere").write_text("keep me")
        target.symlink_to(tmp_path / "elsewhere")
    else:
        os.mkfifo(target)
    with pytest.raises(outputs.OutputPathError, match="results.json is a"):
        run(out, small)
    assert calls == [] and not (out / "runs").exists()
    if kind == "symlink":
        assert (tmp_path / "elsewhere").read_text() == "keep me"


def test_plan_that_cannot_run_on_the_data_is_refused_before_any_work(tmp_path, calls):
    few = synthetic(100, 20, dim=12, num_classes=4)
    with pytest.raises(ValueError, match="100 training images, but this plan needs at least 128"):
        run(tmp_path / "out", few)
    with pytest.raises(ValueError, match="plan's CNN runs need"):
        run(tmp_path / "out", synthetic(600, 20, dim=12), plan=dataclasses.replace(
            TINY, cnn=True, cnn_dtypes=("float32",)))  # fmt: skip
    assert calls == []


SCRIPT = textwrap.dedent(
    """
    import dataclasses, os, sys
    from jaxrelu.study import cli, experiments, plan
    plan.QUICK = dataclasses.replace(
        plan.QUICK, volume_base={"width": 8, "depth": 1, "batch_size": 64},
        volume_dtypes=("float64",), depths=(1, 2), sweep_dtypes=("float64",), inits=400,
        train_dtypes=("float32",), epochs=1, train_width=8, divergence_dtypes=("float32",),
        divergence_steps=3, divergence_width=8, accumulate_dtypes=(), exposure={},
        collapse_dtypes=())
    experiments.VOLUME_CHUNK = 2  # 200 XLA calls per volume job: many chunk boundaries
    real = experiments.volume
    def volume(*a, **k):
        open(os.environ["MARKER"], "a").write("v")
        return real(*a, **k)
    experiments.volume = volume
    sys.exit(cli.main(["reproduce", "--quick", "--no-progress", *sys.argv[1:]]))
    """
)


def _cli(tmp_path, out, data, sigint_after=None):
    env = dict(os.environ, MARKER=str(tmp_path / "marker"), JAX_PLATFORMS="cpu")
    env.update(JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jit-cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")  # fmt: skip
    (tmp_path / "marker").write_text("")
    script = tmp_path / "cli.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), "--out", str(out), "--data", data],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    if sigint_after is not None:
        deadline = time.monotonic() + 120
        while len((tmp_path / "marker").read_text()) < sigint_after:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        time.sleep(0.3)  # inside the job's chunk loop (compiling or computing)
        proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    return proc.returncode, stdout, stderr


def test_ctrl_c_on_the_command_exits_130_saves_and_resumes(tmp_path):
    data = tmp_path / "small.npz"
    x = np.random.default_rng(0).uniform(size=(360, 12)).astype(np.float32)
    y = np.arange(360) % 4
    np.savez(data, x_train=x[:300], y_train=y[:300], x_test=x[300:], y_test=y[300:])
    out = tmp_path / "out"
    # Ctrl-C during the second volume job (compiling or between two of its 200 chunks)
    rc, stdout, stderr = _cli(tmp_path, out, str(data), sigint_after=2)
    assert rc == 130, stderr[-2000:]
    assert "Traceback" not in stderr and "rerun the same command to resume" in stderr
    assert f"saved in {out / 'runs'}" in stderr
    assert len(os.listdir(out / "runs")) == 1  # the finished job, nothing partial
    rc, stdout, stderr = _cli(tmp_path, out, str(data))
    assert rc == 0, stderr[-2000:]
    assert f"report        {out / 'report.md'}" in stdout and str(out / "results.json") in stdout
    assert "(saved result)" not in stderr  # --no-progress: no stage lines
    doc = outputs.loads((out / "results.json").read_text())
    assert [r["experiment"] for r in doc["results"]] == ["volume"] * 2 + ["train"] * 2 + [
        "divergence"
    ]
    assert [r["inits"] for r in doc["results"][:2]] == [400, 400]


def test_schema_names_every_experiment_reproduce_saves():
    # each saved run file records its experiment; the schema must accept all of them (the
    # collapse experiment's files were once refused at the top level)
    from jaxrelu.study.reproduce import EXPERIMENTS

    schema = outputs.schema()
    assert set(schema["properties"]["experiment"]["enum"]) == set(EXPERIMENTS)
