"""The command line: one-line errors with a non-zero exit, --help everywhere, JSON output."""

import json
import subprocess
import sys

import pytest

from jaxrelu.study import cli

COMMANDS = ["reproduce", "volume", "train", "divergence", "audit"]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([cmd, "--help"])
    assert info.value.code == 0
    assert "usage: jaxrelu" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["volume", "--dtypes", "float17"], "float17"),
        (["volume", "--inits", "0"], "--inits"),
        (["volume", "--widths", "x"], "--widths"),
        (["train", "--batchnorm", "maybe"], "maybe"),
        (["train", "--model", "resnet"], "resnet"),
        (["train", "--kink-grads", "nan"], "nan"),
        (["volume", "--data", "/no/such/dir"], "not found"),
        (["volume", "--batch-sizes", "100000"], "larger than the training set"),
        (["reproduce", "--out", "/proc/no/such"], "not writable"),
        (["volume", "--json", "/no/such/dir/x.json"], "--json"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_arguments_are_one_line(argv, needle, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_volume_json_contract(tmp_path, capsys):
    out = tmp_path / "v.json"
    rc = cli.main(
        [
            "volume",
            "--dtypes",
            "float16",
            "float64",
            "--widths",
            "16",
            "--depths",
            "1",
            "--batch-sizes",
            "128",
            "--inits",
            "4",
            "--json",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    doc = json.loads(out.read_text())
    assert set(doc) >= {"jaxrelu_version", "dataset", "config", "results"}
    assert doc["dataset"] == "digits"
    rows = {r["dtype"]: r for r in doc["results"]}
    for key in (
        "dtype",
        "width",
        "depth",
        "batch_size",
        "inits",
        "in_zone",
        "probability",
        "ci",
        "minibatch_rate",
        "relative_l2",
    ):
        assert key in rows["float16"]
    assert rows["float64"]["in_zone"] == 0
    assert "probability" in capsys.readouterr().out


def test_train_and_divergence_json(tmp_path):
    out = tmp_path / "t.json"
    rc = cli.main(
        [
            "train",
            "--kink-grads",
            "0",
            "1",
            "--dtypes",
            "float32",
            "--epochs",
            "1",
            "--width",
            "16",
            "--json",
            str(out),
            "--no-progress",
            "--data",
            "synthetic",
        ]
    )
    assert rc == 0
    rows = json.loads(out.read_text())["results"]
    assert [r["kink_grad"] for r in rows] == [0.0, 1.0] and rows[0]["dtype"] == "float32"
    assert {
        "model",
        "optimizer",
        "batchnorm",
        "seed",
        "status",
        "test_accuracy",
        "zero_hits",
        "bifurcation_steps",
    } <= set(rows[0])
    out = tmp_path / "d.json"
    rc = cli.main(
        [
            "divergence",
            "--dtypes",
            "float64",
            "--steps",
            "5",
            "--width",
            "16",
            "--json",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0 and json.loads(out.read_text())["results"][0]["first_divergence"] is None


def test_audit_prints_the_table(capsys, tmp_path):
    assert cli.main(["audit", "--json", str(tmp_path / "a.json")]) == 0
    out = capsys.readouterr().out
    assert "jnp.maximum(x, 0)" in out and "0.5" in out
    rows = json.loads((tmp_path / "a.json").read_text())["rows"]
    assert any(r["expression"] == "jax.nn.relu(x)" for r in rows)


def test_console_script_error_has_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "jaxrelu.study.cli", "volume", "--dtypes", "float17"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "float17" in proc.stderr and "Traceback" not in proc.stderr
