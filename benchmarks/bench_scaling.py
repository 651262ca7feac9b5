"""Scaling: how the cost of a training step grows with width and batch, and the cost of
check_many with the number of points (fitted log-log exponents)."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
from _harness import Row, fit_exponent
from bench_checker import network
from bench_training import engine_step_time

import jaxrelu as jr
from jaxrelu.study.data import synthetic

NAME = "scaling"


def run(quick: bool) -> list[Row]:
    ds = synthetic(2048, 128, dim=64)
    rows = []
    widths = [64, 256] if quick else [64, 128, 256, 512, 1024]
    t_w = [engine_step_time(ds, (64, w, w, 10), 128, True)[0] for w in widths]
    e = fit_exponent(widths, t_w)
    for w, t in zip(widths, t_w):
        rows.append(
            Row(
                NAME,
                f"training step, width {w} (depth 2, batch 128)",
                t,
                "-",
                None,
                None,
                "s/step",
                f"time ~ width^{e:.2f} (flops ~ width^2)",
                extra={"exponent": e},
            )
        )
    batches = [32, 128] if quick else [32, 64, 128, 256, 512]
    t_b = [engine_step_time(ds, (64, 256, 256, 10), b, True)[0] for b in batches]
    e = fit_exponent(batches, t_b)
    for b, t in zip(batches, t_b):
        rows.append(
            Row(
                NAME,
                f"training step, batch {b} (width 256)",
                t,
                "-",
                None,
                None,
                "s/step",
                f"time ~ batch^{e:.2f}",
                extra={"exponent": e},
            )
        )
    f = network()
    points = [16, 64] if quick else [16, 32, 64, 128, 256, 512]
    t_p = []
    for n in points:
        xs = jax.random.normal(jax.random.PRNGKey(n), (n, 8), jnp.float32)
        jr.check_many(f, xs)
        t0 = time.perf_counter()
        jr.check_many(f, xs)
        t_p.append(time.perf_counter() - t0)
    e = fit_exponent(points, t_p)
    for n, t in zip(points, t_p):
        rows.append(
            Row(
                NAME,
                f"check_many, {n} points",
                t,
                "-",
                None,
                None,
                "s/call",
                f"time ~ points^{e:.2f}",
                extra={"exponent": e},
            )
        )
    return rows
