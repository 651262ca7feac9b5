"""Shared benchmark machinery: timing (warm-up excluded, block_until_ready, median and
spread over repeats), the machine header, result rows and their table / JSON / Markdown."""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax


@dataclasses.dataclass
class Row:
    """One comparison. ``ours`` and ``baseline`` are seconds per unit of work."""

    benchmark: str
    case: str
    ours: float
    baseline_name: str
    baseline: float | None
    goal: float | None = None
    unit: str = "s"
    note: str = ""
    ours_spread: float = 0.0
    baseline_spread: float = 0.0
    extra: dict = dataclasses.field(default_factory=dict)

    @property
    def speedup(self) -> float | None:
        if self.baseline is None or not self.ours:
            return None
        return self.baseline / self.ours

    @property
    def met(self) -> bool | None:
        if self.goal is None or self.speedup is None:
            return None
        return bool(self.speedup >= self.goal)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Row:
        fields = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in d.items() if k in fields}
        extra = {k: v for k, v in d.items() if k not in fields and k not in ("speedup", "met")}
        return cls(**known, extra=extra)

    def to_json(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "case": self.case,
            "ours": self.ours,
            "baseline_name": self.baseline_name,
            "baseline": self.baseline,
            "speedup": self.speedup,
            "goal": self.goal,
            "met": self.met,
            "unit": self.unit,
            "ours_spread": self.ours_spread,
            "baseline_spread": self.baseline_spread,
            "note": self.note,
            **self.extra,
        }


def block(x: Any) -> Any:
    return jax.block_until_ready(x)


def timeit(fn: Callable[[], Any], repeats: int = 7, min_time: float = 0.05, warmup: int = 1):
    """Median and relative spread (half the inter-quartile range over the median) of the
    time of one call of ``fn``; calls are grouped so that each timed group lasts at least
    ``min_time`` seconds. ``fn`` must block until its work is done."""
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    inner = max(1, int(min_time / one))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
    med = statistics.median(samples)
    q = statistics.quantiles(samples, n=4) if len(samples) >= 2 else [med, med, med]
    return med, (q[2] - q[0]) / 2 / med if med else 0.0


def compare(fn_a: Callable[[], Any], fn_b: Callable[[], Any], rounds: int = 9, min_time=0.05):
    """Times two functions alternately (a, b, a, b, ...) so that drifts in the machine's
    speed hit both alike; returns (median a, spread a, median b, spread b)."""
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(timeit(fn_a, repeats=1, min_time=min_time, warmup=0)[0])
        tb.append(timeit(fn_b, repeats=1, min_time=min_time, warmup=0)[0])

    def stat(xs):
        med = statistics.median(xs)
        q = statistics.quantiles(xs, n=4)
        return med, (q[2] - q[0]) / 2 / med if med else 0.0

    return (*stat(ta), *stat(tb))


def machine() -> dict[str, str]:
    """The run header: backend, device kind, JAX version, CPU model (jaxrelu's own)."""
    from jaxrelu.study.reproduce import machine_info

    info = machine_info()
    return {
        "backend": info["backend"],
        "device": info["device"],
        "jax_version": info["jax_version"],
        "cpu": f"{info['cpu']} ({info['cores']} cores)",
    }


def torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    return torch


def torch_device(torch):
    """The device PyTorch baselines run on: the GPU when JAX runs on one too."""
    if jax.default_backend() == "gpu" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def fmt_time(t: float | None) -> str:
    if t is None:
        return "-"
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if t >= scale:
            return f"{t / scale:.3g} {unit}"
    return f"{t:.2e} s"


def table(rows: list[Row]) -> str:
    head = ["benchmark", "case", "ours", "baseline", "speedup", "goal", "met", "note"]
    body = []
    for r in rows:
        sp = r.speedup
        body.append(
            [
                r.benchmark,
                r.case,
                f"{fmt_time(r.ours)} ±{100 * r.ours_spread:.0f}%",
                "-" if r.baseline is None else f"{r.baseline_name}: {fmt_time(r.baseline)}",
                "-" if sp is None else f"{sp:.3g}x",
                "-" if r.goal is None else f">= {r.goal:g}x",
                {None: "-", True: "yes", False: "NO"}[r.met],
                r.note,
            ]
        )
    return markdown(head, body)


def markdown(head: list[str], body: list[list[str]]) -> str:
    """A Markdown table, through jaxrelu's one table renderer."""
    from jaxrelu._table import render

    return render(head, body, style="markdown")


def fit_exponent(xs: list[float], ys: list[float]) -> float:
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)
