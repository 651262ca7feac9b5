"""The training engine: instrumentation against brute force, lockstep runs, divergence,
loss scaling, the CNN, retracing, data parallelism and configuration checks.

Kept small (width <= 64, few epochs); compiled programs are shared through module-scoped
fixtures where several tests need the same one.
"""

import dataclasses
import functools
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
from jaxrelu.study import limits, models
from jaxrelu.study.config import NetworkConfig, OptimConfig, RunConfig
from jaxrelu.study.data import Dataset, load_digits, synthetic


def assert_max_traces(fn, n):
    """chex-style: wraps ``fn`` so that tracing it more than ``n`` times fails."""
    count = [0]

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        count[0] += 1
        if count[0] > n:
            raise AssertionError(f"{fn.__name__} traced {count[0]} times (at most {n})")
        return fn(*args, **kwargs)

    wrapped.traces = count
    return wrapped


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(scope="module")
def small():
    return synthetic(256, 64, dim=8, num_classes=3, seed=2)


def _with_zero_images(ds, n=64):
    """Digits with the first ``n`` training images blanked: with zero biases ("he" init),
    every first-layer pre-activation of a blank image is exactly 0."""
    x = ds.x_train.copy()
    x[:n] = 0.0
    return Dataset("digits-blank", x, ds.y_train, ds.x_test, ds.y_test, ds.num_classes)


def test_train_step_instrumentation_equals_brute_force(digits):
    cfg = T.TrainConfig(width=16, depth=2, batch_size=8, dtype="float64", kink_grads=(0.0, 1.0))
    spec = T.EngineSpec.of(cfg, digits)
    state = T.init_state(spec, jax.random.PRNGKey(0), cfg.kink_grads)
    xb = jnp.asarray(digits.x_train[:8], jnp.float64).reshape(8, -1)
    yb = jnp.asarray(digits.y_train[:8])
    # put neuron 5 of layer 1 exactly at 0 for images 0 and 3
    w = state.params["layers"][0]["w"][0]
    params = jax.tree.map(lambda v: v, state.params)
    params["layers"][0]["b"] = params["layers"][0]["b"].at[:, 5].set(-(xb[0] @ w[:, 5]))
    state = state._replace(params=params)
    xb = xb.at[3].set(xb[0])
    step = jax.jit(T.train_step, static_argnums=0)
    _, rec = step(spec, state, (xb, yb))
    # brute force, written out by hand: pre-activations of layer 1 and 2
    p0 = jax.tree.map(lambda v: v[0], params)
    z1 = xb @ p0["layers"][0]["w"] + p0["layers"][0]["b"]
    z2 = jnp.maximum(z1, 0) @ p0["layers"][1]["w"] + p0["layers"][1]["b"]
    brute = [int(jnp.sum(z1 == 0)), int(jnp.sum(z2 == 0))]
    assert brute[0] == 2
    np.testing.assert_array_equal(rec.zero_hits, [brute, brute])

    def grad_at(s):
        def loss(p):
            h = xb
            for layer in p["layers"]:
                z = h @ layer["w"] + layer["b"]
                h = jnp.where(z > 0, z, jnp.where(z == 0, s * z, 0.0))  # slope s at 0
            logits = h @ p["out"]["w"] + p["out"]["b"]
            return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(8), yb])

        return jax.grad(loss)(p0)

    g0, g1 = grad_at(0.0), grad_at(1.0)
    leaves = list(zip(jax.tree.leaves(g0), jax.tree.leaves(g1)))
    assert any(bool(jnp.any(a != c)) for a, c in leaves) and bool(rec.bifurcation[0])
    num = sum(float(jnp.sum((a - c) ** 2)) for a, c in leaves)
    den = sum(float(jnp.sum(a**2)) for a, _ in leaves)
    assert float(rec.bifurcation_rel_l2[0]) == pytest.approx(np.sqrt(num / den), rel=1e-6)
    # with no zero hits, no bifurcation is reported (and none exists)
    fresh = T.init_state(spec, jax.random.PRNGKey(0), cfg.kink_grads)
    x2 = jnp.asarray(digits.x_train[8:16], jnp.float64).reshape(8, -1)
    _, rec = step(spec, fresh, (x2, jnp.asarray(digits.y_train[8:16])))
    assert int(rec.zero_hits.sum()) == 0 and not bool(rec.bifurcation.any())


def test_float64_lockstep_identical_unless_a_tie(digits):
    cfg = T.TrainConfig(width=32, epochs=2, dtype="float64", kink_grads=(0.0, 1.0), init="he")
    h = T.train(cfg, digits, progress=False)
    assert h.zero_hits.sum() == 0 and not h.bifurcation.any() and np.all(h.weight_l1 == 0)
    for leaf in jax.tree.leaves(h.params):
        np.testing.assert_array_equal(leaf[0], leaf[1])
    tie = T.train(dataclasses.replace(cfg, epochs=1), _with_zero_images(digits), progress=False)
    assert tie.zero_hits.sum() > 0 and tie.bifurcation.any()
    assert tie.weight_l1[-1, 1] > 0 and tie.weight_l1[-1, 0] == 0


def test_float16_zero_hits_and_float32_learns(digits):
    h16 = T.train(
        T.TrainConfig(width=64, epochs=2, dtype="float16", kink_grads=(0.0, 1.0)),
        digits,
        progress=False,
    )
    assert h16.zero_hits.sum() > 0 and h16.bifurcation.any() and h16.status == ("ok", "ok")
    assert h16.steps_per_second > 0
    h32 = T.train(T.TrainConfig(width=64, epochs=5), digits, progress=False)
    assert h32.final_accuracy[0] > 0.90
    assert np.all(np.diff(h32.epoch_loss[:, 0])[:3] < 0)


@pytest.mark.parametrize(
    "kw, reason",
    [
        # Adam at lr 1e6: the loss stays finite (about 1e17) but explodes
        (dict(optimizer="adam", learning_rate=1e6, init="he"), "loss above 100x"),
        # float16 SGD at lr 56.2 (the probe): the parameters overflow first
        (dict(dtype="float16", learning_rate=56.2), "parameters not finite"),
        # a kink value of 1e30 at exact zeros (the lockstep test's program, float64)
        (dict(dtype="float64", kink_grads=(0.0, 1e30), init="he"), None),
    ],
)
def test_divergence_is_detected_and_isolated(digits, kw, reason):
    base = dict(width=32, epochs=2, kink_grads=(0.0, 1.0))
    cfg = T.TrainConfig(**{**base, **kw})
    data = _with_zero_images(digits) if reason is None else digits
    h = T.train(cfg, data, progress=False)
    runs = h.runs()
    bad = [r for r in runs if r["status"] == "diverged"]
    assert bad, runs
    for r in bad:
        assert r["diverged_step"] >= 0 and r["diverged_reason"]
        if reason:
            assert r["diverged_reason"].startswith(reason)
    for r in runs:
        assert (r["status"] == "ok") == (r["diverged_step"] == -1)
    json.dumps(runs, allow_nan=False)  # strict JSON: no NaN anywhere
    if reason is None:  # the sound run is unaffected
        assert runs[0]["status"] == "ok" and runs[0]["test_accuracy"] > 0.5


def test_divergence_bound_is_100_times_the_first_loss(small):
    """A step whose loss exceeds DIVERGENCE_FACTOR = 100 times the run's first loss marks
    the run diverged (and is not applied); 50 times does not."""
    assert T.DIVERGENCE_FACTOR == 100
    cfg = T.TrainConfig(width=8, batch_size=32, kink_grads=(0.0, 1.0))
    spec = T.EngineSpec.of(cfg, small)
    step = jax.jit(T.train_step, static_argnums=0)
    batch = (jnp.asarray(small.x_train[:32]), jnp.asarray(small.y_train[:32]))
    state, rec = step(spec, T.init_state(spec, jax.random.PRNGKey(0), cfg.kink_grads), batch)
    first = np.asarray(rec.loss)
    np.testing.assert_array_equal(state.initial_loss, first)
    # pretend the first losses were 1/50 and 1/150 of what they were
    state = state._replace(initial_loss=jnp.asarray(first / np.array([50.0, 150.0]), jnp.float32))
    new, rec = step(spec, state, batch)
    assert np.all(np.asarray(rec.loss) < 1.2 * first)  # the loss itself barely moved
    assert new.alive.tolist() == [True, False]
    assert new.diverged_step.tolist() == [-1, 1]
    assert new.diverged_reason.tolist() == [0, int(T.Divergence.LOSS_EXPLODED)]
    for leaf_new, leaf_old in zip(jax.tree.leaves(new.params), jax.tree.leaves(state.params)):
        np.testing.assert_array_equal(leaf_new[1], leaf_old[1])  # the bad step not applied
        assert not np.array_equal(leaf_new[0], leaf_old[0])


def test_loss_scale_halves_on_overflow_and_grows_after_its_period(small):
    cfg = T.TrainConfig(
        width=16, batch_size=32, dtype="float16", mixed=True, loss_scale=2.0**40,
        loss_scale_period=3, kink_grads=(0.0,),
    )  # fmt: skip
    spec = T.EngineSpec.of(cfg, small)
    state = T.init_state(spec, jax.random.PRNGKey(0), cfg.kink_grads)
    step = jax.jit(T.train_step, static_argnums=0)
    x = jnp.asarray(small.x_train[:32], jnp.float16)
    y = jnp.asarray(small.y_train[:32])
    scales, changed = [], []
    for _ in range(40):
        new, _ = step(spec, state, (x, y))
        moved = any(
            bool(jnp.any(a != b))
            for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(state.params))
        )
        scales.append(float(new.loss_scale[0]))
        changed.append(moved)
        state = new
    # 2**40 * loss overflows float16 (max 65504): each such step is skipped and halves
    k = next(i for i, c in enumerate(changed) if c)
    assert k > 0 and not any(changed[:k])
    assert scales[:k] == [2.0 ** (40 - i - 1) for i in range(k)]
    # after a sound step, the scale doubles every 3 good steps (until it overflows again)
    assert scales[k] == scales[k - 1] and scales[k + 2] == 2 * scales[k - 1]
    assert bool(state.alive[0]) and np.all(np.isfinite(jax.tree.leaves(state.params)[0]))


def test_cnn_without_batchnorm_torch_init_and_with_adam_schedule(digits):
    # the program `jaxrelu train --model cnn --channels 4 --batch-size 64` compiles too
    plain = T.TrainConfig(
        model="cnn", channels=(4,), init="torch", epochs=2, batch_size=64, kink_grads=(0.0, 1.0)
    )
    h = T.train(plain, digits, progress=False)
    conv = h.params["layers"][0]
    assert set(conv) == {"w", "b"} and conv["w"].shape == (2, 3, 3, 1, 4)  # (runs, ...)
    p0, _ = models.init(plain.network.architecture((8, 8, 1), 10), jax.random.PRNGKey(1))
    bound = 1 / np.sqrt(9)  # PyTorch's default: uniform in +-1/sqrt(fan_in), biases too
    assert np.abs(p0["layers"][0]["w"]).max() <= bound and np.abs(p0["layers"][0]["b"]).max() > 0
    assert h.final_accuracy[0] > 0.3 and h.activations_per_step == 64 * 8 * 8 * 4
    sched = optax.cosine_decay_schedule(3e-3, 30)
    bn = T.TrainConfig(model="cnn", channels=(8, 8), batchnorm=True, optimizer="adam",
                       learning_rate=sched, epochs=2, batch_size=64, instrument=False)  # fmt: skip
    h = T.train(bn, digits, progress=False)
    assert set(h.params["layers"][0]) == {"w"}  # batch norm's shift replaces the bias
    assert h.final_accuracy[0] > 0.3 and h.zero_hits.shape == (0, 1, 2)  # not instrumented
    assert h.activations_per_step == 64 * (8 * 8 * 8 + 4 * 4 * 8)
    assert h.runs()[0]["zero_hits"] == 0 and h.runs()[0]["bifurcation_steps"] == 0


def test_epochs_and_reruns_reuse_one_compilation(small, monkeypatch):
    traced = assert_max_traces(T.train_step, 1)
    monkeypatch.setattr(T, "train_step", traced)
    cfg = T.TrainConfig(width=11, epochs=3, batch_size=32, seed=3)  # a spec no other test uses
    a = T.train(cfg, small, progress=False)
    b = T.train(cfg, small, progress=False)
    c = T.train(dataclasses.replace(cfg, seed=4, kink_grads=(0.5,)), small, progress=False)
    assert traced.traces[0] == 1  # 9 epochs, 3 runs, 2 seeds and kink values: one trace
    for u, v in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(a.step_loss, b.step_loss)
    assert not np.array_equal(a.step_loss, c.step_loss)


def test_train_epoch_chunks_equal_one_call(small, monkeypatch):
    cfg = T.TrainConfig(width=8, batch_size=32, kink_grads=(0.0, 1.0), dtype="float16")
    spec = T.EngineSpec.of(cfg, small)
    x, y = jnp.asarray(small.x_train, jnp.float16), jnp.asarray(small.y_train)
    key = jax.random.PRNGKey(7)
    one, rec1 = T.train_epoch(spec, T.init_state(spec, key, cfg.kink_grads), x, y, key)
    monkeypatch.setattr(T, "MAX_STEPS_PER_CALL", 4)  # 8 steps -> 2 calls of 4
    many, rec2 = T.train_epoch(spec, T.init_state(spec, key, cfg.kink_grads), x, y, key)
    assert rec1.loss.shape == (8, 2)
    for u, v in zip(jax.tree.leaves((one, rec1)), jax.tree.leaves((many, rec2))):
        np.testing.assert_array_equal(u, v)


def test_config_parts_flat_keywords_and_numpy_scalars():
    flat = T.TrainConfig(width=32, epochs=2, dtype="float16", kink_grads=(0.0, 1.0))
    parts = T.TrainConfig(
        network=NetworkConfig(width=32),
        run=RunConfig(epochs=2, dtype="float16", kink_grads=(0.0, 1.0)),
    )
    assert flat == parts and hash(flat) == hash(parts) and flat.width == 32
    assert flat.optim == OptimConfig()
    assert dataclasses.replace(flat, width=8).network.width == 8
    assert T.TrainConfig(optimizer="adam").learning_rate == 1e-3
    np_cfg = T.TrainConfig(learning_rate=np.float32(0.1), width=np.int64(8), seed=np.uint8(3))
    assert type(np_cfg.learning_rate) is float and type(np_cfg.width) is int
    cnn = T.TrainConfig(model="cnn", channels=[4, 8]).to_dict()
    assert cnn["channels"] == [4, 8] and "width" not in cnn and "depth" not in cnn
    assert "channels" not in T.TrainConfig().to_dict()


@pytest.mark.parametrize(
    "kw, exc, msg",
    [
        (dict(dtype="float17"), ValueError, "`dtype`"),
        (dict(optimizer="rmsprop"), ValueError, "`optimizer`"),
        (dict(model="vgg"), ValueError, "`model`"),
        (dict(width=0), ValueError, "`width`"),
        (dict(width=10**30), ValueError, "`width` must be at most 65536"),
        (dict(depth=100_000), ValueError, "`depth` must be at most 64"),
        (dict(seed=2**70), ValueError, "`seed` must be at most 4294967295"),
        (dict(learning_rate=-1.0), ValueError, "`learning_rate`"),
        (dict(learning_rate="fast"), TypeError, "`learning_rate`"),
        (dict(kink_grads=()), ValueError, "`kink_grads`"),
        (dict(kink_grads=(0.0, float("nan"))), ValueError, r"`kink_grads\[1\]`"),
        (dict(init="xavier"), ValueError, "`init`"),
        (dict(mixed=True), ValueError, "`mixed`"),
        (dict(batchnorm="yes"), TypeError, "`batchnorm`"),
        (dict(colour="red"), TypeError, "no field 'colour'"),
    ],
)
def test_bad_fields_fail_on_construction(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        T.TrainConfig(**kw)


def test_bad_configurations_for_the_data_fail_before_compiling(digits, small, monkeypatch):
    cases = [
        (T.TrainConfig(batch_size=5000), digits, "larger than the training set"),
        (T.TrainConfig(devices=99), digits, "`devices`"),
        (T.TrainConfig(model="cnn"), small, r"CNN needs \(H, W, C\) images"),
        (T.TrainConfig(model="cnn", channels=(4, 4, 4, 4)), digits, "pooling stages"),
    ]
    for cfg, data, msg in cases:
        with pytest.raises(ValueError, match=msg):
            T.train(cfg, data, progress=False)
    with pytest.raises(TypeError, match="TrainConfig"):
        T.train({"width": 3}, digits)
    monkeypatch.setattr(limits, "available_bytes", lambda: 2**30)  # a 1 GiB machine
    with pytest.raises(limits.ResourceLimitError, match=r"needs about .* GiB .* 1.0 GiB"):
        T.train(T.TrainConfig(width=8192, depth=3), digits, progress=False)


def test_memory_estimate_counts_parameters_runs_and_data(digits):
    """Against a count by hand: 64-16-16-10 MLP, 2 runs, SGD, float32."""
    cfg = T.TrainConfig(width=16, depth=2, batch_size=8, kink_grads=(0.0, 1.0))
    spec = T.EngineSpec.of(cfg, digits)
    params = 64 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10
    assert models.n_params(spec.arch) == params
    per_param = 4 * (4 + 1) + 4 * 2  # params, new, grads, updates, momentum; 2 test grads
    acts = 8 * 32
    eval_acts = 1000 * 32
    data = 1797 * 64 * 4
    expected = 2 * (params * per_param + 6 * acts * 4 + 2 * eval_acts * 4) + data
    assert spec.memory_bytes(1797) == expected


def test_progress_bar_plain_lines_when_not_a_terminal(small, capsys):
    T.train(T.TrainConfig(width=8, epochs=2, batch_size=32), small, progress=True)
    err = capsys.readouterr().err
    assert "epoch 2/2" in err and "\r" not in err and "\x1b" not in err


@pytest.mark.slow
def test_multi_device_training_and_volume_equal_one_device(tmp_path):
    script = textwrap.dedent(
        """
        import os, sys
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
        import jax
        jax.config.update("jax_enable_x64", True)
        import numpy as np
        from jaxrelu.study import experiments
        from jaxrelu.study.engine import TrainConfig, train
        from jaxrelu.study.data import synthetic
        assert len(jax.local_devices()) == 4
        ds = synthetic(128, 32, dim=16, num_classes=3)
        out = {}
        for n in (1, 4):
            cfg = TrainConfig(width=8, epochs=1, batch_size=32, dtype="float64", devices=n,
                              batchnorm=True, kink_grads=(0.0, 1.0))
            h = train(cfg, ds, progress=False)
            out[str(n)] = np.concatenate([np.ravel(v) for v in jax.tree.leaves(h.params)])
            out[f"acc{n}"] = h.final_accuracy
        # the volume estimate: 6 initialisations over 4 devices (padded to 8) vs 1 device
        v4 = experiments.volume("float16", width=16, depth=1, batch_size=32, inits=6, data=ds)
        experiments.jax.local_devices = lambda: jax.devices()[:1]
        v1 = experiments.volume("float16", width=16, depth=1, batch_size=32, inits=6, data=ds)
        out["vol"] = np.array([[v[k] for k in ("in_zone", "minibatch_rate", "zero_hit_rate")]
                               for v in (v4, v1)])
        np.savez(sys.argv[1], **out)
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
    np.testing.assert_array_equal(r["vol"][0], r["vol"][1])
    assert r["vol"][0][0] > 0  # float16: some initialisations are in the zone
