"""The command line: --version, usage, help with defaults, one-line errors before any
work (bad values, unsafe output paths, data that cannot be used, memory), versioned JSON
that validates against the shipped schema, and one rendering of values shared with the
report."""

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
from jaxrelu.study import cli, limits, outputs
from jaxrelu.study.config import NetworkConfig, OptimConfig, RunConfig
from jaxrelu.study.experiments import DivergenceConfig, VolumeConfig

COMMANDS = ["reproduce", "volume", "train", "divergence", "collapse", "audit"]


def validate(path):
    with open(path) as fh:
        doc = outputs.loads(fh.read())  # strict JSON: a bare NaN fails here
    jsonschema.validate(doc, outputs.schema())
    return doc


@pytest.fixture(scope="module")
def small_npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "small.npz"
    x = np.random.default_rng(0).uniform(size=(360, 12)).astype(np.float32)
    y = np.arange(360) % 4
    np.savez(path, x_train=x[:300], y_train=y[:300], x_test=x[300:], y_test=y[300:])
    return str(path)


def test_version_and_bare_usage(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip().startswith(f"jaxrelu {jaxrelu.__version__} (JAX ")
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: jaxrelu") and all(c in err for c in COMMANDS)


def _subparsers():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_text_and_default_for_every_option(cmd, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([cmd, "--help"])
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith(f"usage: jaxrelu {cmd}")
    for action in _subparsers()[cmd]._actions:
        if action.dest == "help":
            continue
        assert action.help, f"{cmd} {action.option_strings} has no help text"
        assert " ".join(action.help.split()) in out
        if action.default is not None and action.default is not False:
            shown = action.default
            if isinstance(shown, list):
                shown = " ".join(map(str, shown))
            assert f"(default: {shown})" in out, (cmd, action.dest)
        elif action.default is None and action.dest not in ("json",):
            assert "default: " in action.help, (cmd, action.dest)  # stated in the text


def test_closed_sets_have_choices():
    closed = {"dtypes", "optimizers", "batchnorm", "model"}
    for name, sp in _subparsers().items():
        for action in sp._actions:
            if action.dest in closed:
                assert action.choices, (name, action.dest)


def test_defaults_come_from_the_config_dataclasses(capsys):
    expected = {
        "volume": [f"(default: {VolumeConfig.inits})", f"(default: {VolumeConfig.width})"],
        "train": [
            f"(default: {NetworkConfig.width}; MLP only)",
            f"(default: {RunConfig.epochs})",
            f"(default: {OptimConfig.batch_size})",
            "(default: 0.1 for sgd, 0.001 for adam)",
        ],
        "divergence": [f"(default: {DivergenceConfig.steps})", "(default: 0.0)"],
        "reproduce": ["(default: jaxrelu-results)", "(default: digits)"],
    }
    for cmd, needles in expected.items():
        with pytest.raises(SystemExit):
            cli.main([cmd, "--help"])
        out = " ".join(capsys.readouterr().out.split())
        for needle in needles:
            assert needle in out, (cmd, needle)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["volume", "--dtypes", "float17"], "invalid choice: 'float17'"),
        (["volume", "--inits", "0"], "--inits: 0 must be between 1"),
        (["volume", "--widths", "x"], "--widths: 'x' is not an integer"),
        (["volume", "--widths", "1000000000"], "must be between 1 and 65536"),
        (["volume", "--widths", str(10**30)], "must be between 1 and 65536"),
        (["volume", "--depths", "100000"], "must be between 1 and 64"),
        (["volume", "--seed", str(2**70)], "--seed: 1180591620717411303424 must be between 0"),
        (["train", "--batchnorm", "maybe"], "invalid choice: 'maybe'"),
        (["train", "--model", "vgg"], "invalid choice: 'vgg'"),
        (["train", "--kink-grads", "nan"], "'nan' is neither a finite number nor 'lexicographic'"),
        (["train", "--kink-grads", "lexico"], "'lexico' is neither a finite number nor"),
        (
            ["train", "--model", "cnn", "--kink-grads", "0", "lexicographic"],
            "'lexicographic' needs a ReLU network without max pooling",
        ),
        (["train", "--accumulate", "fused"], "invalid choice: 'fused'"),
        (["train", "--model", "cnn", "--width", "8"], "--width applies to --model mlp"),
        (["train", "--model", "resnet", "--width", "8"], "--width applies to --model mlp"),
        (["train", "--model", "cnn", "--depth", "2"], "--depth applies to --model mlp and resnet"),
        (["train", "--channels", "8"], "--channels applies to --model cnn and resnet"),
        (["volume", "--accumulate", "float64"], "invalid choice: 'float64'"),
        (["volume", "--images", "0"], "--images: 0 must be at least 1"),
        (["volume", "--images", "1e5"], "--images: '1e5' is not an integer"),
        (["divergence", "--accumulate", "fp32"], "invalid choice: 'fp32'"),
        (["train", "--model", "cnn", "--data", "synthetic"], "CNN needs (H, W, C) images"),
        (["volume", "--data", "/no/such/dir"], "--data: data path not found"),
        (["volume", "--batch-sizes", "100000"], "larger than the training set"),
        (["reproduce", "--out", "/proc/no/such"], "--out /proc/no/such is not writable"),
        (["volume", "--json", "/no/such/dir/x.json"], "no such directory /no/such/dir"),
        (["volume", "--json", "/dev/stdout"], "is a symbolic link"),
        (["volume", "--json", "/dev/null"], "is a character device"),
        (["volume", "--json", "/tmp"], "/tmp is a directory"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["collapse", "--channels", "4,x"], "--channels: '4,x': 'x' is not an integer"),
        (["collapse", "--channels", "4,0"], "--channels: '4,0': 0 must be between 1"),
        (["collapse", "--depths", "0"], "--depths: 0 must be between 1"),
        (["collapse", "--kink-grads", "inf"], "'inf' is neither a finite number nor"),
        (["collapse", "--data", "synthetic"], "CNN needs (H, W, C) images"),
        (["reproduce", "--out", ""], "--out is empty; give a directory"),
        (["train", "--lr", "1e308"], "--lr: '1e308' is outside float32's range"),
        (["train", "--lr", "1e-50"], "--lr: '1e-50' is outside float32's range"),
        (["divergence", "--lr", "1e39"], "outside float32's range"),
    ],
)
def test_bad_arguments_are_one_line_before_any_work(argv, needle, capsys):
    t0 = time.perf_counter()
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert time.perf_counter() - t0 < 15  # refused before any training or estimate ran


def test_json_to_a_fifo_or_symlink_is_refused_and_left_alone(tmp_path, capsys):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "real.json").write_text("keep")
    (tmp_path / "link.json").symlink_to(tmp_path / "real.json")
    for path, what in ((fifo, "a FIFO"), (tmp_path / "link.json", "a symbolic link")):
        assert cli.main(["audit", "--json", str(path)]) == 2
        assert f"{path} is {what}; refusing" in capsys.readouterr().err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert (tmp_path / "real.json").read_text() == "keep"


def test_a_bad_reproduce_leaves_no_output_directory_and_names_a_file_as_one(tmp_path, capsys):
    """A --data that cannot be used is refused before --out is created (it left an empty
    directory tree behind); an --out that is a regular file is named as one."""
    out = tmp_path / "deep" / "er"
    argv = ["reproduce", "--quick", "--data", str(tmp_path / "missing"), "--out", str(out)]
    assert cli.main(argv) == 2
    assert "--data" in capsys.readouterr().err
    assert not (tmp_path / "deep").exists()
    afile = tmp_path / "afile.txt"
    afile.write_text("keep")
    assert cli.main(["reproduce", "--quick", "--out", str(afile)]) == 2
    assert f"{afile} is a regular file, not a directory" in capsys.readouterr().err
    assert afile.read_text() == "keep"


def test_reproduce_refuses_data_too_small_for_its_plan(tmp_path, capsys):
    path = tmp_path / "tiny.npz"
    x = np.random.default_rng(0).uniform(size=(60, 4))
    np.savez(path, x_train=x[:50], y_train=np.arange(50) % 2, x_test=x[50:],
             y_test=np.arange(10) % 2)  # fmt: skip
    assert cli.main(["reproduce", "--quick", "--data", str(path), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "50 training images, but this plan needs at least 128" in err
    assert not (tmp_path / "runs").exists()


def test_memory_refusal_names_the_estimate(capsys, monkeypatch):
    monkeypatch.setattr(limits, "available_bytes", lambda: 2**30)
    assert cli.main(["volume", "--widths", "16384", "--depths", "3", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs about" in err and "only 1.0 GiB is available" in err
    assert len(err.splitlines()) == 1


def test_volume_json_validates_and_the_table_matches_the_report(small_npz, tmp_path, capsys):
    out = tmp_path / "v.json"
    argv = ["volume", "--dtypes", "float16", "float64", "--widths", "8", "--depths", "1",
            "--batch-sizes", "64", "--inits", "4", "--json", str(out), "--no-progress",
            "--data", small_npz]  # fmt: skip
    old = os.umask(0o022)
    try:
        assert cli.main(argv) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o644
    doc = validate(out)
    assert doc["kind"] == "volume" and doc["schema_version"] == 1
    assert doc["interval"] == {"method": "wilson", "level": 0.95}
    assert doc["dataset"]["name"] == "small.npz" and doc["config"]["inits"] == 4
    rows = {r["dtype"]: r for r in doc["results"]}
    assert rows["float64"]["in_zone"] == 0 and rows["float64"]["relative_l2"] is None
    table = capsys.readouterr().out
    f64 = next(line for line in table.splitlines() if line.startswith("float64"))
    assert "0.000 [0.00, 0.49]" in f64 and " - " in f64  # the report's interval and missing


def test_train_json_records_the_cnn_truthfully(tmp_path):
    out = tmp_path / "t.json"
    argv = ["train", "--model", "cnn", "--channels", "4", "--epochs", "1", "--batch-size",
            "64", "--json", str(out), "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    doc = validate(out)
    assert doc["config"]["network"]["channels"] == [4]
    assert "width" not in doc["config"]["network"] and "width" not in doc["config"]
    rows = doc["results"]
    assert [r["kink_grad"] for r in rows] == [0.0, 1.0]
    assert rows[0]["network"] == {"model": "cnn", "channels": [4], "batchnorm": False,
                                  "init": "torch", "activation": "relu"}  # fmt: skip


def test_train_resnet_lexicographic_float32_accumulation_json(tmp_path, capsys):
    out = tmp_path / "t.json"
    argv = ["train", "--model", "resnet", "--channels", "2", "--depth", "1", "--epochs", "1",
            "--batch-size", "128", "--dtypes", "float16", "--accumulate", "float32",
            "--kink-grads", "0", "lexicographic", "--init", "he", "--json", str(out),
            "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    doc = validate(out)
    rows = doc["results"]
    assert [r["kink_grad"] for r in rows] == [0.0, "lexicographic"]
    assert {r["accumulate"] for r in rows} == {"float32"}
    net = {"model": "resnet", "depth": 1, "channels": [2], "batchnorm": False, "init": "he"}
    assert rows[0]["network"] == {**net, "activation": "relu"}
    assert doc["config"]["accumulate"] == ["float32"]
    line = next(ln for ln in capsys.readouterr().out.splitlines() if "lexicographic" in ln)
    assert line.split()[:2] == ["resnet", "float16"]


def test_collapse_sweep_json_validates_one_row_per_run(tmp_path, capsys):
    out = tmp_path / "c.json"
    argv = ["collapse", "--depths", "1", "2", "--channels", "2", "--epochs", "1",
            "--kink-grads", "0", "1", "--dtypes", "float16", "--json", str(out),
            "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    doc = validate(out)
    rows = doc["results"]
    # 2 depths x 1 channel set x 2 kink values; a stage of d blocks has 2d convolutions
    assert [(r["depth"], r["kink_grad"]) for r in rows] == [(1, 0.0), (1, 1.0), (2, 0.0), (2, 1.0)]
    assert [r["convolutions"] for r in rows] == [3, 3, 5, 5]
    assert all(r["channels"] == [2] and r["batchnorm"] is False for r in rows)
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:2] == ["precision", "batch"] and len(table) == 3


def test_collapse_sweep_table_from_hand_made_rows():
    from jaxrelu.study.report import collapse_sweep_table

    def row(kink, acc, seed, depth=1, zeros=0.1, live=(1e-4, 3e-4), tg=(0.01, 0.02)):
        return {"dtype": "float16", "batchnorm": False, "depth": depth, "channels": [4, 8],
                "convolutions": 1 + 4 * depth, "kink_grad": kink, "test_accuracy": acc,
                "zero_hit_rate": zeros, "live_tie_rate_by_layer": list(live),
                "tie_gradient_mean": tg[0], "tie_gradient_max": tg[1],
                "collapsed": acc is None or acc <= 0.2, "seed": seed}  # fmt: skip

    rows = [row(0.0, 0.5, 0), row(0.0, 0.7, 1), row(1.0, 0.1, 0), row(1.0, None, 1),
            row(0.0, 0.9, 0, depth=2, tg=(0.0, 0.5)), row(1.0, 0.8, 0, depth=2)]  # fmt: skip
    lines = collapse_sweep_table(rows, style="text").splitlines()
    assert len(lines) == 3
    d1, d2 = lines[1].split(), lines[2].split()
    # depth 1: means 0.60 (ReLU'(0) = 0) and 0.05 (= 1, a diverged run counts as 0)
    assert d1[2:5] == ["1", "4,8", "5"] and "0: 0.60, 1: 0.05" in lines[1]
    assert d1[-2:] == ["0.55", "2/4"]
    assert d1[5:7] == ["1.0e-01", "2.0e-04"] and d1[7:10] == ["1.0e-02", "/", "2.0e-02"]
    # depth 2: spread 0.10, no collapse; the largest tie gradient is the max over seeds
    assert d2[2] == "2" and d2[-2:] == ["0.10", "0/2"] and d2[9] == "5.0e-01"


def test_volume_accumulate_and_images_rows(small_npz, tmp_path):
    out = tmp_path / "v.json"
    argv = ["volume", "--dtypes", "float16", "--widths", "8", "--depths", "1",
            "--batch-sizes", "64", "--inits", "4", "--accumulate", "native", "float32",
            "--images", "700", "--json", str(out), "--no-progress",
            "--data", small_npz]  # fmt: skip
    assert cli.main(argv) == 0
    rows = validate(out)["results"]
    assert [(r["accumulate"], r["images"]) for r in rows] == [("native", 700), ("float32", 700)]


def test_divergence_table_and_json(small_npz, tmp_path, capsys):
    out = tmp_path / "d.json"
    argv = ["divergence", "--dtypes", "float32", "--steps", "3", "--width", "8", "--momentum",
            "0.9", "--json", str(out), "--no-progress", "--data", small_npz]  # fmt: skip
    assert cli.main(argv) == 0
    assert validate(out)["results"][0]["first_divergence"] is None
    table = capsys.readouterr().out
    assert "never" in table and "None" not in table


def test_audit_json_validates(tmp_path, capsys):
    assert cli.main(["audit", "--json", str(tmp_path / "a.json")]) == 0
    out = capsys.readouterr().out
    assert "jnp.maximum(x, 0)" in out
    doc = validate(tmp_path / "a.json")
    assert doc["kind"] == "audit" and doc["dataset"] is None
    assert any(r["expression"] == "jax.nn.relu(x)" for r in doc["results"])


def test_console_script_error_has_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "jaxrelu.study.cli", "volume", "--dtypes", "float17"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "float17" in proc.stderr and "Traceback" not in proc.stderr


BIG_INITS = textwrap.dedent(
    """
    import resource, sys
    vm = int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1])
    from jaxrelu.study import cli
    import jax
    jax.devices()
    vm = int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1])
    limit = vm * 1024 + (1 << 30)  # 1 GiB more than the process has mapped now
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    print("limited", flush=True)
    sys.exit(cli.main(["volume", "--dtypes", "float32", "--widths", "8", "--depths", "1",
                       "--inits", "1000000000", "--data", "synthetic"]))
    """
)


@pytest.mark.slow
def test_a_billion_inits_run_in_bounded_memory_and_stop_on_ctrl_c(tmp_path):
    script = tmp_path / "big.py"
    script.write_text(BIG_INITS)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline().strip() == "limited"
    time.sleep(6)  # compiled and running chunk after chunk, under the memory limit
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "interrupted" in err


def test_the_shipped_schema_is_a_valid_json_schema():
    schema = outputs.schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["schema_version"] == {"const": outputs.SCHEMA_VERSION}
    assert set(schema["properties"]["kind"]["enum"]) == set(outputs.KINDS)


def test_ctrl_c_during_a_sweep_keeps_the_finished_rows(small_npz, tmp_path, monkeypatch, capsys):
    from jaxrelu.study import experiments

    real, calls = experiments.volume, []

    def volume(*a, **k):
        calls.append(k["dtype"])
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C as the second row starts
        return real(*a, **k)

    monkeypatch.setattr(experiments, "volume", volume)
    before = signal.getsignal(signal.SIGINT)  # the default, or SIG_IGN in a background job
    out = tmp_path / "v.json"
    argv = ["volume", "--dtypes", "float16", "float64", "--widths", "8", "--depths", "1",
            "--batch-sizes", "64", "--inits", "4", "--json", str(out), "--no-progress",
            "--data", small_npz]  # fmt: skip
    assert cli.main(argv) == 130
    err = capsys.readouterr().err
    assert "interrupted: 1 finished rows kept" in err and "Traceback" not in err
    doc = validate(out)
    assert doc["interrupted"] is True and [r["dtype"] for r in doc["results"]] == ["float16"]
    assert signal.getsignal(signal.SIGINT) is before  # handler restored


def test_ctrl_c_while_jax_loads_is_held_until_it_has_loaded(monkeypatch, capsys):
    # the parser reads its defaults from the study's configs, which import JAX; a
    # KeyboardInterrupt inside an extension's import broke it ("ImportError: Encountered
    # an error while initializing the extension", or a traceback). Ctrl-C there now waits
    # for the parser to be built, then exits with 130 and one line
    real, done = cli.build_parser, []

    def build_parser():
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of loading
        parser = real()
        done.append(True)  # reached: the interrupt was held
        return parser

    monkeypatch.setattr(cli, "build_parser", build_parser)
    before = signal.getsignal(signal.SIGINT)
    assert cli.main(["audit"]) == 130
    err = capsys.readouterr().err
    assert done == [True] and err.strip().splitlines()[-1] == "interrupted", err
    assert "Traceback" not in err
    assert signal.getsignal(signal.SIGINT) is before  # handler restored


LIGHT_IMPORT = textwrap.dedent(
    """
    import sys
    import jaxrelu.study.cli
    import jaxrelu
    assert "jax" not in sys.modules, "the command line's module loads JAX"
    jaxrelu.relu, jaxrelu.__version__, jaxrelu.kinks  # names and submodules on first use
    assert "jax" in sys.modules and "jaxrelu.kinks" in sys.modules
    from jaxrelu import check_many, REGISTRY
    from jaxrelu.study import volume
    assert set(jaxrelu.__all__) <= set(dir(jaxrelu))
    missing = [n for n in jaxrelu.__all__ if getattr(jaxrelu, n, None) is None]
    assert not missing, missing
    try:
        jaxrelu.no_such_name
    except AttributeError as err:
        assert "no_such_name" in str(err)
    else:
        raise AssertionError("no AttributeError")
    print("ok")
    """
)


def test_the_command_line_module_loads_no_jax_until_it_runs():
    # so Ctrl-C is handled from the first instant of the command (after Python's own
    # start-up), and `import jaxrelu` gives every public name on first use
    proc = subprocess.run([sys.executable, "-c", LIGHT_IMPORT], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
