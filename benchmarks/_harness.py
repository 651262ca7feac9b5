"""Shared benchmark machinery: timing (warm-up excluded, block_until_ready, median and
spread over repeats), the machine header, result rows and their table / JSON / Markdown."""

from __future__ import annotations

import dataclasses
import math
import os
import platform
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


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    dev = jax.devices()[0]
    return {
        "backend": jax.default_backend(),
        "device": getattr(dev, "device_kind", str(dev)),
        "jax_version": jax.__version__,
        "cpu": f"{cpu} ({os.cpu_count()} cores)",
    }


def torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    return torch


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
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(c.replace("|", "/") for c in b) + " |" for b in body]
    return "\n".join(out)


def fit_exponent(xs: list[float], ys: list[float]) -> float:
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)
