"""Training throughput: the engine (instrumented and not, one run and four lockstep runs)
vs a hand-written `lax.scan` loop, a plain JAX + optax loop (jit per step), PyTorch eager
and `torch.compile`: same network, optimizer (SGD, momentum 0.9, learning rate 0.05),
batch and data. All contenders are timed round-robin, epoch by epoch."""

from __future__ import annotations

import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _harness import (
    OPTIONS,
    Row,
    best_time,
    block,
    interleaved,
    matmul_ceiling,
    percent_of,
    timeit,
    torch_device,
    torch_or_none,
)
from jax import lax

from jaxrelu.study import engine as T
from jaxrelu.study.data import synthetic
from jaxrelu.study.ties import LEXICOGRAPHIC

NAME = "training"
SIZES = [((64, 128, 128, 10), 64), ((64, 512, 512, 10), 128), ((64, 1024, 1024, 1024, 10), 256)]
GOALS_TORCH = (3.0, 1.2, 1.0)
"""Engine vs PyTorch eager, by size (issue 14)."""
LOCKSTEP = 4
"""Lockstep runs timed against one run (goal: at most 1.1x their number)."""


def _flops(sizes, batch):
    return 6 * batch * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def train_config(sizes, batch, instrument, runs=1, kink=0.0):
    """The engine's configuration for an MLP of layer ``sizes`` (SGD, momentum 0.9,
    learning rate 0.05, as every contender here)."""
    return T.TrainConfig(
        width=sizes[1],
        depth=len(sizes) - 2,
        batch_size=batch,
        instrument=instrument,
        learning_rate=0.05,
        kink_grads=tuple(np.linspace(0.0, 1.0, runs)) if runs > 1 else (kink,),
    )


def engine_epoch(ds, sizes, batch, instrument, runs=1, kink=0.0):
    """The engine's epoch function (one call: one shuffled epoch) after a checked warm-up,
    and its steps per epoch (``kink``: the kink value of a single run, a number or
    ``"lexicographic"``)."""
    cfg = train_config(sizes, batch, instrument, runs, kink)
    spec = T.EngineSpec.of(cfg, ds)
    state = T.init_state(spec, jax.random.PRNGKey(0), cfg.kink_grads)
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    box = {"state": state, "k": 0}

    def epoch():
        box["k"] += 1
        box["state"], rec = T.train_epoch(spec, box["state"], x, y, jax.random.PRNGKey(box["k"]))
        block(box["state"])
        return rec

    loss = np.asarray(epoch().loss)[:, 0]  # compile
    if not (np.all(np.isfinite(loss)) and loss[-1] < math.log(10)):
        raise AssertionError(f"engine did not train: losses {loss[:3]}...{loss[-3:]}")
    return epoch, len(ds.y_train) // batch


def engine_step_time(ds, sizes, batch, instrument):
    """Median seconds per step of the engine (and the spread), timed epoch by epoch."""
    epoch, steps = engine_epoch(ds, sizes, batch, instrument)
    t, sp = timeit(epoch, repeats=5, min_time=0.2)
    return t / steps, sp


def _uniform_params(sizes):
    keys = jax.random.split(jax.random.PRNGKey(0), len(sizes))
    return [
        (
            jax.random.uniform(k, (a, b), jnp.float32, -1 / math.sqrt(a), 1 / math.sqrt(a)),
            jnp.zeros((b,), jnp.float32),
        )
        for k, a, b in zip(keys, sizes[:-1], sizes[1:])
    ]


def _mlp_loss(p, xb, yb):
    h = xb
    for w, b in p[:-1]:
        h = jax.nn.relu(h @ w + b)
    w, b = p[-1]
    logits = h @ w + b
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), yb[:, None], 1))


def scan_epoch(ds, sizes, batch):
    """What a user writes by hand: one jitted epoch, the permutation drawn inside, a
    `lax.scan` over the minibatches of value_and_grad and optax SGD with momentum,
    parameters and optimizer state donated."""
    opt = optax.sgd(0.05, momentum=0.9)
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    n = len(ds.y_train) // batch

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def run(params, opt_state, key):
        idx = jax.random.permutation(key, x.shape[0])[: n * batch].reshape(n, batch)

        def step(carry, i):
            p, s = carry
            loss, g = jax.value_and_grad(_mlp_loss)(p, x[i], y[i])
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), loss

        (params, opt_state), losses = lax.scan(step, (params, opt_state), idx)
        return params, opt_state, losses

    params = _uniform_params(sizes)
    box = {"p": params, "s": opt.init(params), "k": 0}

    def epoch():
        box["k"] += 1
        box["p"], box["s"], losses = run(box["p"], box["s"], jax.random.PRNGKey(box["k"]))
        block(box["p"])
        return losses

    if not float(epoch()[-1]) < math.log(10):
        raise AssertionError("hand-written lax.scan loop did not train")
    epoch.lower = lambda: run.lower(box["p"], box["s"], jax.random.PRNGKey(0))  # for probes
    return epoch


def jit_step_epoch(ds, sizes, batch):
    """A plain JAX + optax loop: a jitted step called once per minibatch from Python."""
    opt = optax.sgd(0.05, momentum=0.9)
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)

    @jax.jit
    def step(p, s, idx):
        loss, g = jax.value_and_grad(_mlp_loss)(p, x[idx], y[idx])
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, loss

    n = len(ds.y_train) // batch
    perm = np.random.default_rng(0).permutation(len(ds.y_train))[: n * batch].reshape(n, batch)
    perm = jnp.asarray(perm)
    params = _uniform_params(sizes)
    state = {"p": params, "s": opt.init(params)}

    def epoch():
        losses = []
        for i in range(n):
            state["p"], state["s"], loss = step(state["p"], state["s"], perm[i])
            losses.append(loss)
        block(state["p"])
        return losses

    if not float(epoch()[-1]) < math.log(10):
        raise AssertionError("plain JAX loop did not train")
    return epoch


def torch_epoch(torch, ds, sizes, batch, compiled=False):
    """PyTorch: ``nn.Sequential`` of Linear/ReLU, CrossEntropyLoss, SGD with momentum;
    eager, or the model under ``torch.compile`` (forward and backward compiled, the
    optimizer step eager)."""
    torch.manual_seed(0)
    layers = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    layers.append(torch.nn.Linear(sizes[-2], sizes[-1]))
    dev = torch_device(torch)
    model = torch.nn.Sequential(*layers).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    run = torch.compile(model) if compiled else model
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
            loss = lossf(run(x[idx]), y[idx])
            loss.backward()
            opt.step()
            last = loss
        return float(last.detach())  # waits for the device

    if not epoch() < math.log(10):
        raise AssertionError("PyTorch loop did not train")
    return epoch


def _torch_threads(torch, epoch):
    """PyTorch's epoch at its faster thread count, 1 or all cores (on a busy machine its
    multi-threaded small products can be many times slower than one thread): returns the
    epoch function, which sets that count on each call, and the count."""
    cores = os.cpu_count() or 1
    best = {}
    for n in sorted({1, cores}):
        torch.set_num_threads(n)
        best[n] = timeit(epoch, repeats=3, min_time=0.1)[0]
    n = min(best, key=best.__getitem__)

    def run():
        torch.set_num_threads(n)
        return epoch()

    return run, n


def _torch_compile_or_reason(torch, ds, sizes, batch):
    """``(epoch function, None)``, or ``(None, why)`` when torch.compile fails here."""
    try:
        return torch_epoch(torch, ds, sizes, batch, compiled=True), None
    except Exception as err:  # any failure of the compiler is a skip, with its reason
        return None, f"torch.compile failed here: {type(err).__name__}: {str(err)[:120]}"


def step_products(torch, sizes, batch, threads):
    """One training step's matrix products, each timed alone at its best, in XLA (jitted,
    full float32 precision) and in PyTorch (on ``threads`` threads): per layer the forward
    product ``h @ W``, the input gradient ``dz @ W.T`` (all but the first layer) and the
    weight gradient ``h.T @ dz``. Returns ``{"xla": (all, weight gradients), "torch":
    (...)}`` in seconds per step: how far the libraries' products alone set the engine
    apart from PyTorch, whatever the rest of the step costs."""
    rng = np.random.default_rng(0)
    dev = torch_device(torch)
    torch.set_num_threads(threads)
    sync = getattr(getattr(torch, str(dev).split(":")[0], None), "synchronize", None)
    sync = sync or (lambda: None)
    xla = {
        "fwd": jax.jit(lambda h, w: h @ w),
        "dx": jax.jit(lambda dz, w: dz @ w.T),
        "dw": jax.jit(lambda h, dz: h.T @ dz),
    }
    out = {"xla": [0.0, 0.0], "torch": [0.0, 0.0]}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        shapes = ((batch, a), (a, b), (batch, b))
        h, w, dz = (rng.standard_normal(s, dtype=np.float32) for s in shapes)
        jh, jw, jdz = jnp.asarray(h), jnp.asarray(w), jnp.asarray(dz)
        th, tw, tdz = (torch.tensor(v, device=dev) for v in (h, w, dz))
        cases = {
            "fwd": (lambda: block(xla["fwd"](jh, jw)), lambda: (th @ tw, sync())),
            "dx": (lambda: block(xla["dx"](jdz, jw)), lambda: (tdz @ tw.T, sync())),
            "dw": (lambda: block(xla["dw"](jh, jdz)), lambda: (th.T @ tdz, sync())),
        }
        for name, (ours, theirs) in cases.items():
            if name == "dx" and i == 0:
                continue  # no gradient flows into the data
            with jax.default_matmul_precision("highest"):
                t_x = best_time(ours)
            t_t = best_time(theirs)
            for key, t in (("xla", t_x), ("torch", t_t)):
                out[key][0] += t
                if name == "dw":
                    out[key][1] += t
    return {k: tuple(v) for k, v in out.items()}


def run(quick: bool) -> list[Row]:
    torch = torch_or_none()
    ds = synthetic(4096 if quick else 8192, 256, dim=64, num_classes=10)
    ceiling, ceiling_by = matmul_ceiling()
    rows = []
    for i, (sizes, batch) in enumerate(SIZES[:1] if quick else SIZES):
        label = f"MLP {'-'.join(map(str, sizes))}, batch {batch}"
        fns, steps = {}, None
        fns["engine"], steps = engine_epoch(ds, sizes, batch, instrument=True)
        fns["uninstrumented"], _ = engine_epoch(ds, sizes, batch, instrument=False)
        if i < 2:
            fns["lockstep"], _ = engine_epoch(ds, sizes, batch, instrument=True, runs=LOCKSTEP)
            fns["lexicographic"], _ = engine_epoch(ds, sizes, batch, True, kink=LEXICOGRAPHIC)
        fns["scan"] = scan_epoch(ds, sizes, batch)
        fns["jit"] = jit_step_epoch(ds, sizes, batch)
        skip, threads = {}, {}
        if torch is None:
            skip["eager"] = skip["compile"] = "torch not installed: baseline left out"
        else:
            fns["eager"], threads["eager"] = _torch_threads(
                torch, torch_epoch(torch, ds, sizes, batch)
            )
            if quick:
                skip["compile"] = "torch.compile left out of the quick run (compile time)"
            elif not OPTIONS["torch_compile"]:
                skip["compile"] = "torch.compile left out of this run (--no-torch-compile)"
            else:
                compiled, reason = _torch_compile_or_reason(torch, ds, sizes, batch)
                if compiled is None:
                    skip["compile"] = reason
                else:
                    fns["compile"], threads["compile"] = _torch_threads(torch, compiled)
        t = interleaved(fns, rounds=3 if quick else 7)
        per = {k: (v[0] / steps, v[1]) for k, v in t.items()}
        ours, sp = per["engine"]
        gflops = _flops(sizes, batch) / ours / 1e9
        note = (
            f"{1 / ours:.0f} steps/s, {gflops:.1f} GFLOP/s = "
            f"{percent_of(gflops * 1e9, ceiling)} of the matmul ceiling "
            f"({ceiling / 1e9:.0f} GFLOP/s, {ceiling_by})"
        )

        def row(name, key, goal, text=note, ours=ours, sp=sp):
            if key in threads:
                text += f"; PyTorch on {threads[key]} thread(s), its faster count here"
            if key in skip:
                rows.append(Row(NAME, f"{label}: engine vs {name}", ours, name, None, goal,
                                "s/step", skip[key], sp))  # fmt: skip
            else:
                rows.append(Row(NAME, f"{label}: engine (instrumented) vs {name}", ours, name,
                                per[key][0], goal, "s/step", text, sp, per[key][1]))  # fmt: skip

        row("hand-written lax.scan loop", "scan", 0.95)
        row("JAX jit per step", "jit", 1.0)
        row("PyTorch eager", "eager", GOALS_TORCH[i])
        row("PyTorch torch.compile", "compile", None)
        rows.append(
            Row(NAME, f"{label}: engine uninstrumented vs hand-written lax.scan loop",
                per["uninstrumented"][0], "hand-written lax.scan loop", per["scan"][0], None,
                "s/step", "the engine's own cost, instrumentation left out",
                per["uninstrumented"][1], per["scan"][1])
        )  # fmt: skip
        rows.append(
            Row(NAME, f"{label}: instrumented vs not", ours, "engine uninstrumented",
                per["uninstrumented"][0], 1 / 1.15, "s/step", "goal: at most 15% slower", sp,
                per["uninstrumented"][1])
        )  # fmt: skip
        if "eager" in threads:
            prod = step_products(torch, sizes, batch, threads["eager"])
            (x_all, x_dw), (t_all, t_dw) = prod["xla"], prod["torch"]
            rows.append(
                Row(NAME, f"{label}: the step's matrix products alone, XLA vs PyTorch", x_all,
                    "PyTorch's products", t_all, None, "s/step",
                    f"each product timed alone at its best (forward, input and weight "
                    f"gradients); the weight gradients (h.T @ dz) alone: XLA "
                    f"{x_dw * 1e6:.0f} µs, PyTorch {t_dw * 1e6:.0f} µs ({t_dw / x_dw:.2f}x); "
                    f"PyTorch on {threads['eager']} thread(s), as in its eager row"
                    + ("; each product is a call of its own, whose fixed cost dominates at "
                       "these sizes (they take longer than the engine's whole step)"
                       if x_all > ours else ""),
                    extra={"xla_dw": x_dw, "torch_dw": t_dw})
            )  # fmt: skip
        if "lockstep" in per:
            t_k, sp_k = per["lockstep"]
            rows.append(
                Row(NAME, f"{label}: {LOCKSTEP} lockstep runs vs {LOCKSTEP} x one run", t_k,
                    f"{LOCKSTEP} x one run", LOCKSTEP * ours, 1 / 1.1, "s/step",
                    f"goal: at most 1.1 x {LOCKSTEP} one-run steps; "
                    f"{t_k / ours:.2f}x one run", sp_k, sp)
            )  # fmt: skip
        if "lexicographic" in per:
            t_l, sp_l = per["lexicographic"]
            rows.append(
                Row(NAME, f"{label}: kink value lexicographic vs 0 (both instrumented)", t_l,
                    "engine, ReLU'(0) = 0", ours, 1 / 1.5, "s/step",
                    "goal: at most 1.5x (issue 15); float32 tie rates: the rule runs only on "
                    "steps with a candidate tie", sp_l, sp)
            )  # fmt: skip
    return rows


def explain(row: Row, rows: list[Row]) -> str:
    """Why ``row`` misses its goal, from this run's figures of the same network."""
    label = row.case.split(":")[0]
    same = {r.case.split(": ", 1)[1]: r for r in rows if r.case.startswith(label + ":")}
    own = same.get("engine uninstrumented vs hand-written lax.scan loop")
    inst = same.get("instrumented vs not")
    parts = []
    if own is not None and own.speedup is not None:
        parts.append(f"the engine without instrumentation runs at {own.speedup:.2f}x the scan loop")
    if inst is not None and inst.speedup is not None:
        parts.append(f"instrumentation costs {100 * (1 / inst.speedup - 1):.0f}%")
    if "PyTorch" in row.baseline_name:
        scan = same.get("engine (instrumented) vs hand-written lax.scan loop")
        if scan is not None and scan.baseline is not None:
            parts.append(
                f"the hand-written lax.scan loop is {row.baseline / scan.baseline:.2f}x "
                f"{row.baseline_name} too"
            )
        prod = same.get("the step's matrix products alone, XLA vs PyTorch")
        if prod is not None and prod.speedup is not None and "xla_dw" in prod.extra:
            dw = prod.extra["torch_dw"] / prod.extra["xla_dw"]
            parts.append(
                f"the step's products alone run at {prod.speedup:.2f}x PyTorch's in XLA "
                f"(the weight gradients h.T @ dz at {dw:.2f}x)"
            )
    if "lockstep" in row.case:
        parts = [f"{LOCKSTEP} runs cost {row.ours * LOCKSTEP / row.baseline:.2f}x one run"]
    spread = row.ours_spread + row.baseline_spread
    a, b = 100 * row.ours_spread, 100 * row.baseline_spread
    parts.append(f"timing spreads ±{a:.0f}% / ±{b:.0f}%")
    if 1 - row.speedup / row.goal <= spread:
        parts.append("the shortfall is within them")
    return "; ".join(parts)


NOTES = """Goals (issue 14): the engine (instrumented, one run) at least 0.95x the hand-written
`lax.scan` loop and at least 1.0x JAX jit per step on all three sizes; at least 3x PyTorch
eager on the small network, 1.2x on the medium and 1.0x on the large; four lockstep runs at
most 1.1 x 4 one-run steps; instrumentation at most 15% slower. Every contender is timed
round-robin, one epoch per call (8192 examples), and PyTorch runs at its faster thread count
(1 or 2: on a loaded 2-core machine its two-thread small products can be many times slower
than one thread). The engine's uninstrumented step compiles to the same work as the
hand-written loop's (one while-loop body with the same three products per layer pass and a
similar number of fused elementwise kernels); the rows "engine uninstrumented vs
hand-written lax.scan loop" and "instrumented vs not" split the engine's distance to the
scan loop into its own cost and the instrumentation's (the exact-zero counts and the
bifurcation test's condition, every step). Two differences from the hand-written loop are
deliberate: the engine shuffles each epoch with `jaxrelu._rng.permutation` (the indices of
`jax.random.permutation`, bit for bit, about 3x faster on the CPU, where a key-value sort
runs a compiled comparator per comparison) and counts exact zeros with matrix-vector
products (`jaxrelu._util.counts`, the small layers of one shape in one product; an integer
reduction wrote the mask out first, which cost about 8% of a step on the large network),
once per layer: every unit of an MLP has a bias of its own, so every zero may change a
gradient, and the count of those that may (needed for the residual network without batch
norm) is the same count (with the counts stacked, this took the instrumentation from 10%,
7% and 6% of a step to 5-6%, 2-3% and 1-3% on the three sizes, in two full runs). The
percentages of the matmul ceiling compare the
network's matrix-product FLOPs (6 x batch x weights per step) with the fastest square
float32 product any library here achieved (best of several calls): an upper bound, so every
row reads below 100%.

On an NVIDIA H100 (JAX 0.11.2, PyTorch 2.11 on the same GPU; `results/gpu-h100.json`,
rendered at the end of RESULTS.md) the engine runs 13x, 9.3x and 3.9x PyTorch eager and
7.3x, 5.2x and 2.3x JAX jit per step, and four lockstep runs cost 1.29x and 1.51x one (the
GPU has room for them): those goals hold. Two do not. The engine runs at 0.42-0.55x the
hand-written loop there (uninstrumented 0.57-0.69x), and instrumentation costs 24-45%
(goal 15%). What that run says of the causes: the engine's extra time over the loop,
uninstrumented, is 3.3-3.6 ms per epoch at all three sizes (28, 52 and 109 us per step over
128, 64 and 32 steps), which points to a fixed cost per epoch rather than per step. Not yet
located: the epoch's shuffle was then the rank-placement permutation, whose binary search
is a loop and whose repeated-key check a branch (host round trips on a GPU; it now lowers
to `jax.random.permutation` off the CPU), but a few round trips do not make 3.5 ms; the
probe now also times an epoch's parts (`train_epoch`, its compiled chunk alone, the shuffle
alone) for the next GPU run. The instrumentation's
parts on the small network (`benchmarks/probe_instrumentation.py`,
`results/gpu-h100-probe.json`): the exact-zero counts 16 us per step (a few small
reductions, each a kernel launch), the bifurcation test's `lax.cond` 17 us (computing its
two gradients every step instead, without the branch, cost the same); counting by
matrix-vector product instead of integer sums made no measurable difference there. With
XLA's command buffers extended to conditionals and loops
(`XLA_FLAGS=--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CONDITIONAL,WHILE`)
the instrumented step took 98 us instead of 110."""
