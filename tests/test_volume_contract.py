"""The volume estimate's exposure (``images``) and accumulation (``accumulate``) options,
against brute-force oracles: a plain Python loop over passes and minibatches, and a NumPy
float32 forward pass rounded once."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrelu.study import experiments as study
from jaxrelu.study import models
from jaxrelu.study.data import Dataset, synthetic

TIMING = ("seconds",)


def _same(a: dict, b: dict, skip=TIMING) -> None:
    assert {k: v for k, v in a.items() if k not in skip} == {
        k: v for k, v in b.items() if k not in skip
    }


@pytest.fixture(scope="module")
def tiny():
    return synthetic(40, 8, dim=6, num_classes=3, seed=1)


def _python_loop(ds, dtype, width, depth, batch, inits, seed, images):
    """The protocol written out: initialisation i from fold_in(PRNGKey(seed), i); pass 0
    in order, pass p >= 1 shuffled by numpy.random.default_rng((seed, p)); minibatches of
    each pass (the last one short), the last pass cut after ``images`` images in all; a
    hand-written MLP's first-layer gradients at ReLU'(0) = 0 and 1 compared exactly.
    Returns per initialisation (in zone, differing minibatches of pass 0)."""
    arch = models.Architecture("mlp", (ds.n_features,), ds.num_classes, width, depth, init="torch")
    dt = jnp.dtype(dtype)
    n = len(ds.y_train)
    x = np.asarray(ds.x_train.reshape(n, -1))
    y = np.asarray(ds.y_train)

    def relu_at(z, s):  # derivative s where z == 0
        return jnp.where(z >= 0, jnp.where(z == 0, s * z, z), jnp.zeros_like(z))

    def first_layer_grad(p, xb, yb, s):
        def loss(w0):
            h = relu_at(xb @ w0 + p["layers"][0]["b"], s)
            for layer in p["layers"][1:]:
                h = relu_at(h @ layer["w"] + layer["b"], s)
            picked = jnp.take_along_axis(
                jax.nn.log_softmax(h @ p["out"]["w"] + p["out"]["b"]), yb[:, None], axis=1
            )
            return -jnp.mean(picked)

        return jax.grad(loss)(p["layers"][0]["w"])

    differ = jax.jit(
        lambda p, xb, yb: jnp.any(
            first_layer_grad(p, xb, yb, jnp.asarray(0, dt))
            != first_layer_grad(p, xb, yb, jnp.asarray(1, dt))
        )
    )

    out = []
    for i in range(inits):
        p = models.init(arch, jax.random.fold_in(jax.random.PRNGKey(seed), i), dt)[0]
        zone, first_pass = False, 0
        seen, pass_no = 0, 0
        while seen < images:
            order = (
                np.arange(n)
                if pass_no == 0
                else np.random.default_rng((seed, pass_no)).permutation(n)
            )
            order = order[: images - seen]
            for s in range(0, len(order), batch):
                rows = order[s : s + batch]
                d = bool(differ(p, jnp.asarray(x[rows], dt), jnp.asarray(y[rows])))
                first_pass += d and pass_no == 0
                zone = zone or d
            seen += len(order)
            pass_no += 1
        out.append((zone, first_pass))
    return out


def test_images_over_several_passes_equal_a_python_loop(tiny):
    kw = dict(dtype="float16", width=16, depth=1, batch_size=16, inits=10, seed=0, data=tiny)
    images = 130  # three passes over 40 images and 10 of a fourth
    ref = _python_loop(tiny, "float16", 16, 1, 16, 10, 0, images)
    row = study.volume(**kw, images=images)
    assert row["images"] == images and row["minibatches"] == 3
    assert row["in_zone"] == sum(z for z, _ in ref)
    assert 0 < row["in_zone"] < 10  # informative: some in, some out
    # the statistics describe the first pass
    assert row["minibatch_rate"] == sum(f for _, f in ref) / (10 * 3)


def test_images_default_is_one_pass_and_fewer_images_a_prefix(tiny):
    kw = dict(dtype="float16", width=8, depth=2, batch_size=16, inits=9, seed=0)
    default = study.volume(**kw, data=tiny)
    assert default["images"] == 40
    _same(default, study.volume(**kw, data=tiny, images=40))
    prefix = dataclasses.replace(tiny, x_train=tiny.x_train[:25], y_train=tiny.y_train[:25])
    _same(study.volume(**kw, data=tiny, images=25), study.volume(**kw, data=prefix))


def test_the_row_is_independent_of_chunking_with_several_passes(tiny, monkeypatch):
    kw = dict(dtype="float16", width=8, depth=1, batch_size=16, inits=11, seed=5, data=tiny)
    row = study.volume(**kw, images=100)
    monkeypatch.setattr(study, "VOLUME_CHUNK", 3)
    _same(row, study.volume(**kw, images=100))


def _binary(n: int, dim: int, seed: int) -> Dataset:
    """0/1 features: a first layer's products are sums of float16 weights, exact in
    float32 for these sizes (checked below), so any summation order gives the same."""
    rng = np.random.default_rng(seed)
    x = (rng.uniform(size=(n + 8, dim)) < 0.5).astype(np.float32)
    y = rng.integers(0, 3, size=n + 8).astype(np.int32)
    return Dataset("binary", x[:n], y[:n], x[n:], y[n:], 3)


def test_float32_accumulation_at_float16_is_numpy_float32_rounded_once():
    ds = _binary(96, 8, seed=0)
    width, batch, inits, seed = 16, 16, 24, 3
    arch = models.Architecture("mlp", (8,), 3, width, 1, init="torch")
    hits = 0
    for i in range(inits):
        layer = models.init(arch, jax.random.fold_in(jax.random.PRNGKey(seed), i), "float16")[0]
        w = np.asarray(layer["layers"][0]["w"]).astype(np.float32)
        b = np.asarray(layer["layers"][0]["b"]).astype(np.float32)
        exact = ds.x_train.astype(np.float64) @ w.astype(np.float64) + b
        z32 = ds.x_train @ w + b  # accumulated in float32, bias added in float32
        assert np.array_equal(z32.astype(np.float64), exact)  # no rounding before the last
        z16 = z32.astype(np.float16)  # one rounding
        per_batch = (z16 == 0).reshape(-1, batch, width).any(axis=(1, 2))
        hits += int(per_batch.sum())
    kw = dict(width=width, depth=1, batch_size=batch, inits=inits, seed=seed, data=ds)
    row = study.volume("float16", accumulate="float32", **kw)
    assert row["accumulate"] == "float32"
    assert row["zero_hit_rate"] == hits / (inits * len(ds.y_train) // batch)
    native = study.volume("float16", **kw)
    assert hits > 0 and native["zero_hit_rate"] != row["zero_hit_rate"]  # informative


def test_accumulation_changes_nothing_at_32_bits(tiny):
    kw = dict(width=8, depth=2, batch_size=16, inits=8, data=tiny, images=60)
    a = study.volume("float32", **kw)
    b = study.volume("float32", accumulate="float32", **kw)
    _same(a, b, skip=(*TIMING, "accumulate"))


def test_training_and_divergence_pass_accumulation_through(tiny):
    kw = dict(dtype="float16", epochs=1, data=tiny, width=8, batch_size=8)
    native = study.train_comparison((0.0,), **kw)
    wide = study.train_comparison((0.0,), accumulate="float32", **kw)
    assert (native[0]["accumulate"], wide[0]["accumulate"]) == ("native", "float32")
    assert native[0]["final_loss"] != wide[0]["final_loss"]  # a different computation
    dkw = dict(dtype="float16", steps=4, width=8, depth=1, batch_size=8, data=tiny)
    d = study.divergence(**dkw, accumulate="float32")
    assert d["accumulate"] == "float32" and len(d["l1"]) == 4
    assert study.divergence(**dkw)["accumulate"] == "native"


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(accumulate="fp32"), "`accumulate` must be one of 'native', 'float32'"),
        (dict(accumulate=None), "`accumulate`"),
        (dict(images=0), "`images` must be a positive integer"),
        (dict(images=-5), "`images` must be a positive integer"),
        (dict(images=2.5), "`images` must be a positive integer"),
        (dict(images="100"), "`images` must be a positive integer"),
        (dict(images=True), "`images` must be a positive integer"),
        (dict(images=2**40), "`images` must be at most"),
    ],
)
def test_bad_volume_options_are_named_value_errors(tiny, kw, msg):
    with pytest.raises(ValueError, match=msg):
        study.volume("float16", width=4, depth=1, batch_size=8, inits=2, data=tiny, **kw)
    with pytest.raises(ValueError, match=msg):
        study.VolumeConfig("float16", **kw)


def test_bad_accumulation_in_training_and_divergence(tiny):
    with pytest.raises(ValueError, match="`accumulate`"):
        study.divergence(steps=2, width=4, batch_size=8, data=tiny, accumulate="fp16")
    with pytest.raises(ValueError, match="`accumulate`"):
        study.train_comparison((0.0,), data=tiny, width=4, batch_size=8, accumulate="fp16")
