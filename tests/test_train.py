"""The training engine: instrumentation against brute force, lockstep runs, precisions,
faults, reproducibility, data parallelism, bad configurations.

Kept small (width <= 64, few epochs) so the whole module runs in well under a minute.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrelu.study import engine as T
from jaxrelu.study import models
from jaxrelu.study.data import Dataset, load_digits


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def _with_zero_images(ds, n=64):
    """Digits with the first ``n`` training images blanked: with zero biases ("he" init),
    every first-layer pre-activation of a blank image is exactly 0."""
    x = ds.x_train.copy()
    x[:n] = 0.0
    return Dataset("digits-blank", x, ds.y_train, ds.x_test, ds.y_test, ds.num_classes)


def _carry_and_static(cfg, ds):
    st = T._static_of(cfg, ds)
    kinks = jnp.asarray(cfg.kink_grads, st.compute_dtype)
    carry = jax.jit(T._init_carry, static_argnums=0)(st, jax.random.PRNGKey(cfg.seed), kinks)
    return st, carry, kinks


def test_zero_hits_and_bifurcation_equal_brute_force(digits):
    cfg = T.TrainConfig(width=16, depth=2, batch_size=8, dtype="float64", kink_grads=(0.0, 1.0))
    st, carry, kinks = _carry_and_static(cfg, digits)
    xb = jnp.asarray(digits.x_train[:8], jnp.float64)
    yb = jnp.asarray(digits.y_train[:8])
    # put neuron 5 of layer 1 exactly at 0 for images 0 and 3
    w = carry["params"]["layers"][0]["w"][0]
    x_flat = xb.reshape(8, -1)
    b = carry["params"]["layers"][0]["b"].at[:, 5].set(-(x_flat[0] @ w[:, 5]))
    carry["params"]["layers"][0]["b"] = b
    x_flat = x_flat.at[3].set(x_flat[0])
    xb = x_flat.reshape(xb.shape)
    _, out = jax.jit(T._step, static_argnums=0)(st, kinks, carry, (xb, yb))
    # brute force from the model itself
    params0 = jax.tree.map(lambda v: v[0], carry["params"])
    bn0 = jax.tree.map(lambda v: v[0], carry["bn"])
    _, _, pre = models.apply(st.arch, params0, bn0, xb, 0.0)
    brute = [int(jnp.sum(z == 0)) for z in pre]
    assert brute[0] == 2
    np.testing.assert_array_equal(out["zero_hits"][0], brute)
    np.testing.assert_array_equal(out["zero_hits"][1], brute)

    def grad_at(s):
        f = lambda p: T._cross_entropy(models.apply(st.arch, p, bn0, xb, s)[0], yb)
        return jax.grad(f)(params0)

    g0, g1 = grad_at(0.0), grad_at(1.0)
    differ = any(bool(jnp.any(a != c)) for a, c in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)))
    assert differ and bool(out["bifurcation"][0])
    num = sum(
        float(jnp.sum((a - c) ** 2)) for a, c in zip(jax.tree.leaves(g0), jax.tree.leaves(g1))
    )
    den = sum(float(jnp.sum(a**2)) for a in jax.tree.leaves(g0))
    assert float(out["bifurcation_rel_l2"][0]) == pytest.approx(np.sqrt(num / den), rel=1e-6)
    # with no zero hits, no bifurcation is reported (and none exists)
    _, out = jax.jit(T._step, static_argnums=0)(
        st,
        kinks,
        _carry_and_static(cfg, digits)[1],
        (jnp.asarray(digits.x_train[8:16], jnp.float64), jnp.asarray(digits.y_train[8:16])),
    )
    assert int(out["zero_hits"].sum()) == 0 and not bool(out["bifurcation"].any())


def test_float64_lockstep_identical_unless_a_tie(digits):
    cfg = T.TrainConfig(width=32, epochs=2, dtype="float64", kink_grads=(0.0, 1.0), init="torch")
    h = T.train(cfg, digits, progress=False)
    assert h.zero_hits.sum() == 0 and not h.bifurcation.any()
    assert np.all(h.weight_l1 == 0)
    for a, b in zip(jax.tree.leaves(h.params), jax.tree.leaves(h.params)):
        np.testing.assert_array_equal(a[0], b[1])
    tie = T.train(
        T.TrainConfig(width=32, epochs=1, dtype="float64", kink_grads=(0.0, 1.0), init="he"),
        _with_zero_images(digits),
        progress=False,
    )
    assert tie.zero_hits.sum() > 0 and tie.bifurcation.any()
    assert tie.weight_l1[-1, 1] > 0 and tie.weight_l1[-1, 0] == 0


def test_float16_reports_zero_hits_and_float32_learns(digits):
    h16 = T.train(
        T.TrainConfig(width=64, epochs=2, dtype="float16", kink_grads=(0.0, 1.0)),
        digits,
        progress=False,
    )
    assert h16.zero_hits.sum() > 0 and h16.bifurcation.any()
    assert h16.status == ("ok", "ok")
    h32 = T.train(T.TrainConfig(width=128, epochs=8), digits, progress=False)
    assert h32.final_accuracy[0] > 0.90
    assert np.all(np.diff(h32.epoch_loss[:, 0])[:3] < 0)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_mixed_precision_learns(digits, dtype):
    h = T.train(T.TrainConfig(width=64, epochs=3, dtype=dtype, mixed=True), digits, progress=False)
    assert h.epoch_loss[-1, 0] < h.epoch_loss[0, 0]
    assert jax.tree.leaves(h.params)[0].dtype == np.float32


def test_cnn_adam_batchnorm_and_schedule(digits):
    sched = optax.cosine_decay_schedule(3e-3, 30)
    h = T.train(
        T.TrainConfig(
            model="cnn",
            channels=(8, 8),
            batchnorm=True,
            optimizer="adam",
            learning_rate=sched,
            epochs=2,
            batch_size=64,
        ),
        digits,
        progress=False,
    )
    assert h.zero_hits.shape[2] == 2 and h.final_accuracy[0] > 0.3  # chance is 0.1
    assert h.epoch_loss[1, 0] < h.epoch_loss[0, 0]
    assert h.activations_per_step == 64 * (8 * 8 * 8 + 4 * 4 * 8)


def test_divergence_is_recorded_and_isolated(digits):
    cfg = T.TrainConfig(width=32, epochs=2, init="he", kink_grads=(0.0, 1e30))
    h = T.train(cfg, _with_zero_images(digits), progress=False)
    assert h.status == ("ok", "diverged")
    assert h.diverged_step[0] == -1 and h.diverged_step[1] >= 0
    assert np.isfinite(h.step_loss[:, 0]).all()
    runs = h.runs()
    assert runs[1]["status"] == "diverged" and runs[0]["test_accuracy"] > 0.5
    json.dumps(runs)


def test_reproducible_and_no_recompilation(digits):
    cfg = T.TrainConfig(width=16, epochs=3, seed=3)
    before = T._TRACE_COUNT["epoch"]
    a = T.train(cfg, digits, progress=False)
    assert T._TRACE_COUNT["epoch"] - before <= 1  # epochs 2 and 3 reuse the compilation
    b = T.train(cfg, digits, progress=False)
    assert T._TRACE_COUNT["epoch"] - before <= 1  # so does a second run of the same config
    for u, v in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(a.step_loss, b.step_loss)
    c = T.train(T.TrainConfig(width=16, epochs=3, seed=4), digits, progress=False)
    assert not np.array_equal(a.step_loss, c.step_loss)


def test_progress_bar_can_be_shown(digits, capsys):
    T.train(T.TrainConfig(width=8, epochs=1), digits, progress=True)
    assert "epoch" in capsys.readouterr().err


def test_bad_configurations_fail_before_compiling(digits):
    cases = [
        (dict(dtype="float17"), "`dtype`"),
        (dict(optimizer="rmsprop"), "`optimizer`"),
        (dict(model="resnet"), "`model`"),
        (dict(width=0), "`width`"),
        (dict(learning_rate=-1.0), "`learning_rate`"),
        (dict(batch_size=5000), "larger than the training set"),
        (dict(kink_grads=()), "`kink_grads`"),
        (dict(init="xavier"), "`init`"),
        (dict(mixed=True), "`mixed`"),
        (dict(devices=99), "`devices`"),
    ]
    for kw, msg in cases:
        with pytest.raises(ValueError, match=msg):
            T.train(T.TrainConfig(**kw), digits, progress=False)
    with pytest.raises(TypeError, match="TrainConfig"):
        T.train({"width": 3}, digits)


def test_multi_device_equals_single_device(tmp_path):
    script = textwrap.dedent(
        """
        import os, sys
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
        import jax
        jax.config.update("jax_enable_x64", True)
        import numpy as np
        from jaxrelu.study.engine import TrainConfig, train
        from jaxrelu.study.data import synthetic
        assert len(jax.local_devices()) == 4
        ds = synthetic(512, 64, dim=16)
        out = {}
        for n in (1, 4):
            cfg = TrainConfig(width=32, epochs=2, batch_size=64, dtype="float64", devices=n,
                              batchnorm=True, kink_grads=(0.0, 1.0))
            h = train(cfg, ds, progress=False)
            out[n] = np.concatenate([np.ravel(v) for v in jax.tree.leaves(h.params)])
            out[f"acc{n}"] = h.final_accuracy
        np.savez(sys.argv[1], **{str(k): v for k, v in out.items()})
        """
    )
    path = tmp_path / "run.py"
    path.write_text(script)
    res = tmp_path / "res.npz"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"  # four simulated CPU devices, also on a GPU machine
    proc = subprocess.run(
        [sys.executable, str(path), str(res)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = np.load(res)
    np.testing.assert_allclose(r["4"], r["1"], rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(r["acc4"], r["acc1"])
