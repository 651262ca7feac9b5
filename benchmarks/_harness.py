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

OPTIONS: dict[str, Any] = {"torch_compile": True}
"""Run-wide switches set by run.py's command line (``--no-torch-compile``)."""


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


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int = 7, min_time: float = 0.2):
    """Times several functions round-robin (a, b, c, a, b, c, ...) so that drifts in the
    machine's speed hit all alike; each must block until its work is done and is called
    once untimed first. Returns ``{name: (median seconds per call, relative spread)}``."""
    for fn in fns.values():
        fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            samples[k].append(timeit(fn, repeats=1, min_time=min_time, warmup=0)[0])
    out = {}
    for k, xs in samples.items():
        med = statistics.median(xs)
        q = statistics.quantiles(xs, n=4) if len(xs) >= 2 else [med, med, med]
        out[k] = (med, (q[2] - q[0]) / 2 / med if med else 0.0)
    return out


def best_time(fn: Callable[[], Any], calls: int = 30, min_total: float = 0.2) -> float:
    """The shortest of at least ``calls`` timed calls (after one untimed), more while the
    calls have taken less than ``min_total`` seconds (up to 2000): the machine's best case,
    what a ceiling is measured with (short kernels, a GPU's or a small copy's, need many
    calls to reach it)."""
    fn()
    best = math.inf
    n, spent = 0, 0.0
    while n < calls or (spent < min_total and n < 2000):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, n, spent = min(best, dt), n + 1, spent + dt
    return best


def bandwidth_ceiling(n_bytes: int) -> tuple[float, str]:
    """Bytes per second of the fastest streaming copy of ``n_bytes`` (read ``n_bytes``,
    write ``n_bytes``) this machine achieved, each kernel at its best of many calls: a
    NumPy copy into a preallocated buffer (no page faults for a fresh output), the same
    split over two threads, XLA's copy kernel and its elementwise maximum (new outputs,
    as every jitted function has). Returns ``(bytes/s, which kernel)``. An upper bound for
    any kernel that reads and writes ``n_bytes``, up to the machine's noise."""
    import threading

    import jax.numpy as jnp
    import numpy as np

    n = n_bytes // 4
    src = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    dst = np.empty_like(src)
    half = n // 2

    def two_threads():
        t = threading.Thread(target=np.copyto, args=(dst[:half], src[:half]))
        t.start()
        np.copyto(dst[half:], src[half:])
        t.join()

    x = jnp.asarray(src)
    xla = jax.jit(lambda v: v + 1.0)
    xla_max = jax.jit(lambda v: jnp.maximum(v, 0.0))
    kernels = {
        "NumPy copy": lambda: np.copyto(dst, src),
        "NumPy copy, 2 threads": two_threads,
        "XLA copy": lambda: block(xla(x)),
        # XLA's fastest streaming loop here: a relu-shaped pass (a forward activation row
        # once read 102% of a ceiling without it)
        "XLA max(x, 0)": lambda: block(xla_max(x)),
    }
    rates = {k: 2 * n_bytes / best_time(f) for k, f in kernels.items()}
    name = max(rates, key=rates.__getitem__)
    return rates[name], name


def matmul_ceiling() -> tuple[float, str]:
    """float32 FLOP/s of the fastest square matrix product any library here achieved,
    each at its best of several calls: JAX (XLA), NumPy (its BLAS; on the CPU) and PyTorch
    when installed (on the device JAX uses). Sizes 512, 1024 and 2048 on the CPU; on a GPU
    1024 to 8192, which it needs to reach its rate. Returns ``(FLOP/s, which one)``: an
    upper bound for the matrix products of any benchmark here, up to the machine's noise."""
    import jax.numpy as jnp
    import numpy as np

    gpu = jax.default_backend() == "gpu"
    torch = torch_or_none()
    dev = None if torch is None else torch_device(torch)
    rates = {}
    for n in (1024, 2048, 4096, 8192) if gpu else (512, 1024, 2048):
        a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
        ja = jnp.asarray(a)
        f = jax.jit(lambda m: m @ m)
        calls = 10 if n >= 2048 else 30
        rates[f"JAX {n}"] = 2 * n**3 / best_time(lambda: block(f(ja)), calls)
        if not gpu:
            rates[f"NumPy {n}"] = 2 * n**3 / best_time(lambda: a @ a, calls)
        if torch is not None:
            ta = torch.from_numpy(a).to(dev)

            def mm(ta=ta):
                torch.mm(ta, ta)
                if dev.type == "cuda":
                    torch.cuda.synchronize()

            rates[f"PyTorch {n}"] = 2 * n**3 / best_time(mm, calls)
    name = max(rates, key=rates.__getitem__)
    return rates[name], name


def percent_of(rate: float, ceiling: float) -> str:
    """``rate`` as a percentage of ``ceiling``; above 100% is marked: the ceiling was not
    an upper bound (run.py lists such rows)."""
    pct = 100 * rate / ceiling
    return f"{pct:.0f}%" + (" (ABOVE ITS CEILING)" if pct > 100 else "")


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


def fmt_value(v: float | None, unit: str) -> str:
    """A time, or a size when ``unit`` is ``"bytes"``."""
    if unit == "bytes" and v is not None:
        from jaxrelu.study.limits import fmt_bytes

        return fmt_bytes(v)
    return fmt_time(v)


def table(rows: list[Row]) -> str:
    head = ["benchmark", "case", "ours", "baseline", "speedup", "goal", "met", "note"]
    body = []
    for r in rows:
        sp = r.speedup
        ours = fmt_value(r.ours, r.unit)
        body.append(
            [
                r.benchmark,
                r.case,
                ours if r.unit == "bytes" else f"{ours} ±{100 * r.ours_spread:.0f}%",
                "-"
                if r.baseline is None
                else f"{r.baseline_name}: {fmt_value(r.baseline, r.unit)}",
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
