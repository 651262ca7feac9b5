"""Training throughput: the engine (instrumented and not) vs a plain JAX + optax loop
(jit per step) and a PyTorch eager loop, same network, optimizer, batch and data."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _harness import Row, block, timeit, torch_device, torch_or_none

from jaxrelu.study import engine as T
from jaxrelu.study.data import synthetic

NAME = "training"
SIZES = [((64, 128, 128, 10), 64), ((64, 512, 512, 10), 128), ((64, 1024, 1024, 1024, 10), 256)]


def matmul_ceiling() -> float:
    a = jax.random.normal(jax.random.PRNGKey(0), (1024, 1024), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    t, _ = timeit(lambda: block(f(a)))
    return 2 * 1024**3 / t


def _flops(sizes, batch):
    return 6 * batch * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def engine_step_time(ds, sizes, batch, instrument):
    cfg = T.TrainConfig(
        width=sizes[1],
        depth=len(sizes) - 2,
        batch_size=batch,
        instrument=instrument,
        learning_rate=0.05,
    )
    spec = T.EngineSpec.of(cfg, ds)
    state = T.init_state(spec, jax.random.PRNGKey(0), cfg.kink_grads)
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    n_steps = len(ds.y_train) // batch
    box = {"state": state, "k": 0}

    def epoch():
        box["k"] += 1
        box["state"], rec = T.train_epoch(spec, box["state"], x, y, jax.random.PRNGKey(box["k"]))
        block(box["state"])
        return rec

    rec = epoch()  # compile
    loss = np.asarray(rec.loss)[:, 0]
    if not (np.all(np.isfinite(loss)) and loss[-1] < math.log(10)):
        raise AssertionError(f"engine did not train: losses {loss[:3]}...{loss[-3:]}")
    t, sp = timeit(epoch, repeats=5, min_time=0.2)
    return t / n_steps, sp


def plain_jax_step_time(ds, sizes, batch):
    keys = jax.random.split(jax.random.PRNGKey(0), len(sizes))
    params = [
        (
            jax.random.uniform(k, (a, b), jnp.float32, -1 / math.sqrt(a), 1 / math.sqrt(a)),
            jnp.zeros((b,), jnp.float32),
        )
        for k, a, b in zip(keys, sizes[:-1], sizes[1:])
    ]
    opt = optax.sgd(0.05, momentum=0.9)
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)

    def loss_fn(p, xb, yb):
        h = xb
        for w, b in p[:-1]:
            h = jax.nn.relu(h @ w + b)
        w, b = p[-1]
        logits = h @ w + b
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), yb[:, None], 1))

    @jax.jit
    def step(p, s, idx):
        l, g = jax.value_and_grad(loss_fn)(p, x[idx], y[idx])
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, l

    n = len(ds.y_train) // batch
    perm = np.random.default_rng(0).permutation(len(ds.y_train))[: n * batch].reshape(n, batch)
    perm = jnp.asarray(perm)
    state = {"p": params, "s": opt.init(params)}

    def epoch():
        losses = []
        for i in range(n):
            state["p"], state["s"], l = step(state["p"], state["s"], perm[i])
            losses.append(l)
        block(state["p"])
        return losses

    losses = epoch()
    if not float(losses[-1]) < math.log(10):
        raise AssertionError("plain JAX loop did not train")
    t, sp = timeit(epoch, repeats=5, min_time=0.2)
    return t / n, sp


def torch_step_time(torch, ds, sizes, batch):
    torch.manual_seed(0)
    layers = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    layers.append(torch.nn.Linear(sizes[-2], sizes[-1]))
    dev = torch_device(torch)
    model = torch.nn.Sequential(*layers).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = torch.tensor(ds.x_train.reshape(len(ds.y_train), -1), device=dev)
    y = torch.tensor(ds.y_train.astype(np.int64), device=dev)
    n = len(ds.y_train) // batch
    lossf = torch.nn.CrossEntropyLoss()

    def epoch():
        perm = torch.randperm(len(y), device=dev)
        last = None
        for i in range(n):
            idx = perm[i * batch : (i + 1) * batch]
            opt.zero_grad()
            loss = lossf(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            last = loss
        return float(last.detach())  # waits for the device

    if not epoch() < math.log(10):
        raise AssertionError("PyTorch loop did not train")
    t, sp = timeit(epoch, repeats=5, min_time=0.2)
    return t / n, sp


def run(quick: bool) -> list[Row]:
    torch = torch_or_none()
    ds = synthetic(4096 if quick else 8192, 256, dim=64, num_classes=10)
    ceiling = matmul_ceiling()
    rows = []
    goals = {0: 3.0, 1: 1.0, 2: None}
    for i, (sizes, batch) in enumerate(SIZES[:1] if quick else SIZES):
        label = f"MLP {'-'.join(map(str, sizes))}, batch {batch}"
        t_plain_engine, sp0 = engine_step_time(ds, sizes, batch, instrument=False)
        t_inst, sp1 = engine_step_time(ds, sizes, batch, instrument=True)
        gflops = _flops(sizes, batch) / t_inst / 1e9
        note = (
            f"{1 / t_inst:.0f} steps/s, {gflops:.1f} GFLOP/s = "
            f"{100 * gflops * 1e9 / ceiling:.0f}% of matmul ceiling ({ceiling / 1e9:.0f} GFLOP/s)"
        )
        if torch is not None:
            t_torch, sp2 = torch_step_time(torch, ds, sizes, batch)
            rows.append(
                Row(
                    NAME,
                    f"{label}: engine (instrumented) vs PyTorch eager",
                    t_inst,
                    "PyTorch eager",
                    t_torch,
                    goals[i],
                    "s/step",
                    note,
                    sp1,
                    sp2,
                )
            )
        else:
            rows.append(
                Row(
                    NAME,
                    f"{label}: engine vs PyTorch eager",
                    t_inst,
                    "PyTorch eager",
                    None,
                    goals[i],
                    "s/step",
                    "torch not installed: baseline left out",
                    sp1,
                )
            )
        t_loop, sp3 = plain_jax_step_time(ds, sizes, batch)
        rows.append(
            Row(
                NAME,
                f"{label}: engine (instrumented) vs JAX+optax jit per step",
                t_inst,
                "JAX jit per step",
                t_loop,
                None,
                "s/step",
                note,
                sp1,
                sp3,
            )
        )
        rows.append(
            Row(
                NAME,
                f"{label}: instrumented vs not",
                t_inst,
                "engine uninstrumented",
                t_plain_engine,
                1 / 1.15,
                "s/step",
                "goal: at most 15% slower",
                sp1,
                sp0,
            )
        )
    return rows


NOTES = """Goals (issue 5): the engine at least 3x PyTorch eager for 64-128-128-10 / batch 64 and
at least equal for 64-512-512-10 / batch 128; instrumentation at most 15% slower. On this
VM the medium network's ratio was 1.27x, 1.04x and 0.97x in three full runs: parity, within
the machine's noise (the engine and a hand-written jitted JAX loop are equal there). The
3-hidden-layer 1024-wide network has no goal: on this CPU its time is the matrix products,
where PyTorch's kernels are faster than XLA's. On an NVIDIA H100 (same script, JAX 0.11.2,
PyTorch 2.11 on the same GPU; `benchmarks/results/gpu-h100-activations-training.txt`) the
engine ran 16x, 16x and 5.8x PyTorch eager; there instrumentation cost 43%, 27% and 14% (the
bifurcation check's per-step `lax.cond` weighs more on the GPU), above the 15% goal for
the two smaller networks."""
