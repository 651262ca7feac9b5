"""The volume estimate's zero search over stacked minibatches: the same row as the search
minibatch by minibatch, the block sizes, and what happens when a backend rounds a stacked
product's rows differently from the minibatches' own products (simulated here by a
forward pass that marks its rows when it sees more than one minibatch)."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import pytest

from jaxrelu.study import experiments as study
from jaxrelu.study import models
from jaxrelu.study.data import synthetic

TIMING = ("seconds",)


def _same(a: dict, b: dict) -> None:
    assert {k: v for k, v in a.items() if k not in TIMING} == {
        k: v for k, v in b.items() if k not in TIMING
    }


@pytest.fixture(scope="module")
def data():
    return synthetic(96, 8, dim=6, num_classes=3, seed=3)


@pytest.fixture
def fresh(monkeypatch):
    """Compiled programs built in a test do not outlive it (nor do earlier ones leak in)."""
    study._compiled.cache_clear()
    study._agreement.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    study._compiled.cache_clear()
    study._agreement.cache_clear()


def _blocks_used(monkeypatch) -> list[int]:
    """Records the ``block`` of every chunk program :func:`volume` asks for."""
    seen: list[int] = []
    real = study._compiled

    def spy(arch, dtype, n_dev, chunk, group, block, *shapes):
        seen.append(block)
        return real(arch, dtype, n_dev, chunk, group, block, *shapes)

    monkeypatch.setattr(study, "_compiled", spy)
    return seen


@pytest.mark.parametrize(
    ("batch", "minibatches", "rows", "block"),
    [
        (128, 12, 1024, 6),  # at most 8: two blocks of 6, not 8 + 4 padded to 8
        (16, 90, 1024, 45),  # at most 64: two blocks of 45
        (256, 235, 1024, 4),  # at most 4: 59 blocks, the last with 3 minibatches
        (2000, 3, 1024, 1),  # a minibatch larger than the rows: one at a time
        (128, 3, 1024, 3),  # fewer minibatches than fit: all of them
        (100, 7, 300, 3),  # at most 3: three blocks, 3 + 3 + 1 padded
        (8, 1, 1024, 1),
    ],
)
def test_search_block_is_as_even_as_can_be(monkeypatch, batch, minibatches, rows, block):
    monkeypatch.setattr(study, "VOLUME_ROWS", rows)
    assert study.search_block(batch, minibatches) == block


@pytest.mark.parametrize(
    ("dtype", "images"),
    [("float16", None), ("float16", 250), ("float32", 250), ("bfloat16", 130)],
)
def test_stacked_search_equals_the_search_minibatch_by_minibatch(data, fresh, dtype, images):
    kw = dict(dtype=dtype, width=12, depth=2, batch_size=10, inits=7, seed=4, data=data)
    blocks = _blocks_used(fresh)
    # blocks of 4 (larger float32 products round differently on the CPU, which the probe
    # sees: the search then runs minibatch by minibatch)
    fresh.setattr(study, "VOLUME_ROWS", 40)
    stacked = study.volume(**kw, images=images)
    fresh.setattr(study, "VOLUME_ROWS", 1)  # one minibatch per product
    alone = study.volume(**kw, images=images)
    assert blocks[0] > 1 and blocks[1] == 1  # the two searches did differ
    _same(stacked, alone)
    if dtype != "float32":
        assert stacked["zero_hit_rate"] > 0  # informative: zeros were found


def _marking_apply(batch: int):
    """``models.apply`` whose first pre-activation is off by one in its first entry when
    it sees more rows than one minibatch: a backend whose stacked products round
    differently."""
    real = models.apply

    def apply(arch, params, state, x, kink=0.0, train=True):
        logits, new, pre = real(arch, params, state, x, kink, train)
        if x.shape[0] > batch:
            pre = [pre[0].at[0, 0].add(jnp.ones((), pre[0].dtype)), *pre[1:]]
        return logits, new, pre

    return apply


def test_a_backend_that_rounds_stacked_rows_differently_is_searched_one_by_one(data, fresh):
    kw = dict(dtype="float16", width=12, depth=2, batch_size=10, inits=7, seed=4, data=data)
    expected = study.volume(**kw)
    study._compiled.cache_clear()
    study._agreement.cache_clear()
    blocks = _blocks_used(fresh)
    fresh.setattr(models, "apply", _marking_apply(10))
    row = study.volume(**kw)
    assert blocks == [1]  # the probe saw the difference: minibatch by minibatch
    _same(row, expected)


def test_a_stacking_difference_the_probe_missed_is_an_error(data, fresh):
    fresh.setattr(models, "apply", _marking_apply(10))
    fresh.setattr(study, "_stacking_agrees", lambda *a, **k: True)
    with pytest.raises(RuntimeError, match="block"):
        study.volume("float32", width=12, depth=2, batch_size=10, inits=3, seed=4, data=data)


def test_the_probe_reads_every_minibatch_of_the_first_pass(data, fresh):
    """A difference on the first pass's last image only (its last block) is still seen."""
    real = models.apply
    last = jnp.asarray(data.x_train[-1].reshape(-1))

    def apply(arch, params, state, x, kink=0.0, train=True):
        logits, new, pre = real(arch, params, state, x, kink, train)
        if x.shape[0] > 10:  # stacked: the last image's row is off by one
            at = jnp.all(x == last.astype(x.dtype), axis=1)[:, None]
            pre = [pre[0] + jnp.where(at, 1, 0).astype(pre[0].dtype), *pre[1:]]
        return logits, new, pre

    fresh.setattr(models, "apply", apply)
    fresh.setattr(study, "VOLUME_ROWS", 50)  # 10 minibatches in two blocks of 5
    blocks = _blocks_used(fresh)
    study.volume("float32", width=12, depth=2, batch_size=10, inits=2, seed=4, data=data)
    assert blocks == [1]


@pytest.mark.parametrize("group", [3, 8])
def test_groups_of_initialisations_search_stacked_as_one_at_a_time(data, fresh, group):
    """With several initialisations' products batched (``VOLUME_GROUP``; 8 is the GPU's
    default), the stacked search is checked through those very products and gives the
    row of one at a time; a difference there is seen by the probe."""
    kw = dict(dtype="float16", width=12, depth=2, batch_size=10, inits=7, seed=4, data=data)
    fresh.setattr(study, "VOLUME_ROWS", 40)
    one = study.volume(**kw, images=250)
    fresh.setattr(study, "VOLUME_GROUP", group)
    real = study._compiled
    groups: list[int] = []
    agreement = study._agreement
    fresh.setattr(
        study, "_agreement", lambda a, d, g, *r: groups.append(g) or agreement(a, d, g, *r)
    )
    blocks = _blocks_used(fresh)
    spy = study._compiled
    fresh.setattr(study, "_compiled", lambda *a: groups.append(a[4]) or spy(*a))
    _same(study.volume(**kw, images=250), one)
    real.cache_clear()
    agreement.cache_clear()
    fresh.setattr(models, "apply", _marking_apply(10))
    _same(study.volume(**kw, images=250), one)
    assert blocks == [4, 1]
    assert groups and set(groups) == {group}  # the search and its check ran in groups


def test_group_size_follows_the_platform_unless_set(monkeypatch):
    """One initialisation at a time on the CPU, groups of 8 on an accelerator (where one
    initialisation's products leave the device idle); a set ``VOLUME_GROUP`` wins."""
    import jax

    monkeypatch.setattr(study, "VOLUME_GROUP", None)
    assert study.volume_group() == (1 if jax.default_backend() == "cpu" else 8)
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert study.volume_group() == 1
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert study.volume_group() == 8
    monkeypatch.setattr(study, "VOLUME_GROUP", 3)
    assert study.volume_group() == 3


def test_default_groups_shrink_to_fit_the_memory(data, monkeypatch):
    """Off the CPU the default group (8) holds 8 initialisations' parameters and
    activations at once: where that does not fit, the group halves (down to one at a
    time) instead of refusing a run that one at a time would fit; it is never larger
    than the initialisations; a set ``VOLUME_GROUP`` is kept (and refused if too big)."""
    import jax

    from jaxrelu.study import limits

    monkeypatch.setattr(study, "VOLUME_GROUP", None)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    cfg = study.VolumeConfig("float32", 64, 2, 10, 100, 0)
    _, _, eight = study._plan(cfg, data)
    assert eight == 8
    one = study._plan(dataclasses.replace(cfg, inits=1), data)
    assert one[2] == 1 and one[1] == 1
    arch = study._plan(cfg, data)[0]
    need = lambda g: study._volume_memory(*_memory_args(arch, cfg, data, g)) * limits.SAFETY
    monkeypatch.setattr(limits, "available_bytes", lambda: int((need(2) + need(4)) / 2))
    _, chunk, group = study._plan(cfg, data)
    assert group == 2 and chunk % 2 == 0
    monkeypatch.setattr(limits, "available_bytes", lambda: int(need(1)) + 1)
    assert study._plan(cfg, data)[2] == 1
    monkeypatch.setattr(study, "VOLUME_GROUP", 8)
    with pytest.raises(limits.ResourceLimitError, match="VOLUME_GROUP = 8"):
        study._plan(cfg, data)


def _memory_args(arch, cfg, data, group):
    n = len(data.y_train)
    chunk = -(-min(cfg.inits, study.VOLUME_CHUNK) // group) * group
    minibatches = -(-n // cfg.batch_size)
    return arch, cfg.dtype, n, cfg.batch_size, chunk, minibatches, group


@pytest.mark.parametrize("platform, tests", [("cpu", 1), ("cuda", 0)])
def test_parameters_become_buffers_on_the_cpu_only(platform, tests):
    # on the CPU a conditional (always true at run time) keeps XLA from fusing the
    # parameter draws into every consumer of a product; elsewhere the values pass through
    import jax
    from jax import export

    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    f = jax.jit(study._materialized)
    text = export.export(f, platforms=[platform])(params, jnp.int32(0)).mlir_module()
    assert text.count("stablehlo.compare GE") == tests  # the conditional's first >= 0
    out = f(params, jnp.int32(0))
    assert jnp.array_equal(out["w"], params["w"]) and jnp.array_equal(out["b"], params["b"])
