"""The study's tables and the ``reproduce`` report (``report.md``).

Every table goes through :func:`jaxrelu._table.render` and every cell through this
module's formatters (built on :func:`jaxrelu._table.fmt_value` and
:func:`~jaxrelu._table.fmt_interval`), so the command line and the report print missing
values, intervals and single runs the same way: ``-`` for a missing number, ``0.450
[0.35, 0.55]`` for a probability with its 95% interval, ``never`` for a run that never
diverged, and no ``± 0`` for a single run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _table
from .config import DEFAULT_LEARNING_RATES, OptimConfig
from .experiments import INTERVAL, DivergenceConfig
from .plan import PAPER_BASE, PAPER_BATCH, PAPER_DEPTH, PAPER_WIDTH, Plan

__all__ = [
    "divergence_table",
    "fmt_accuracy",
    "fmt_first",
    "fmt_p",
    "markdown",
    "train_table",
    "volume_rows_table",
    "volume_tables",
]

MISSING = _table.MISSING
PAPER_TRAIN_NOTE = """The paper's training figures (Bertoin et al. 2021, section 4; networks and
data far larger than ours, quoted for comparison only): ResNet18 / CIFAR10 / SGD without batch
norm: ReLU'(0) = 0 → 90.14%, 0.1 → 89.07%, 0.2 → 86.34%, ≥ 0.3 → most runs stuck at 10%;
with batch norm: 0 → 91.87%, 0.5 → 90.92%, 1 → 89.81%. VGG11 / SVHN / Adam without batch
norm: 0 → 96.11%, 1 → 95.82%; with batch norm ≈ 97.1–97.2% for every value. Rate of exact
zeros over 100 epochs of MNIST SGD: about 8.4e-8 at 16 bit, 2.9e-9 at 32 bit."""

PAPER_DIVERGENCE_NOTE = """The paper (introductory experiment, MNIST MLP 784-2000-128-10, batch 128,
plain SGD): the L1 distance between the weights stays 0 at 64 bits and jumps away from 0 at 32
bits at the first minibatch with an exact zero pre-activation."""


# ------------------------------------------------------------------------------ cells


def fmt_p(row: dict[str, Any] | None) -> str:
    """A volume row's probability with its interval, or ``-``."""
    if row is None:
        return MISSING
    return _table.fmt_interval(row["probability"], row["ci"])


def fmt_accuracy(values: Sequence[float]) -> str:
    """Mean accuracy; ``mean ± std`` only over two or more runs; ``-`` if none."""
    if not len(values):
        return MISSING
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}"


def fmt_first(step: int | None) -> str:
    """The first step at which lockstep runs differ, or ``never``."""
    return "never" if step is None else str(step)


def _fmt_sci(v: float | None) -> str:
    return MISSING if v is None else f"{v:.2e}"


def _paper(values: Sequence[float] | float | None) -> str:
    if values is None:
        return MISSING
    if isinstance(values, float):
        return f"{values:.3f}"
    return " / ".join(f"{x:.3f}" for x in values)


# ----------------------------------------------------------------------------- tables


def volume_rows_table(rows: list[dict[str, Any]], style: str = "text") -> str:
    """One line per volume row (the ``jaxrelu volume`` table)."""
    head = ["dtype", "width", "depth", "batch", "inits", "in zone", "P (95% CI)"]
    head += ["minibatches that differ", "relative L2", "seconds"]
    body = [
        [
            r["dtype"],
            str(r["width"]),
            str(r["depth"]),
            str(r["batch_size"]),
            str(r["inits"]),
            str(r["in_zone"]),
            fmt_p(r),
            f"{r['minibatch_rate']:.3f}",
            _fmt_sci(r["relative_l2"]),
            f"{r['seconds']:.2f}",
        ]
        for r in rows
    ]
    return _table.render(head, body, style=style, right=range(1, 10))


def _base_table(by: dict, plan: Plan, data_name: str, style: str) -> tuple[str, str]:
    b = plan.volume_base
    head = [
        "precision",
        f"P(θ ∈ S01), {data_name} (ours, 95% CI)",
        "minibatches that differ",
        "relative L2 of the difference",
        "minibatches with an exact zero",
        "seconds",
        "paper, MNIST (batch 100, 200 inits)",
    ]
    body = []
    for dt in plan.volume_dtypes:
        r = by.get((dt, b["width"], b["depth"], b["batch_size"]))
        if r is not None:
            body.append(
                [
                    dt,
                    fmt_p(r),
                    f"{r['minibatch_rate']:.3f}",
                    _fmt_sci(r["relative_l2"]),
                    f"{r['zero_hit_rate']:.3f}",
                    f"{r['seconds']:.2f}",
                    _paper(PAPER_BASE.get(dt)),
                ]
            )
    title = (
        f"Volume of the bifurcation zone: MLP width {b['width']}, depth {b['depth']}, batch "
        f"{b['batch_size']}, {plan.inits} initialisations, one pass"
    )
    return title, _table.render(head, body, style=style)


def volume_tables(
    rows: list[dict[str, Any]], plan: Plan, data_name: str, style: str = "markdown"
) -> list[tuple[str, str]]:
    """``(title, table)`` for the base configuration and each sweep of the plan."""
    by = {(r["dtype"], r["width"], r["depth"], r["batch_size"]): r for r in rows}
    b = plan.volume_base
    W, D, B = b["width"], b["depth"], b["batch_size"]
    tables = [_base_table(by, plan, data_name, style)]
    sweeps = (
        ("depth", plan.depths, plan.sweep_dtypes, lambda v: (W, v, B), PAPER_DEPTH, "16 / 32 / 64"),
        ("width", plan.widths, plan.sweep_dtypes, lambda v: (v, D, B), PAPER_WIDTH, "16 / 32 / 64"),
        ("batch", plan.batch_sizes, plan.batch_dtypes, lambda v: (W, D, v), PAPER_BATCH, "16 / 32"),
    )
    for name, values, dts, key, paper, bits in sweeps:
        if not values:
            continue
        head = [name] + [f"ours {dt}" for dt in dts] + [f"paper MNIST {bits} bit"]
        body = [
            [str(v)] + [fmt_p(by.get((dt, *key(v)))) for dt in dts] + [_paper(paper.get(v))]
            for v in values
        ]
        fixed = {
            "depth": f"width {W}, batch {B}",
            "width": f"depth {D}, batch {B}",
            "batch": f"width {W}, depth {D}",
        }[name]
        label = "batch size" if name == "batch" else name
        tables.append((f"P(θ ∈ S01) by {label} ({fixed})", _table.render(head, body, style=style)))
    return tables


def _train_groups(rows: list[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        key = (r["model"], r["dtype"], r["batchnorm"], r["optimizer"], r["kink_grad"])
        groups.setdefault(key, []).append(r)
    return groups


def train_table(rows: list[dict[str, Any]], style: str = "markdown") -> str:
    """Accuracy by model, precision, batch norm, optimizer and ReLU'(0), over seeds."""
    head = ["model", "precision", "batch norm", "optimizer", "ReLU'(0)"]
    head += ["test accuracy (mean ± std over seeds)", "runs", "diverged"]
    head += ["zero hits (rate)", "bifurcation steps"]
    body = []
    for key, g in sorted(_train_groups(rows).items()):
        acc = [r["test_accuracy"] for r in g if r["status"] == "ok"]
        rate = float(np.mean([r["zero_hit_rate"] for r in g]))
        body.append(
            [
                key[0],
                key[1],
                "on" if key[2] else "off",
                key[3],
                f"{key[4]:g}",
                fmt_accuracy(acc),
                str(len(g)),
                str(sum(r["status"] != "ok" for r in g)),
                f"{sum(r['zero_hits'] for r in g)} ({rate:.1e})",
                str(sum(r["bifurcation_steps"] for r in g)),
            ]
        )
    return _table.render(head, body, style=style)


def divergence_table(rows: list[dict[str, Any]], style: str = "markdown") -> str:
    """First step at which the lockstep runs differ, and their final distance."""
    head = ["precision", "steps", "first step with distance > 0", "L1 distance at the end"]
    head += ["steps with an exact zero (ReLU'(0)=0 run)", "status"]
    body = [
        [
            r["dtype"],
            str(r["steps"]),
            fmt_first(r["first_divergence"]),
            _table.fmt_value(r["l1"][-1] if r["l1"] else None, 3),
            str(sum(1 for h in r["zero_hits"] if h > 0)),
            "/".join(r["status"]),
        ]
        for r in rows
    ]
    return _table.render(head, body, style=style)


# ----------------------------------------------------------------------------- report


def _header(doc: dict[str, Any], quick: bool) -> list[str]:
    m, ds = doc["machine"], doc["dataset"]
    return [
        f"# jaxrelu reproduce: Bertoin et al. (NeurIPS 2021) on `{ds['name']}`",
        "",
        f"Mode: **{'quick' if quick else 'full'}**. jaxrelu {doc['jaxrelu_version']}, "
        f"JAX {doc['jax_version']}, backend {m['backend']} ({m['device']}), CPU: {m['cpu']}, "
        f"{m['cores']} cores. Started {doc['started']}. Data: {ds['name']} ({ds['train']} "
        f"training / {ds['test']} test images, {tuple(ds['image_shape'])}, SHA-256 "
        f"{ds['sha256'][:12]}…).",
        "",
        "Every number under *ours* was computed by this run. Columns marked *paper* are the "
        "published MNIST figures (Bertoin et al. 2021), quoted for comparison: MNIST has 33× "
        "more training images than digits, so at 32 bits our probabilities are smaller; the "
        "ordering by precision is the paper's. Their PyTorch ReLU wrote the constant α at exact "
        "zeros instead of α × the upstream gradient; jaxrelu applies the chain rule (α × "
        "upstream).",
        "",
    ]


def _diverged_lines(rows: list[dict[str, Any]]) -> list[str]:
    diverged = [r for r in rows if r["status"] != "ok"]
    if not diverged:
        return []
    groups = sorted(
        {
            (
                r["model"],
                r["dtype"],
                r["optimizer"],
                r["batchnorm"],
                r["seed"],
                r["diverged_step"],
                r["diverged_reason"] or "diverged",
            )
            for r in diverged
        }
    )
    lines = [
        f"{m} {d} {o}{' BN' if bn else ''} seed {s}: {why} at step {st}"
        for m, d, o, bn, s, st, why in groups
    ]
    out = ["Diverged runs (their accuracy is left out of the mean): " + "; ".join(lines) + "."]
    if any(r["dtype"] == "float16" and r["optimizer"] == "adam" for r in diverged):
        out.append(
            " In pure float16, Adam's default epsilon (1e-8) rounds to 0, so the first "
            "update divides by zero wherever a gradient is 0; `TrainConfig(mixed=True)` "
            "(float32 master weights) avoids it."
        )
    return [*out, ""]


def markdown(
    doc: dict[str, Any], plan: Plan, quick: bool, sections: dict[str, list], plots: list[str]
) -> str:
    """The text of ``report.md`` for the ``results.json`` document ``doc``."""
    md = _header(doc, quick)
    name = doc["dataset"]["name"]
    level = f"{100 * INTERVAL['level']:.0f}%"
    if sections["volume"]:
        md.append("## 1. Volume of the bifurcation zone (section 3 protocol)\n")
        md.append(
            "θ is in the zone S01 if, on some minibatch of one pass over the training set "
            "(no shuffling), the first-layer weight gradients with ReLU'(0) = 0 and = 1 differ "
            f"exactly. PyTorch's default init; intervals are {INTERVAL['method'].title()} "
            f"{level}.\n"
        )
        for title, table in volume_tables(sections["volume"], plan, name):
            md += [f"### {title}", "", table, ""]
    if sections["train"]:
        sgd, adam = DEFAULT_LEARNING_RATES["sgd"], DEFAULT_LEARNING_RATES["adam"]
        md.append(f"## 2. Training with different ReLU'(0) (section 4), {plan.epochs} epochs\n")
        md.append(
            "All ReLU'(0) values of a row group train in lockstep from one initialisation "
            f"on the same minibatches. SGD: momentum {plan.train_momentum:g}, lr {sgd:g}; "
            f"Adam: lr {adam:g}; batch {OptimConfig().batch_size}. Accuracy is the mean ± std "
            "over seeds of runs that did not diverge (a single run: its accuracy).\n"
        )
        md += [train_table(sections["train"]), "", *_diverged_lines(sections["train"])]
        md += [PAPER_TRAIN_NOTE, ""]
    if sections["divergence"]:
        md.append("## 3. Trajectory divergence (introductory experiment)\n")
        md.append(
            f"Two SGD runs (momentum {plan.divergence_momentum:g}, lr "
            f"{DivergenceConfig.learning_rate:g}, batch {DivergenceConfig.batch_size}, MLP "
            f"width {plan.divergence_width}, depth {DivergenceConfig.depth}) from one "
            "initialisation, ReLU'(0) = 0 and = 1.\n"
        )
        md += [divergence_table(sections["divergence"]), "", PAPER_DIVERGENCE_NOTE, ""]
    if plots:
        md.append("## Plots\n")
        md += [f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in plots]
        md.append("")
    return "\n".join(md)
