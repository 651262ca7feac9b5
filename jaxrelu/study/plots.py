"""The ``reproduce`` figures (PNG, :data:`DPI` dots per inch), written atomically.

* ``volume_by_precision.png`` -- P(θ ∈ S01) for every precision of the base
  configuration, with its interval and the paper's figure where there is one;
* ``volume_vs_depth.png``, ``volume_vs_width.png``, ``volume_vs_batch.png`` -- the sweeps,
  one line per precision swept, integer ticks at the values run;
* ``accuracy_by_kink.png`` -- test accuracy by ReLU'(0) for each training group (bars
  from 0; error bars only over two or more runs);
* ``divergence.png`` -- the L1 distance between the lockstep runs (log scale); precisions
  whose runs never separate cannot be drawn on it and are named in a note instead;
* ``collapse_accuracy.png`` -- the residual CNN's test accuracy after every epoch, one
  line per ReLU'(0) (mean over seeds, thin lines the seeds), one panel per precision and
  batch norm setting, the collapse threshold dashed;
* ``collapse_zeros_by_layer.png`` -- per activation layer, the rate of exact zeros and
  of live ties (zeros through which ReLU'(0) can change a gradient), log scale.

Every figure has a title and labelled axes; legends sit outside the data.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from .collapse import STUCK_ACCURACY
from .experiments import INTERVAL
from .outputs import atomic_write
from .plan import PAPER_BASE, Plan, volume_rows

__all__ = ["DPI", "PLOT_NAMES", "make_plots"]

DPI = 150
PLOT_NAMES = (
    "volume_by_precision.png",
    "volume_vs_depth.png",
    "volume_vs_width.png",
    "volume_vs_batch.png",
    "accuracy_by_kink.png",
    "divergence.png",
    "collapse_accuracy.png",
    "collapse_zeros_by_layer.png",
)
_LEVEL = f"{100 * INTERVAL['level']:.0f}%"
_MARKERS = ("o", "s", "^", "D")


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _save(fig: Any, out: str, name: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return atomic_write(os.path.join(out, name), buf.getvalue())


_NOT_DRAWABLE = "not drawable on a log axis"


def _note(ax: Any, text: str, y: float) -> None:
    """A line of small text below the axes (``y`` in axes coordinates)."""
    ax.text(0.0, y, text, transform=ax.transAxes, fontsize=8, va="top")


def _legend_outside(ax: Any) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8)


def _errors(rows: list[dict]) -> list[list[float]]:
    return [
        [max(0.0, r["probability"] - r["ci"][0]) for r in rows],
        [max(0.0, r["ci"][1] - r["probability"]) for r in rows],
    ]


def _by_precision(plt, out: str, vol: list[dict], plan: Plan) -> str | None:
    b = plan.volume_base
    rows = [
        r
        for dt in plan.volume_dtypes
        for r in vol
        if r["dtype"] == dt
        and (r["width"], r["depth"], r["batch_size"]) == (b["width"], b["depth"], b["batch_size"])
    ]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    xs = np.arange(len(rows))
    ax.errorbar(
        xs,
        [r["probability"] for r in rows],
        yerr=_errors(rows),
        fmt="o",
        capsize=4,
        label=f"ours ({_LEVEL} CI)",
    )
    paper = [
        (i + 0.15, PAPER_BASE[r["dtype"]]) for i, r in enumerate(rows) if r["dtype"] in PAPER_BASE
    ]
    if paper:  # beside ours, so that equal values stay visible
        ax.plot(*zip(*paper), "x", color="black", label="paper, MNIST\n(batch 100, 200 inits)")
    ax.set_xticks(xs, [r["dtype"] for r in rows])
    ax.set_xlabel("precision")
    ax.set_ylabel("P(θ in bifurcation zone)")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(
        f"Bifurcation zone by precision\n(MLP width {b['width']}, depth {b['depth']}, "
        f"batch {b['batch_size']}, {plan.inits} inits)"
    )
    _legend_outside(ax)
    path = _save(fig, out, "volume_by_precision.png")
    plt.close(fig)
    return path


def _sweep(plt, out: str, vol: list[dict], plan: Plan, name: str) -> str | None:
    b = plan.volume_base
    values, dtypes, field = {
        "depth": (plan.depths, plan.sweep_dtypes, "depth"),
        "width": (plan.widths, plan.sweep_dtypes, "width"),
        "batch": (plan.batch_sizes, plan.batch_dtypes, "batch_size"),
    }[name]
    if len(values) < 2:  # a sweep of one value is a point of the precision plot
        return None
    fixed = {k: v for k, v in b.items() if k != field}
    pts_by_dtype = {}
    for dt in dtypes:
        pts = sorted(
            (
                r
                for r in vol
                if r["dtype"] == dt
                and r[field] in values
                and all(r[k] == v for k, v in fixed.items())
            ),
            key=lambda r: r[field],
        )
        if pts:
            pts_by_dtype[dt] = pts
    if not pts_by_dtype:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    n = len(pts_by_dtype)
    for j, (dt, pts) in enumerate(pts_by_dtype.items()):
        # dodge the precisions sideways (equal values would hide each other), markers differ
        shift = (j - (n - 1) / 2) * 0.08
        xs = [r[field] * 2**shift if name != "depth" else r[field] + shift for r in pts]
        ax.errorbar(
            xs,
            [r["probability"] for r in pts],
            yerr=_errors(pts),
            marker=_MARKERS[j % len(_MARKERS)],
            capsize=3,
            label=dt,
        )
    if name != "depth":
        ax.set_xscale("log", base=2)
    ax.set_xticks(list(values), [str(v) for v in values])
    ax.minorticks_off()
    label = "batch size" if name == "batch" else name
    ax.set_xlabel(label)
    ax.set_ylabel("P(θ in bifurcation zone)")
    ax.set_ylim(-0.05, 1.05)
    rest = ", ".join(f"{k.replace('_size', '')} {v}" for k, v in fixed.items())
    ax.set_title(f"Bifurcation zone by {label} ({rest}, {_LEVEL} CI)")
    _legend_outside(ax)
    path = _save(fig, out, f"volume_vs_{name}.png")
    plt.close(fig)
    return path


def _accuracy(plt, out: str, tr: list[dict]) -> str | None:
    groups: dict[tuple, dict[float, list[float]]] = {}
    for r in tr:
        if r["status"] == "ok":
            key = (r["model"], r["dtype"], r["batchnorm"], r["optimizer"])
            groups.setdefault(key, {}).setdefault(r["kink_grad"], []).append(r["test_accuracy"])
    if not groups:
        return None
    keys = sorted(groups)
    kinks = sorted({s for g in groups.values() for s in g})
    width = 0.8 / len(kinks)
    fig, ax = plt.subplots(figsize=(max(5.5, 1.1 * len(keys) + 2.5), 3.8))
    for j, s in enumerate(kinks):
        accs = [groups[g].get(s, []) for g in keys]
        means = [np.mean(a) if a else np.nan for a in accs]
        errs = [np.std(a) if len(a) > 1 else 0.0 for a in accs]
        xs = np.arange(len(keys)) + (j - (len(kinks) - 1) / 2) * width
        bars = ax.bar(xs, means, width, label=f"ReLU'(0) = {s:g}")
        if any(len(a) > 1 for a in accs):
            ax.errorbar(xs, means, yerr=errs, fmt="none", ecolor="black", capsize=2)
        ax.bar_label(
            bars,
            labels=[f"{m:.3f}" if np.isfinite(m) else "" for m in means],
            label_type="center",  # inside the bar: clear of the error bars
            fontsize=6,
            rotation=90,
            color="white",
        )
    ax.set_xticks(
        np.arange(len(keys)),
        [f"{m} {d}\n{'BN' if bn else 'no BN'} {o}" for m, d, bn, o in keys],
        fontsize=7,
    )
    ax.set_ylim(0.0, 1.0)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_xlabel("model, precision, batch norm, optimizer")
    ax.set_ylabel("test accuracy")
    seeds = max(len(a) for g in groups.values() for a in g.values())
    note = f"mean ± std over {seeds} seeds" if seeds > 1 else "one run each"
    ax.set_title(f"Test accuracy by ReLU'(0) ({note})")
    _legend_outside(ax)
    path = _save(fig, out, "accuracy_by_kink.png")
    plt.close(fig)
    return path


def _divergence(plt, out: str, div: list[dict]) -> str | None:
    if not div:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    flat = []
    for r in div:
        l1 = np.array([np.nan if v is None else v for v in r["l1"]], float)
        if np.any(l1 > 0):
            ax.plot(np.arange(1, len(l1) + 1), np.where(l1 > 0, l1, np.nan), label=r["dtype"])
        else:
            flat.append(r["dtype"])
    ax.set_yscale("log")
    ax.set_xlabel("SGD step")
    ax.set_ylabel("L1 distance between the weights")
    ax.set_title("Lockstep runs with ReLU'(0) = 0 and 1")
    ax.xaxis.get_major_locator().set_params(integer=True)
    if len(flat) < len(div):
        _legend_outside(ax)
    if flat:
        _note(ax, f"distance exactly 0 at every step ({_NOT_DRAWABLE}): {', '.join(flat)}", -0.2)
    path = _save(fig, out, "divergence.png")
    plt.close(fig)
    return path


def _kink_label(s: float | str) -> str:
    return f"{s:g}" if isinstance(s, (int, float)) else str(s)


def _collapse_groups(col: list[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for r in col:
        groups.setdefault((r["dtype"], r["batchnorm"]), []).append(r)
    return dict(sorted(groups.items(), key=lambda kv: (kv[0][0] != "float32", kv[0][1])))


def _collapse_curves(plt, out: str, col: list[dict]) -> str | None:
    groups = _collapse_groups(col)
    if not groups:
        return None
    kinks = list(dict.fromkeys(r["kink_grad"] for r in col))
    fig, axes = plt.subplots(
        1, len(groups), figsize=(3.2 * len(groups) + 1.6, 3.4), squeeze=False, sharey=True
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, ((dt, bn), rows) in zip(axes[0], groups.items()):
        for j, s in enumerate(kinks):
            curves = [
                np.array([np.nan if a is None else a for a in r["accuracy_curve"]], float)
                for r in rows
                if r["kink_grad"] == s
            ]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            stack = np.stack([c[:n] for c in curves])
            epochs = np.arange(1, n + 1)
            color = colors[j % len(colors)]
            for c in stack:
                ax.plot(epochs, c, color=color, alpha=0.25, lw=0.7)
            style = "--" if isinstance(s, str) else "-"
            ax.plot(
                epochs,
                np.nanmean(stack, axis=0),
                style,
                color=color,
                lw=1.6,
                label=f"ReLU'(0) = {_kink_label(s)}",
            )
        ax.axhline(STUCK_ACCURACY, color="grey", ls=":", lw=0.8)
        ax.set_title(f"{dt}, {'batch norm' if bn else 'no batch norm'}", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylim(0.0, 1.0)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0][0].set_ylabel("test accuracy")
    seeds = len({r["seed"] for r in col})
    mean = f"mean of {seeds} seeds" if seeds > 1 else "one seed"
    fig.suptitle(
        f"Bias-free residual CNN, SGD: accuracy by ReLU'(0) ({mean}; thin: "
        f"each seed; dotted: collapse threshold {STUCK_ACCURACY:g})",
        fontsize=9,
    )
    _legend_outside(axes[0][-1])
    path = _save(fig, out, "collapse_accuracy.png")
    plt.close(fig)
    return path


def _collapse_layers(plt, out: str, col: list[dict]) -> str | None:
    groups = _collapse_groups(col)
    if not groups:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    floor = None
    for j, ((dt, bn), rows) in enumerate(groups.items()):
        zeros = np.mean([r["zero_hit_rate_by_layer"] for r in rows], axis=0)
        live = np.mean([r["live_tie_rate_by_layer"] for r in rows], axis=0)
        layers = np.arange(1, len(zeros) + 1)
        label = f"{dt}, {'BN' if bn else 'no BN'}"
        marker = _MARKERS[j % len(_MARKERS)]
        line = ax.plot(
            layers, np.where(zeros > 0, zeros, np.nan), marker=marker, label=f"{label}: exact zeros"
        )[0]
        ax.plot(
            layers,
            np.where(live > 0, live, np.nan),
            marker=marker,
            ls="--",
            color=line.get_color(),
            mfc="none",
            label=f"{label}: live ties",
        )
        pos = np.concatenate([zeros[zeros > 0], live[live > 0]])
        if pos.size:
            floor = pos.min() if floor is None else min(floor, pos.min())
    ax.set_yscale("log")
    ax.set_xlabel("activation layer (1 = stem; then two per residual block)")
    ax.set_ylabel("rate per evaluation")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title("Exact zeros and live ties by layer\n(mean over ReLU'(0) values, seeds and steps)")
    if floor is not None:
        _legend_outside(ax)
    _note(ax, f"missing points: rate exactly 0 ({_NOT_DRAWABLE})", -0.22)
    path = _save(fig, out, "collapse_zeros_by_layer.png")
    plt.close(fig)
    return path


def make_plots(out: str, sections: dict[str, list[dict]], plan: Plan) -> list[str]:
    """Draws every figure the results allow into ``out``; returns their absolute paths
    (none without matplotlib)."""
    plt = _pyplot()
    if plt is None:
        return []
    vol, tr, div = (
        volume_rows(sections["volume"], "sweep"),
        sections["train"],
        sections["divergence"],
    )
    col = sections.get("collapse", [])
    makers: list[Callable[[], str | None]] = [
        lambda: _by_precision(plt, out, vol, plan),
        lambda: _sweep(plt, out, vol, plan, "depth"),
        lambda: _sweep(plt, out, vol, plan, "width"),
        lambda: _sweep(plt, out, vol, plan, "batch"),
        lambda: _accuracy(plt, out, tr),
        lambda: _divergence(plt, out, div),
        lambda: _collapse_curves(plt, out, col),
        lambda: _collapse_layers(plt, out, col),
    ]
    return [p for p in (m() for m in makers) if p is not None]
