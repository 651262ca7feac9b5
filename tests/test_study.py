"""The study: the volume protocol against a one-initialisation-at-a-time reference,
confidence intervals, training comparison and divergence rows, resumable reproduce."""

import json
import math
import os

import jax
import jax.numpy as jnp
import pytest

from jaxrelu.study import experiments as study
from jaxrelu.study import models, report
from jaxrelu.study.data import synthetic


@pytest.fixture(scope="module")
def small():
    return synthetic(300, 60, dim=12, num_classes=4, seed=1)


def test_wilson_interval():
    lo, hi = study.wilson_interval(0, 100)
    assert lo == 0.0 and hi == pytest.approx(0.0370, abs=1e-4)
    lo, hi = study.wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    assert study.wilson_interval(7, 7)[1] == 1.0
    assert all(math.isnan(v) for v in study.wilson_interval(0, 0))


def _reference_volume(ds, dtype, width, depth, batch, inits, seed):
    """The paper's protocol, literally: one initialisation at a time, every minibatch,
    both backward passes, exact comparison of the first-layer weight gradients."""
    arch = models.Architecture("mlp", (ds.n_features,), ds.num_classes, width, depth, init="torch")
    dt = jnp.dtype(dtype)
    keys = jax.random.split(jax.random.PRNGKey(seed), inits)
    x = jnp.asarray(ds.x_train.reshape(len(ds.y_train), -1), dt)
    y = jnp.asarray(ds.y_train)

    def grad_w1(p, xb, yb, s):
        def loss(p):
            logits = models.apply(arch, p, {"bn": []}, xb, jnp.asarray(s, dt))[0]
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), yb[:, None], 1))

        return jax.grad(loss)(p)["layers"][0]["w"]

    grad_w1 = jax.jit(grad_w1, static_argnums=3)
    zone = []
    for k in keys:
        p = models.init(arch, k, dt)[0]
        differs = False
        for start in range(0, len(y), batch):
            xb, yb = x[start : start + batch], y[start : start + batch]
            if bool(jnp.any(grad_w1(p, xb, yb, 0.0) != grad_w1(p, xb, yb, 1.0))):
                differs = True
                break
        zone.append(differs)
    return zone


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_volume_equals_the_one_at_a_time_protocol(small, dtype):
    row = study.volume(dtype, width=24, depth=2, batch_size=64, inits=6, seed=2, data=small)
    ref = _reference_volume(small, dtype, 24, 2, 64, 6, 2)
    assert row["in_zone"] == sum(ref)
    assert row["minibatches"] == math.ceil(300 / 64)


def test_volume_by_precision_on_digits():
    rows = {
        dt: study.volume(dt, width=64, depth=2, batch_size=128, inits=8)
        for dt in ("float16", "float64")
    }
    assert rows["float16"]["probability"] == 1.0 and rows["float16"]["relative_l2"] > 0
    assert rows["float64"]["in_zone"] == 0 and rows["float64"]["relative_l2"] is None
    for r in rows.values():
        lo, hi = r["ci"]
        assert 0 <= lo <= r["probability"] <= hi <= 1
        json.dumps(r)


def test_volume_bad_input(small):
    with pytest.raises(ValueError, match="float17"):
        study.volume("float17", data=small)
    with pytest.raises(ValueError, match="`inits`"):
        study.volume("float32", inits=0, data=small)
    with pytest.raises(ValueError, match="larger than the training set"):
        study.volume("float32", batch_size=10_000, data=small)


def test_train_comparison_and_divergence_rows(small):
    rows = study.train_comparison(
        (0.0, 1.0), "float32", "sgd", False, 0, epochs=2, data=small, width=16, batch_size=32
    )
    assert [r["kink_grad"] for r in rows] == [0.0, 1.0]
    keys = {
        "model",
        "kink_grad",
        "dtype",
        "optimizer",
        "batchnorm",
        "seed",
        "status",
        "test_accuracy",
        "zero_hits",
        "bifurcation_steps",
    }
    assert keys <= set(rows[0]) and rows[0]["status"] == "ok"
    d64 = study.divergence("float64", steps=12, width=16, batch_size=32, data=small)
    assert d64["first_divergence"] is None and set(d64["l1"]) == {0.0} and d64["steps"] == 12


def test_reproduce_is_resumable(tmp_path, monkeypatch, small):
    tiny = report.Plan(
        volume_base={"width": 8, "depth": 1, "batch_size": 64},
        volume_dtypes=("float32", "float64"),
        depths=(1, 2),
        widths=(8,),
        batch_sizes=(),
        sweep_dtypes=("float64",),
        batch_dtypes=(),
        inits=4,
        train_kinks=(0.0, 1.0),
        train_dtypes=("float32",),
        train_optimizers=("sgd",),
        train_batchnorm=(False,),
        seeds=(0,),
        epochs=1,
        train_width=8,
        cnn=False,
        cnn_dtypes=(),
        divergence_dtypes=("float64",),
        divergence_steps=3,
        divergence_width=8,
    )
    monkeypatch.setattr(report, "QUICK", tiny)
    calls = {"volume": 0}
    real_volume = study.volume

    def counting(*a, **k):
        calls["volume"] += 1
        if calls["volume"] == 3 and "boom" not in calls:
            calls["boom"] = True
            raise KeyboardInterrupt  # an interruption in the middle of the sweep
        return real_volume(*a, **k)

    monkeypatch.setattr(study, "volume", counting)
    out = str(tmp_path / "out")
    with pytest.raises(KeyboardInterrupt):
        report.reproduce(out, small, quick=True, progress=False, echo=lambda s: None)
    saved = os.listdir(os.path.join(out, "runs"))
    assert len(saved) == 2 and not any(f.startswith(".tmp") for f in saved)
    doc = report.reproduce(out, small, quick=True, progress=False, echo=lambda s: None)
    assert calls["volume"] == 3 + 1  # the two saved configurations were not rerun
    kinds = [r["experiment"] for r in doc["results"]]
    assert (
        kinds.count("volume") == 3 and kinds.count("train") == 2 and kinds.count("divergence") == 1
    )
    md = (tmp_path / "out" / "report.md").read_text()
    assert "paper" in md and "Volume of the bifurcation zone" in md
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    assert on_disk["jaxrelu_version"] and on_disk["results"] == json.loads(
        json.dumps(doc["results"])
    )
    assert any(f.endswith(".png") for f in os.listdir(out))
    report.reproduce(out, small, quick=True, progress=False, echo=lambda s: None)
    assert calls["volume"] == 4  # a full rerun recomputes nothing


def test_out_not_writable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="not writable"):
        report.check_writable(str(blocker / "sub"))
