"""Where the training engine's instrumentation spends its time, variant by variant
(a profiling aid for the training benchmark's "instrumented vs not" rows, not part of
run.py's table): the engine uninstrumented and instrumented as shipped, and instrumented
with one piece changed at a time:

* ``count by product``: the exact-zero counts as a matrix-vector product on every
  platform (the CPU's form; elsewhere the shipped counts are integer reductions);
* ``test without cond``: the bifurcation test's two gradients computed on every step and
  masked, instead of under a ``lax.cond`` (same results: a step without a hit reports no
  difference either way);
* ``counts only``: no bifurcation test at all (what the counts alone cost).

Then the uninstrumented epoch's parts: ``train_epoch`` as a whole against its compiled
chunk program alone (the rest is host work: transfers of the records and flags) and the
epoch's shuffle alone. With ``--hlo DIR``, the optimized programs (the loop's, the engine's
chunk with and without instrumentation) are written there, and the instructions of each
training loop's body counted by kind (on a GPU each fusion, library call and copy is a
kernel launch).

    python benchmarks/probe_instrumentation.py [--sizes small medium large] [--json PATH]

All variants and the hand-written ``lax.scan`` loop are timed round-robin, epoch by epoch.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax
import jax.numpy as jnp
import numpy as np
from _harness import block, interleaved, machine
from bench_training import SIZES, scan_epoch, train_config

from jaxrelu import _util
from jaxrelu.study import engine as T
from jaxrelu.study import instrument
from jaxrelu.study.data import synthetic


def _test_without_cond(grad_at, any_hit, runs=None):
    compare = (
        instrument.compare_gradients if runs is None else jax.vmap(instrument.compare_gradients)
    )
    differ, rel = compare(grad_at(0.0), grad_at(1.0))
    return differ & any_hit, jnp.where(any_hit, rel, 0.0)


def _count_by_product(mask, most=1):
    mask = jnp.asarray(mask)
    if mask.ndim == 0 or mask.size == 0:
        return jnp.sum(mask, dtype=jnp.int32)
    return _util._count_by_product(mask)


def _counts_only(grad_at, any_hit, runs=None):
    shape = () if runs is None else (runs,)
    return jnp.zeros(shape, bool) & any_hit, jnp.zeros(shape, jnp.float32)


PATCHES = {
    "count by product": (_util, "count", _count_by_product),
    "test without cond": (instrument, "bifurcation_test", _test_without_cond),
    "counts only": (instrument, "bifurcation_test", _counts_only),
}


@contextlib.contextmanager
def patched(name):
    if name not in PATCHES:
        yield
        return
    mod, attr, fn = PATCHES[name]
    old = getattr(mod, attr)
    setattr(mod, attr, fn)
    try:
        yield
    finally:
        setattr(mod, attr, old)


def variant_epoch(ds, sizes, batch, instrument_on, variant, tag):
    """The engine's epoch under ``variant``, compiled (and checked) while patched; ``tag``
    makes its spec, hence its compiled program, its own (an unused loss-scale period)."""
    cfg = train_config(sizes, batch, instrument_on)
    spec = dataclasses.replace(T.EngineSpec.of(cfg, ds), loss_scale_period=10_000 + tag)
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    box = {"state": T.init_state(spec, jax.random.PRNGKey(0), cfg.kink_grads), "k": 0}

    def epoch():
        box["k"] += 1
        box["state"], rec = T.train_epoch(spec, box["state"], x, y, jax.random.PRNGKey(box["k"]))
        block(box["state"])
        return rec

    with patched(variant):
        loss = np.asarray(epoch().loss)[:, 0]
    if not (np.all(np.isfinite(loss)) and loss[-1] < math.log(10)):
        raise AssertionError(f"{variant}: the engine did not train")
    return epoch, len(ds.y_train) // batch


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["small", "medium"],
                   choices=["small", "medium", "large"])  # fmt: skip
    p.add_argument("--json")
    p.add_argument("--hlo", metavar="DIR", help="write the optimized programs here")
    args = p.parse_args(argv)
    jax.config.update("jax_default_matmul_precision", "highest")
    ds = synthetic(8192, 256, dim=64, num_classes=10)
    out = {"machine": machine(), "sizes": {}}
    print(out["machine"], flush=True)
    for name in args.sizes:
        sizes, batch = SIZES[["small", "medium", "large"].index(name)]
        fns = {"hand-written lax.scan loop": scan_epoch(ds, sizes, batch)}
        steps = None
        variants = [("uninstrumented", False), ("instrumented", True)] + [
            (v, True) for v in PATCHES
        ]
        for tag, (v, on) in enumerate(variants):
            fns[v], steps = variant_epoch(ds, sizes, batch, on, v, tag)
        t = interleaved(fns, rounds=7, min_time=0.2)
        base = t["uninstrumented"][0]
        res = {k: {"us_per_step": 1e6 * m / steps, "spread": s, "vs_uninstrumented": m / base}
               for k, (m, s) in t.items()}  # fmt: skip
        out["sizes"][name] = res
        print(f"\n{name}: MLP {'-'.join(map(str, sizes))}, batch {batch}")
        for k, r in res.items():
            print(f"  {k:28s} {r['us_per_step']:9.1f} us/step ±{100 * r['spread']:.0f}%  "
                  f"{r['vs_uninstrumented']:.3f}x uninstrumented", flush=True)  # fmt: skip
        parts = epoch_parts(ds, sizes, batch)
        res["epoch parts (ms)"] = parts
        print("  epoch parts: " + ", ".join(f"{k} {v:.3f} ms" for k, v in parts.items()))
        if args.hlo:
            res["loop body instructions"] = programs(ds, sizes, batch, fns, args.hlo, name)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(out, fh, indent=1)
    return 0


def epoch_parts(ds, sizes, batch):
    """Milliseconds of an uninstrumented epoch: ``train_epoch`` whole, its compiled chunk
    program alone, and the shuffle alone (each timed round-robin)."""
    from jaxrelu import _rng

    cfg = train_config(sizes, batch, instrument=False)
    spec = T.EngineSpec.of(cfg, ds)
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    steps = len(ds.y_train) // batch
    state = T.init_state(spec, jax.random.PRNGKey(0), cfg.kink_grads)
    key = jax.random.PRNGKey(1)
    prec = spec.matmul_precision

    def whole():
        with jax.default_matmul_precision(prec):
            block(T.train_epoch(spec, state, x, y, key)[0])

    def chunk():
        with jax.default_matmul_precision(prec):
            block(T._run_steps_fast(spec, state, x, y, key, np.int32(0), steps))

    shuffle = jax.jit(lambda k: _rng.permutation(k, x.shape[0]))
    fns = {"train_epoch": whole, "chunk program": chunk, "shuffle": lambda: block(shuffle(key))}
    return {k: 1e3 * v[0] for k, v in interleaved(fns, rounds=5, min_time=0.1).items()}


_OPCODE = re.compile(r"^\s*(?:ROOT )?%?[\w.\-]+ = .*? ([a-z][a-z\-]*)\(")
_FREE = {"parameter", "get-tuple-element", "tuple", "constant", "bitcast"}


def body_counts(hlo: str) -> dict[str, int]:
    """Instructions by opcode (free ones left out) in the body of the program's largest
    while loop (the training steps), from the optimized HLO text."""
    comps: dict[str, list[str]] = {}
    name = None
    for line in hlo.splitlines():
        head = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$", line)
        if head:
            name = head.group(1)
            comps[name] = []
        elif name is not None and line.strip() != "}":
            comps[name].append(line)
    bodies = re.findall(r"body=%?([\w.\-]+)", hlo)
    if not bodies:
        return {}
    body = max(bodies, key=lambda b: len(comps.get(b, [])))
    counts: dict[str, int] = {}
    for line in comps.get(body, []):
        m = _OPCODE.match(line)
        if m and m.group(1) not in _FREE:
            counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def programs(ds, sizes, batch, fns, out_dir, size_name):
    """Writes the optimized programs of the loop and the engine's chunk (with and without
    instrumentation) to ``out_dir`` and returns each loop body's instruction counts."""
    os.makedirs(out_dir, exist_ok=True)
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    steps = len(ds.y_train) // batch
    lowered = {"loop": fns["hand-written lax.scan loop"].lower()}
    for label, on in (("engine", False), ("engine instrumented", True)):
        cfg = train_config(sizes, batch, instrument=on)
        spec = T.EngineSpec.of(cfg, ds)
        state = T.init_state(spec, jax.random.PRNGKey(0), cfg.kink_grads)
        with jax.default_matmul_precision(spec.matmul_precision):
            lowered[label] = T._run_steps_fast.lower(
                spec, state, x, y, jax.random.PRNGKey(1), np.int32(0), steps
            )
    counts = {}
    for label, low in lowered.items():
        text = low.compile().as_text()
        with open(os.path.join(out_dir, f"{size_name}-{label.replace(' ', '-')}.hlo"), "w") as fh:
            fh.write(text)
        counts[label] = body_counts(text)
        total = sum(counts[label].values())
        top = ", ".join(f"{k} {v}" for k, v in list(counts[label].items())[:8])
        print(f"  {label} loop body: {total} instructions ({top})", flush=True)
    return counts


if __name__ == "__main__":
    sys.exit(main())
