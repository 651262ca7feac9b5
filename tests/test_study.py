"""The study's experiments: the instrumentation on hand-made arrays, the volume protocol
against a one-initialisation-at-a-time reference, chunking, confidence intervals, and the
training-comparison and divergence rows."""

import io
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrelu.study import experiments as study
from jaxrelu.study import instrument, limits, models, progress
from jaxrelu.study.data import synthetic


@pytest.fixture(scope="module")
def small():
    return synthetic(300, 60, dim=12, num_classes=4, seed=1)


def test_wilson_interval_against_hand_values():
    # centre (p + z²/2n)/(1 + z²/n), half-width z√(p(1-p)/n + z²/4n²)/(1 + z²/n), z = 1.96
    lo, hi = study.wilson_interval(0, 100)
    assert lo == 0.0 and hi == pytest.approx(0.0370, abs=1e-4)
    lo, hi = study.wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    assert study.wilson_interval(7, 7)[1] == 1.0
    assert all(math.isnan(v) for v in study.wilson_interval(0, 0))
    assert study.INTERVAL == {"method": "wilson", "level": 0.95}


def test_kink_hits_count_every_kink_and_respect_the_mask():
    z1 = jnp.array([[0.0, 6.0, 1.0], [6.0, -0.0, 2.0]])
    z2 = jnp.array([[[0.0]], [[5.0]]])
    np.testing.assert_array_equal(instrument.kink_hits([z1, z2], (0.0,)), [2, 1])
    np.testing.assert_array_equal(instrument.kink_hits([z1, z2], (0.0, 6.0)), [4, 1])
    mask = jnp.array([False, True])
    np.testing.assert_array_equal(instrument.kink_hits([z1, z2], (0.0, 6.0), mask), [2, 0])
    f16 = [jnp.array([[1e-8]], jnp.float16)]  # rounds to 0 in float16: a real hit
    assert int(instrument.kink_hits(f16, (0.0,))[0]) == 1


@pytest.mark.parametrize("path", ["platform", "staged", "whole"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_kink_any_agrees_with_a_brute_force_scan(path, dtype):
    """``kink_any`` against NumPy's element-by-element scan, for each lowering (the CPU's
    staged reduction, the other platforms' single one, and the platform's choice), on
    single planted kinks, masked-out rows, -0.0 and NaN; vmapped over minibatches as the
    volume search runs it."""
    fn = {
        "platform": instrument.kink_any,
        "staged": lambda pre, kinks, mask=None: instrument._any_staged(
            *_kink_masks(pre, kinks, mask)
        ),
        "whole": lambda pre, kinks, mask=None: instrument._any_whole(
            *_kink_masks(pre, kinks, mask)
        ),
    }[path]
    rng = np.random.default_rng(7)
    dt = jnp.dtype(dtype)
    base = [rng.uniform(1.0, 5.0, (5, 9)), rng.uniform(1.0, 5.0, (5, 2, 3))]  # no kink
    mask = np.array([True, True, False, True, True])
    cases = []
    for layer, where in ((0, (4, 8)), (1, (0, 1, 2)), (0, (2, 3)), (1, (2, 0, 0))):
        for value in (0.0, -0.0, 6.0, np.nan, 1e-3):
            pre = [a.copy() for a in base]
            pre[layer][where] = value
            cases.append(pre)
    cases.append([a.copy() for a in base])
    test = jax.jit(lambda pre, m: fn(pre, (0.0, 6.0), m))
    for pre in cases:
        for m in (None, mask):
            arrays = [jnp.asarray(a, dt) for a in pre]
            kept = [a if m is None else a[m] for a in pre]
            expected = any(np.any((a == 0.0) | (a == 6.0)) for a in kept)
            assert bool(test(arrays, None if m is None else jnp.asarray(m))) == expected
    # minibatch by minibatch, as the search calls it: (minibatches, batch, width)
    z = np.full((3, 4, 5), 2.0)
    z[1, 3, 4] = 0.0
    z[2, 0, 0] = 6.0
    z[0, 2, 2] = 0.0
    masks = np.ones((3, 4), bool)
    masks[0, 2] = False  # the first minibatch's only hit is a padding row
    got = jax.jit(jax.vmap(lambda a, m: fn([a], (0.0,), m)))(jnp.asarray(z, dt), masks)
    np.testing.assert_array_equal(got, [False, True, False])


def _kink_masks(pre, kinks, mask):
    out = []
    for z in pre:
        at = jnp.zeros(z.shape, bool)
        for a in kinks:
            at = at | (z == a)
        out.append(at if mask is None else at & mask.reshape(mask.shape + (1,) * (z.ndim - 1)))
    return out


def test_compare_gradients_by_hand():
    g0 = {"a": jnp.array([3.0, 0.0]), "b": jnp.array([[4.0]])}
    g1 = {"a": jnp.array([3.0, 0.0]), "b": jnp.array([[4.0]])}
    differ, rel = instrument.compare_gradients(g0, g1)
    assert not bool(differ) and float(rel) == 0.0
    g1 = {"a": jnp.array([3.0, 1.0]), "b": jnp.array([[4.0]])}
    differ, rel = instrument.compare_gradients(g0, g1)
    assert bool(differ) and float(rel) == pytest.approx(1 / 5)  # |(0, 1, 0)| / |(3, 0, 4)|
    nan = {"a": jnp.array([3.0, jnp.nan]), "b": jnp.array([[4.0]])}
    assert bool(instrument.compare_gradients(nan, nan)[0])  # NaN != NaN: a difference


def test_bifurcation_test_computes_the_gradients_only_after_a_hit():
    ran = []

    def grad_at(s):
        jax.debug.callback(lambda: ran.append(s))  # runs only if this branch executes
        return {"w": jnp.array([s, 1.0])}

    test = jax.jit(lambda h: instrument.bifurcation_test(grad_at, h))
    differ, rel = test(False)
    jax.effects_barrier()
    assert (bool(differ), float(rel), ran) == (False, 0.0, [])  # they would differ: skipped
    differ, rel = test(True)
    jax.effects_barrier()
    assert bool(differ) and float(rel) == pytest.approx(1.0)  # |(0-1, 0)| / |(0, 1)|
    assert sorted(ran) == [0.0, 1.0]


def _reference_volume(ds, dtype, width, depth, batch, inits, seed):
    """The paper's protocol, literally: one initialisation at a time (key i =
    fold_in(PRNGKey(seed), i)), every minibatch, both backward passes of a hand-written
    MLP, exact comparison of the first-layer weight gradients."""
    arch = models.Architecture("mlp", (ds.n_features,), ds.num_classes, width, depth, init="torch")
    dt = jnp.dtype(dtype)
    x = jnp.asarray(ds.x_train.reshape(len(ds.y_train), -1), dt)
    y = jnp.asarray(ds.y_train)

    @jax.jit
    def differ(p, xb, yb):
        def grad_w1(s):
            def loss(p):
                h = xb
                for layer in p["layers"]:
                    z = h @ layer["w"] + layer["b"]
                    h = jnp.where(z > 0, z, jnp.where(z == 0, s * z, jnp.zeros_like(z)))
                logits = h @ p["out"]["w"] + p["out"]["b"]
                return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(yb)), yb])

            return jax.grad(loss)(p)["layers"][0]["w"]

        return jnp.any(grad_w1(jnp.asarray(0, dt)) != grad_w1(jnp.asarray(1, dt)))

    zone = []
    for i in range(inits):
        p = models.init(arch, jax.random.fold_in(jax.random.PRNGKey(seed), i), dt)[0]
        zone.append(
            any(
                bool(differ(p, x[s : s + batch], y[s : s + batch])) for s in range(0, len(y), batch)
            )
        )
    return zone


def test_volume_equals_the_one_at_a_time_protocol(small, monkeypatch):
    dtype = "float16"
    ref = _reference_volume(small, dtype, 24, 2, 64, 6, 2)
    assert 0 < sum(ref) < 6  # some in, some out: the count is informative
    row = study.volume(dtype, width=24, depth=2, batch_size=64, inits=6, seed=2, data=small)
    assert row["in_zone"] == sum(ref)
    assert row["minibatches"] == math.ceil(300 / 64)
    monkeypatch.setattr(study, "VOLUME_CHUNK", 4)  # 6 inits -> chunks of 4 (padded) and 2
    chunked = study.volume(dtype, width=24, depth=2, batch_size=64, inits=6, seed=2, data=small)
    for key in ("in_zone", "minibatch_rate", "relative_l2", "zero_hit_rate"):
        assert chunked[key] == row[key]


def test_volume_by_precision_on_digits():
    rows = {
        dt: study.volume(dt, width=32, depth=2, batch_size=128, inits=8)
        for dt in ("float16", "float64")
    }
    assert rows["float16"]["probability"] == 1.0 and rows["float16"]["relative_l2"] > 0
    assert rows["float64"]["in_zone"] == 0 and rows["float64"]["relative_l2"] is None
    for r in rows.values():
        lo, hi = r["ci"]
        assert 0 <= lo <= r["probability"] <= hi <= 1
        assert (lo, hi) == study.wilson_interval(r["in_zone"], 8)
        json.dumps(r, allow_nan=False)


def test_volume_on_nan_pixels_is_an_error_not_p_zero(tmp_path):
    x = np.random.default_rng(0).uniform(size=(20, 4)).astype(np.float32)
    x[3, 1] = np.nan
    path = tmp_path / "nan.npz"
    np.savez(path, x_train=x, y_train=np.arange(20) % 2, x_test=x[:4] * 0, y_test=np.arange(4) % 2)
    with pytest.raises(ValueError, match="nan.npz: train images hold 1 non-finite values"):
        study.volume("float32", width=4, depth=1, batch_size=4, inits=2, data=str(path))


@pytest.mark.parametrize(
    "kw, exc, msg",
    [
        (dict(dtype="float17"), ValueError, "float17"),
        (dict(inits=0), ValueError, "`inits`"),
        (dict(width=10**9), ValueError, "`width` must be at most 65536"),
        (dict(depth=100_000), ValueError, "`depth` must be at most 64"),
        (dict(seed=2**70), ValueError, "`seed` must be at most"),
        (dict(seed=-1), ValueError, "`seed` must be at least 0"),
        (dict(batch_size=10_000), ValueError, "larger than the training set"),
        (dict(width=2.5), ValueError, "`width`"),
    ],
)
def test_volume_bad_input(small, kw, exc, msg):
    with pytest.raises(exc, match=msg):
        study.volume(**{"dtype": "float32", "data": small, **kw})


def test_volume_memory_refused_up_front_and_chunk_bounded(small, monkeypatch):
    monkeypatch.setattr(limits, "available_bytes", lambda: 64 << 20)  # 64 MiB
    with pytest.raises(limits.ResourceLimitError, match=r"volume estimate .* needs about"):
        study.volume("float32", width=4096, depth=3, inits=4, data=small)
    # any number of initialisations: the chunk (and its memory) stays the same
    cfg = study.VolumeConfig("float32", 16, 1, 64, inits=10**9)
    _, chunk = study.check_volume(cfg, small)
    assert chunk == study.VOLUME_CHUNK


def test_train_comparison_and_divergence_rows(small):
    rows = study.train_comparison(
        (0.0, 1.0), "float32", "sgd", False, 0, epochs=2, data=small, width=16, batch_size=32
    )
    assert [r["kink_grad"] for r in rows] == [0.0, 1.0]
    assert rows[0]["status"] == "ok" and rows[0]["learning_rate"] == 0.1
    assert rows[0]["network"] == {
        "model": "mlp", "width": 16, "depth": 2, "batchnorm": False, "init": "torch",
        "activation": "relu",
    }  # fmt: skip
    # float32 lockstep: identical runs, so identical accuracy
    assert rows[0]["test_accuracy"] == rows[1]["test_accuracy"]
    # the same network and optimizer: the training comparison's compiled program
    d32 = study.divergence("float32", 12, 16, batch_size=32, data=small, momentum=0.9)
    assert d32["first_divergence"] is None and set(d32["l1"]) == {0.0} and d32["steps"] == 12
    assert d32["status"] == ["ok", "ok"] and d32["zero_hits"] == [0] * 12


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_stays_in_a_terminal_and_is_periodic_lines_in_a_log():
    tty = _Terminal()
    bar = progress.Progress(3, "train", "epoch", stream=tty)
    for _ in range(3):
        bar.update(loss=0.5)
    bar.close()
    last = tty.getvalue().split("\r")[-1]
    assert "train: 100%" in last and "3/3" in last and last.endswith("\n")  # left on screen
    log = io.StringIO()
    bar = progress.Progress(500, "volume", "config", stream=log, interval=3600)
    for _ in range(500):
        bar.update()
    bar.close()
    lines = log.getvalue().splitlines()
    assert lines == ["volume: started (500 configs)", lines[1]] and "config 500/500" in lines[1]
    assert "\r" not in log.getvalue() and "\x1b" not in log.getvalue()


def test_stage_counter_elapsed_and_eta(monkeypatch):
    clock = iter([0.0, 0.0, 10.0, 10.0, 40.0, 40.0, 40.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    stages = progress.Stages(["volume", "volume", "train"], stream=out)
    stages.begin("volume a")  # t=0
    stages.end(computed=True)  # t=10: volume takes 10 s
    stages.begin("volume b")  # t=10
    stages.end(computed=False)  # loaded: does not count
    stages.begin("train c")  # t=40
    assert out.getvalue().splitlines() == [
        "[stage 1/3] volume a (elapsed 0:00, ETA unknown)",
        "[stage 2/3] volume b (elapsed 0:10, ETA 0:20)",  # 2 left at 10 s each
        "[stage 3/3] train c (elapsed 0:40, ETA 0:10)",  # train unknown: the overall mean
    ]
