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
from .collapse import STUCK_ACCURACY
from .config import DEFAULT_LEARNING_RATES, OptimConfig
from .experiments import INTERVAL, DivergenceConfig, wilson_interval
from .plan import (
    MNIST_IMAGES,
    PAPER_BASE,
    PAPER_BATCH,
    PAPER_DEPTH,
    PAPER_EXPOSURE,
    PAPER_WIDTH,
    Plan,
    hazard,
    volume_rows,
)

__all__ = [
    "ACCUMULATE_HARDWARE",
    "PAPER_FIGURES",
    "accumulate_table",
    "answer",
    "collapse_layer_table",
    "collapse_table",
    "divergence_table",
    "exposure_table",
    "fmt_accuracy",
    "fmt_first",
    "fmt_kink",
    "fmt_p",
    "markdown",
    "paper_figures_table",
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

EXPOSURE_NOTE = """If every image carries the same small chance λ of an exact zero that splits the
gradients, P = 1 − exp(−λN) after N images: the paper's probability hardly depends on the
batch size (0.35–0.49 from batch 16 to 1024), as this model says. The hazard's interval
comes from the Wilson interval of P; the last column converts the paper's hazard to each
row's number of distinct images. More images than the training set means repeated passes
over the same images: nothing is trained between passes, so each image gives the same
pre-activations every time and adds no new chance of an exact zero; 60,000 distinct images
(MNIST through `--data`) are needed to compare with the paper directly."""

PAPER_COLLAPSE_NOTE = """The paper (section 4, ResNet18 on CIFAR10, SGD, 200 epochs, learning rate
tuned per value): without batch norm ReLU'(0) = 0 → 90.14%, 0.1 → 89.07%, 0.2 → 86.34%, ≥ 0.3 →
most runs stuck at 10%; with batch norm 0 → 91.87%, 0.5 → 90.92%, 1 → 89.81%. Comparable in
kind, not in level (network, data, epochs and one untuned learning rate differ)."""

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
    head = ["dtype", "accumulate", "width", "depth", "batch", "images", "inits", "in zone"]
    head += ["P (95% CI)", "minibatches that differ", "relative L2", "seconds"]
    body = [
        [
            r["dtype"],
            r.get("accumulate", "native"),
            str(r["width"]),
            str(r["depth"]),
            str(r["batch_size"]),
            _table.fmt_value(r.get("images"), 0),
            str(r["inits"]),
            str(r["in_zone"]),
            fmt_p(r),
            f"{r['minibatch_rate']:.3f}",
            _fmt_sci(r["relative_l2"]),
            f"{r['seconds']:.2f}",
        ]
        for r in rows
    ]
    return _table.render(head, body, style=style, right=range(2, 12))


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
    by = _standard(rows)
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


def fmt_kink(s: float | str) -> str:
    """A ReLU'(0) value: a number (``0.5``) or the rule's name (``lexicographic``)."""
    return s if isinstance(s, str) else f"{s:g}"


def _kink_order(s: float | str) -> tuple[int, float]:
    return (1, 0.0) if isinstance(s, str) else (0, float(s))


def _train_groups(rows: list[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        key = (
            r["model"],
            r["dtype"],
            r.get("accumulate", "native"),
            r["batchnorm"],
            r["optimizer"],
            r["kink_grad"],
        )
        groups.setdefault(key, []).append(r)
    return dict(sorted(groups.items(), key=lambda kv: (kv[0][:5], _kink_order(kv[0][5]))))


def train_table(rows: list[dict[str, Any]], style: str = "markdown") -> str:
    """Accuracy by model, precision, batch norm, optimizer and ReLU'(0), over seeds."""
    groups = _train_groups(rows)
    wide = any(k[2] != "native" for k in groups)  # an accumulation column only if it varies
    head = ["model", "precision", *(["accumulate"] if wide else []), "batch norm", "optimizer"]
    head += ["ReLU'(0)", "test accuracy (mean ± std over seeds)", "runs", "diverged"]
    head += ["zero hits (rate)", "bifurcation steps"]
    body = []
    for key, g in groups.items():
        acc = [r["test_accuracy"] for r in g if r["status"] == "ok"]
        rate = float(np.mean([r["zero_hit_rate"] for r in g]))
        body.append(
            [
                key[0],
                key[1],
                *([key[2]] if wide else []),
                "on" if key[3] else "off",
                key[4],
                fmt_kink(key[5]),
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


# -------------------------------------------------- exposure, accumulation, collapse


def _standard(rows: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    return {
        (r["dtype"], r["width"], r["depth"], r["batch_size"]): r for r in volume_rows(rows, "sweep")
    }


def _fmt_rate(lam: tuple[float, float, float]) -> str:
    val, lo, hi = (MISSING if not np.isfinite(v) else f"{v:.2e}" for v in lam)
    return f"{val} [{lo}, {hi}]"


def _predicted(lam: tuple[float, float, float], images: int) -> tuple[float, ...]:
    return tuple(1.0 - float(np.exp(-v * images)) for v in lam)


def exposure_table(
    rows: list[dict[str, Any]], plan: Plan, n_train: int, data_name: str, style: str = "markdown"
) -> str | None:
    """The paper's 32-bit headline beside ours at matched exposure: the per-image hazard
    :func:`~jaxrelu.study.plan.hazard` (interval carried through from the Wilson
    interval), the paper's figure converted to one pass over ``data_name`` and to our
    exposure cell, and ours measured (one pass, and as many images as one MNIST pass)."""
    paper = PAPER_EXPOSURE
    lam_paper = hazard(
        round(paper["probability"] * paper["inits"]), paper["inits"], paper["images"]
    )
    by = _standard(rows)
    b = plan.volume_base
    candidates = [
        ("float32", b["width"], b["depth"], b["batch_size"]),
        ("float32", paper["width"], paper["depth"], paper["batch_size"]),
    ]
    one_pass = [by[k] for k in dict.fromkeys(candidates) if k in by]
    exposed = [r for r in volume_rows(rows, "exposure") if r["dtype"] == "float32"]
    if not one_pass and not exposed:
        return None
    head = [
        "setting",
        "images per initialisation",
        "P(θ ∈ S01) (95% CI)",
        "per-image hazard λ (95% CI)",
        "paper converted to this exposure",
    ]
    p_lo, p_hi = wilson_interval(round(paper["probability"] * paper["inits"]), paper["inits"])
    body = [
        [
            f"paper, MNIST, w{paper['width']} d{paper['depth']} b{paper['batch_size']}, "
            f"{paper['inits']} inits",
            f"{paper['images']:,}",
            _table.fmt_interval(paper["probability"], [p_lo, p_hi]),
            _fmt_rate(lam_paper),
            "-",
        ]
    ]
    for r in [*one_pass, *exposed]:
        images = r.get("images") or n_train
        # repeated passes show each image again with the same parameters: the same
        # pre-activations, no new chance of an exact zero; the hazard counts distinct images
        distinct = min(images, n_train)
        pred = _predicted(lam_paper, distinct)
        body.append(
            [
                f"ours, {data_name}, w{r['width']} d{r['depth']} b{r['batch_size']}, "
                f"{r['inits']} inits",
                f"{images:,}" if distinct == images else f"{images:,} ({distinct:,} distinct)",
                fmt_p(r),
                _fmt_rate(hazard(r["in_zone"], r["inits"], distinct)),
                f"{pred[0]:.3f} [{pred[1]:.3f}, {pred[2]:.3f}]",
            ]
        )
    return _table.render(head, body, style=style)


ACCUMULATE_HARDWARE = {
    "native": "JAX/XLA `x @ w + b` in 16 bits: the product rounded to 16 bits, then the "
    "bias addition rounded again (on CPU and wherever the bias add is a separate operation)",
    "float32": "one rounding of product plus bias, accumulated in float32: PyTorch's CPU "
    "`nn.Linear` (fused addmm), fused GEMM-with-bias kernels; GPU tensor cores accumulate "
    "16-bit products in float32",
}
"""Which hardware and libraries round a 16-bit layer each way."""


def accumulate_table(rows: list[dict[str, Any]], plan: Plan, style: str = "markdown") -> str | None:
    """P(θ ∈ S01) of the base cell at 16 bits under both accumulation modes."""
    b = plan.volume_base
    base = (b["width"], b["depth"], b["batch_size"])
    wide = {
        r["dtype"]: r
        for r in volume_rows(rows, "accumulate")
        if (r["width"], r["depth"], r["batch_size"]) == base
    }
    if not wide:
        return None
    by = _standard(rows)
    head = ["precision", "native (two roundings)", "float32 accumulation (one rounding)"]
    body = [[dt, fmt_p(by.get((dt, *base))), fmt_p(r)] for dt, r in wide.items()]
    return _table.render(head, body, style=style)


def _collapse_groups(rows: list[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["dtype"], r["batchnorm"], r["kink_grad"]), []).append(r)
    order = lambda kv: (kv[0][0] != "float32", kv[0][0], kv[0][1], _kink_order(kv[0][2]))
    return dict(sorted(groups.items(), key=order))


def collapse_table(rows: list[dict[str, Any]], style: str = "markdown") -> str:
    """The collapse experiment by precision, batch norm and ReLU'(0), over seeds."""
    head = [
        "precision",
        "batch norm",
        "ReLU'(0)",
        "final test accuracy (mean ± std)",
        "collapsed",
        "exact zeros (rate)",
        "live ties (rate)",
        "gradient through ties (mean / max rel. L2)",
        "bifurcation steps",
    ]
    body = []
    for (dt, bn, s), g in _collapse_groups(rows).items():
        acc = [r["test_accuracy"] for r in g if r["test_accuracy"] is not None]
        body.append(
            [
                dt,
                "on" if bn else "off",
                fmt_kink(s),
                fmt_accuracy(acc),
                f"{sum(r['collapsed'] for r in g)}/{len(g)}",
                *_tie_columns(g),
                str(sum(r["bifurcation_steps"] for r in g)),
            ]
        )
    return _table.render(head, body, style=style)


def _tie_columns(g: list[dict[str, Any]]) -> list[str]:
    """Exact zeros, live ties (mean rate per evaluation over layers) and the gradient
    through ties (mean / max), over a group of collapse rows."""
    live = [float(np.mean(r["live_tie_rate_by_layer"] or [0.0])) for r in g]
    return [
        f"{np.mean([r['zero_hit_rate'] for r in g]):.1e}",
        f"{np.mean(live):.1e}",
        f"{np.mean([r['tie_gradient_mean'] for r in g]):.1e} / "
        f"{max(r['tie_gradient_max'] for r in g):.1e}",
    ]


def collapse_sweep_table(rows: list[dict[str, Any]], style: str = "markdown") -> str:
    """One line per network (precision, batch norm, blocks per stage, channels), over
    seeds: how often exact zeros and live ties occur, how much gradient flows through the
    ties, and how far apart the ReLU'(0) values end (the spread of their mean final
    accuracies, and collapsed runs): where the effect starts as the network grows."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        key = (r["dtype"], r["batchnorm"], r["depth"], tuple(r["channels"]))
        groups.setdefault(key, []).append(r)
    order = lambda kv: (kv[0][0] != "float32", kv[0][0], kv[0][1], kv[0][2], kv[0][3])
    head = [
        "precision",
        "batch norm",
        "blocks per stage",
        "channels",
        "convolutions",
        "exact zeros (rate)",
        "live ties (rate)",
        "gradient through ties (mean / max)",
        "final accuracy by ReLU'(0) (mean over seeds)",
        "spread",
        "collapsed",
    ]
    body = []
    for (dt, bn, depth, ch), g in sorted(groups.items(), key=order):
        by_kink: dict[float | str, list[float]] = {}
        for r in g:
            acc = r["test_accuracy"]
            by_kink.setdefault(r["kink_grad"], []).append(0.0 if acc is None else acc)
        means = {k: float(np.mean(v)) for k, v in by_kink.items()}
        accs = ", ".join(f"{fmt_kink(k)}: {means[k]:.2f}" for k in sorted(means, key=_kink_order))
        body.append(
            [
                dt,
                "on" if bn else "off",
                str(depth),
                ",".join(map(str, ch)),
                str(g[0]["convolutions"]),
                *_tie_columns(g),
                accs,
                f"{max(means.values()) - min(means.values()):.2f}",
                f"{sum(r['collapsed'] for r in g)}/{len(g)}",
            ]
        )
    return _table.render(head, body, style=style)


def collapse_layer_table(rows: list[dict[str, Any]], style: str = "markdown") -> str:
    """Exact zeros and live ties per activation layer (mean over ReLU'(0) values, seeds
    and steps), one column pair per precision and batch norm setting."""
    settings: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        settings.setdefault((r["dtype"], r["batchnorm"]), []).append(r)
    settings = dict(sorted(settings.items(), key=lambda kv: (kv[0][0] != "float32", kv[0])))
    n = max(len(r["zero_hit_rate_by_layer"]) for r in rows)
    head = ["layer"]
    cols = []
    for (dt, bn), g in settings.items():
        tag = f"{dt} {'BN' if bn else 'no BN'}"
        head += [f"{tag}: zeros", f"{tag}: live"]
        cols.append(np.mean([r["zero_hit_rate_by_layer"] for r in g], axis=0))
        cols.append(np.mean([r["live_tie_rate_by_layer"] or [0.0] * n for r in g], axis=0))
    names = ["1 (stem)"] + [
        f"{i + 2} (block {i // 2 + 1}, {'conv1' if i % 2 == 0 else 'sum'})" for i in range(n - 1)
    ]
    body = [[names[i]] + [f"{c[i]:.1e}" for c in cols] for i in range(n)]
    return _table.render(head, body, style=style)


def answer(sections: dict[str, list], plan: Plan, n_train: int, name: str) -> list[str]:
    """The first section: when ReLU'(0) matters and when it does not, with this run's
    numbers (each sentence only where its experiment ran). Long because it is one
    paragraph per experiment, read top to bottom like the text it writes."""
    lines: list[str] = []
    vol = sections.get("volume", [])
    by = _standard(vol)
    b = plan.volume_base
    base = (b["width"], b["depth"], b["batch_size"])
    f32 = by.get(("float32", *base))
    f64 = by.get(("float64", *base))
    if f32 is not None:
        paper = PAPER_EXPOSURE
        lam = hazard(round(paper["probability"] * paper["inits"]), paper["inits"], paper["images"])
        pred = _predicted(lam, n_train)
        exposed = [r for r in volume_rows(vol, "exposure") if r["dtype"] == "float32"]
        text = (
            f"**In exact arithmetic it never matters; in floating point it matters only at "
            f"exact zeros.** At 32 bits, {f32['in_zone']} of {f32['inits']} random "
            f"initialisations (P = {fmt_p(f32)}) reach a minibatch of one pass over {name} "
            f"({n_train:,} images) where ReLU'(0) = 0 and = 1 give different gradients; the "
            f"paper's 0.478 over 60,000 MNIST images, read as a per-image hazard, predicts "
            f"{pred[0]:.3f} [{pred[1]:.3f}, {pred[2]:.3f}] for that exposure."
        )
        if exposed:
            e = exposed[0]
            pe = _predicted(lam, min(e["images"], n_train))
            same = " (as many as one MNIST pass)" if e["images"] == MNIST_IMAGES else ""
            text += (
                f" Over {e['images']:,} images per initialisation{same} we measure "
                f"{fmt_p(e)}, against {pe[0]:.3f} [{pe[1]:.3f}, {pe[2]:.3f}] from the "
                "paper's hazard."
            )
            if e["images"] > n_train:
                text += (
                    f" Those are repeated passes over the same {n_train:,} images: nothing "
                    "is trained between passes, so each image gives the same "
                    "pre-activations every time and repetition adds no new chance of an "
                    "exact zero; the hazard counts distinct images, and matching the "
                    "paper's 60,000 needs 60,000 distinct images (MNIST through `--data`)."
                )
        if f64 is not None:
            text += f" At 64 bits: {fmt_p(f64)}."
        lines.append(text)
    lo16 = [(dt, by.get((dt, *base))) for dt in ("float16", "bfloat16")]
    wide = {r["dtype"]: r for r in volume_rows(vol, "accumulate")}
    parts = [
        f"{dt} {fmt_p(r)} with native rounding"
        + (f", {fmt_p(wide[dt])} with float32 accumulation" if dt in wide else "")
        for dt, r in lo16
        if r is not None
    ]
    if parts:
        lines.append(
            "**At 16 bits the zone is hit almost surely, and how a layer is rounded decides "
            "how often:** " + "; ".join(parts) + " (the modes and the hardware that uses "
            "each are in section 1)."
        )
    col = sections.get("collapse", [])
    if col:
        lines.append(_collapse_answer(col))
    spread = _spread(sections.get("train", []))
    if spread:
        gaps = " and ".join(f"{100 * v:.2f} points at {dt}" for dt, v in sorted(spread.items()))
        lines.append(
            f"**In training the MLP, the value changes the final accuracy by at most {gaps}** "
            "(largest difference between ReLU'(0) values of one setting, mean over seeds; "
            "section 2)."
        )
    return lines


def _spread(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Per precision, the largest difference in mean accuracy between kink values of one
    setting (runs that did not diverge)."""
    out: dict[str, float] = {}
    settings: dict[tuple, dict] = {}
    for key, g in _train_groups(rows).items():
        acc = [r["test_accuracy"] for r in g if r["status"] == "ok"]
        if acc:
            settings.setdefault(key[:5], {})[key[5]] = float(np.mean(acc))
    for key, means in settings.items():
        if len(means) > 1:
            gap = max(means.values()) - min(means.values())
            out[key[1]] = max(out.get(key[1], 0.0), gap)
    return out


def _collapsed(rows: list[dict[str, Any]], keep) -> str:
    sel = [r for r in rows if keep(r["kink_grad"])]
    return f"{sum(r['collapsed'] for r in sel)}/{len(sel)}"


def _share(rows: list[dict[str, Any]], keep) -> float:
    sel = [r["collapsed"] for r in rows if keep(r["kink_grad"])]
    return sum(sel) / len(sel) if sel else 0.0


def _paper_pattern(rows: list[dict[str, Any]]) -> bool:
    """The paper's collapse in one setting: at least half the runs at ReLU'(0) >= 0.3
    stuck, none at 0, and fewer at 0.1 and 0.2 than at >= 0.3."""
    high = _share(rows, lambda s: not isinstance(s, str) and s >= 0.3)
    low = _share(rows, lambda s: s in (0.1, 0.2))
    return high >= 0.5 and _share(rows, lambda s: s == 0.0) == 0.0 and low < high


def _collapse_answer(col: list[dict[str, Any]]) -> str:
    high = lambda s: not isinstance(s, str) and s >= 0.3
    zero = lambda s: s == 0.0
    lexi = lambda s: isinstance(s, str)
    settings = _by_setting(col)
    name = lambda k: f"{k[0]} {'with' if k[1] else 'without'} batch norm"
    pattern = [name(k) for k, g in settings.items() if _paper_pattern(g)]
    stuck = [name(k) for k, g in settings.items() if any(r["collapsed"] for r in g)]
    if pattern:
        verdict = f"**The paper's collapse at ReLU'(0) ≥ 0.3 appears here** ({', '.join(pattern)})"
    elif stuck:
        verdict = (
            f"**Stuck runs appear ({', '.join(stuck)}), but not the paper's collapse at "
            "ReLU'(0) ≥ 0.3**: they are not confined to ReLU'(0) ≥ 0.3"
        )
    else:
        verdict = "**The paper's training collapse does not appear here**"
    parts = []
    for (dt, bn), g in _by_setting(col).items():
        means: dict[Any, list] = {}
        for r in g:
            if r["test_accuracy"] is not None:
                means.setdefault(r["kink_grad"], []).append(r["test_accuracy"])
        avg = [float(np.mean(v)) for v in means.values()]
        spread = f"mean accuracy {min(avg):.3f} to {max(avg):.3f}" if avg else "no accuracy"
        by_seed: dict[int, set] = {}
        for r in g:
            by_seed.setdefault(r["seed"], set()).add(r["test_accuracy"])
        same = sum(len(v) == 1 for v in by_seed.values())
        live = float(np.mean([np.mean(r["live_tie_rate_by_layer"] or [0.0]) for r in g]))
        grad = max(r["tie_gradient_max"] for r in g)
        parts.append(
            f"{dt} {'with' if bn else 'without'} batch norm: {spread} across values (all "
            f"values end identical for {same} of {len(by_seed)} seeds); collapsed "
            f"runs {_collapsed(g, zero)} at 0, {_collapsed(g, lambda s: s in (0.1, 0.2))} at "
            f"0.1–0.2, {_collapsed(g, high)} at ≥ 0.3"
            + (f", {_collapsed(g, lexi)} lexicographic" if any(lexi(r["kink_grad"]) for r in g)
               else "")
            + f"; live ties {live:.1e} per evaluation, gradient through ties at most "
            f"{grad:.1e} of its norm"
        )  # fmt: skip
    return (
        f"{verdict} (bias-free residual CNN, SGD with momentum, every ReLU'(0) and the "
        f"lexicographic rule in lockstep from one initialisation; collapsed: final accuracy ≤ "
        f"{STUCK_ACCURACY:g}). " + "; ".join(parts) + ". Exact zeros are frequent (zero padding, "
        "dead units), but most are structural: no parameter moves them, so no value of "
        "ReLU'(0) changes a gradient through them (section 3)."
    )


def _by_setting(rows: list[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    out: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault((r["dtype"], r["batchnorm"]), []).append(r)
    return out


PAPER_FIGURES = (
    (
        "P(θ ∈ S01), MNIST MLP, 16/32/64 bit (section 3)",
        "section 1 tables, same protocol",
        "comparable in ordering; the level depends on the images seen (matched-exposure table)",
    ),
    (
        "0.478 at w256 d3 b256, 1000 inits (section 3)",
        "matched-exposure table",
        "comparable per distinct image (the hazard): digits has 1,437; passes repeated over "
        "them add no new exact zeros, so 60,000 images seen is not 60,000 images' exposure; "
        "a direct comparison needs 60,000 distinct images (MNIST through --data)",
    ),
    (
        "depth, width and batch sweeps (section 3)",
        "section 1 sweep tables",
        "comparable in trend; ours see 1,437 images per initialisation, theirs 60,000",
    ),
    (
        "ResNet18 / CIFAR10 / SGD, no BN: 0 → 90.14%, 0.1 → 89.07%, 0.2 → 86.34%, ≥ 0.3 "
        "stuck at 10%; with BN 91.87 / 90.92 / 89.81% (section 4)",
        "section 3 (collapse)",
        "comparable in kind only: a 10-convolution residual CNN on 8×8 digits, not ResNet18 on "
        "CIFAR10; the accuracy levels are not comparable",
    ),
    (
        "MNIST MLP 2048×3, SGD, with and without BN (section 4)",
        "section 2",
        "comparable in kind: width 256 on digits, 10 epochs instead of 200",
    ),
    (
        "VGG11 / SVHN / Adam: 96.11 vs 95.82% (section 4)",
        "-",
        "not comparable: no VGG or SVHN "
        "run (the study's data are built in); section 2's Adam runs are MLPs",
    ),
    (
        "ImageNet ResNet50: > 10 points better with 0 than 1",
        "-",
        "not comparable: no ImageNet run on 2 CPU cores",
    ),
    (
        "exact zeros over 100 epochs of MNIST SGD: 8.4e-8 (16 bit), 2.9e-9 (32 bit)",
        "section 2 zero-hit rates",
        "comparable in kind: digits MLP over 10 epochs",
    ),
    (
        "L1 distance jumps away from 0 at 32 bits (introductory experiment)",
        "section 4",
        "comparable: same protocol, digits, width 256",
    ),
)
"""Every figure of the paper the report quotes: where ours is, and whether it compares."""


def paper_figures_table(style: str = "markdown") -> str:
    return _table.render(
        ["paper figure", "ours", "comparable?"], [list(r) for r in PAPER_FIGURES], style=style
    )


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
        "published figures (Bertoin et al. 2021), quoted for comparison; the last section "
        "says, for each of them, which of ours it compares with, or why none does. MNIST has "
        "42× more training images than digits: the matched-exposure table compares the "
        "32-bit probabilities at equal numbers of images. Their PyTorch ReLU wrote the "
        "constant α at exact zeros instead of α × the upstream gradient; jaxrelu applies the "
        "chain rule (α × upstream).",
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
    """The text of ``report.md`` for the ``results.json`` document ``doc``. Long because
    it lays out the report's sections in their order, each a few calls; the tables and
    sentences come from the functions above."""
    md = _header(doc, quick)
    name = doc["dataset"]["name"]
    n_train = int(doc["dataset"]["train"])
    level = f"{100 * INTERVAL['level']:.0f}%"
    summary = answer(sections, plan, n_train, name)
    if summary:
        md.append("## Does ReLU'(0) matter? What this run says\n")
        md += [f"- {line}" for line in summary]
        md.append("")
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
        exposure = exposure_table(sections["volume"], plan, n_train, name)
        if exposure:
            md += [
                "### Matched exposure: the paper's 32-bit headline at equal numbers of images",
                "",
                EXPOSURE_NOTE,
                "",
                exposure,
                "",
            ]
        wide = accumulate_table(sections["volume"], plan)
        if wide:
            b = plan.volume_base
            md += [
                f"### 16 bits: how a layer is rounded (width {b['width']}, depth "
                f"{b['depth']}, batch {b['batch_size']}, {plan.inits} initialisations)",
                "",
                wide,
                "",
            ]
            md += [f"- **{k}**: {v}." for k, v in ACCUMULATE_HARDWARE.items()]
            md.append("")
    if sections["train"]:
        settings = {
            "sgd": f"SGD: momentum {plan.train_momentum:g}, lr {DEFAULT_LEARNING_RATES['sgd']:g}",
            "adam": f"Adam: lr {DEFAULT_LEARNING_RATES['adam']:g}",
        }
        used = "; ".join(v for k, v in settings.items() if k in plan.train_optimizers)
        md.append(f"## 2. Training with different ReLU'(0) (section 4), {plan.epochs} epochs\n")
        md.append(
            "All ReLU'(0) values of a row group train in lockstep from one initialisation "
            f"on the same minibatches. MLP width {plan.train_width}. {used}; batch "
            f"{OptimConfig().batch_size}. Accuracy is the mean ± std over seeds of runs that "
            "did not diverge (a single run: its accuracy).\n"
        )
        md += [train_table(sections["train"]), "", *_diverged_lines(sections["train"])]
        md += [PAPER_TRAIN_NOTE, ""]
    col = sections.get("collapse", [])
    if col:
        first = col[0]
        epochs = ", ".join(
            f"{e} epochs at {dt}" for dt, e in dict.fromkeys((r["dtype"], r["epochs"]) for r in col)
        )
        md.append(f"## 3. The training collapse: a bias-free residual CNN ({epochs})\n")
        md.append(
            f"Residual CNN without biases before activations (channels {first['channels']}, "
            f"{first['depth']} blocks per stage, {first['convolutions']} convolutions, zero "
            f"padding, He init), SGD: lr {first['learning_rate']:g}, momentum "
            f"{first['momentum']:g}, weight decay {first['weight_decay']:g}, batch "
            f"{first['batch_size']}; every ReLU'(0) and the lexicographic rule train in "
            f"lockstep from one initialisation on the same minibatches; "
            f"{len({r['seed'] for r in col})} seeds. *Collapsed*: final test accuracy ≤ "
            f"{STUCK_ACCURACY:g}. *Live ties*: exact zeros whose gradient row with respect to "
            "the parameters may be nonzero (the others are structural: no value of ReLU'(0) "
            "changes a gradient through them). *Gradient through ties*: ‖g₁ − g₀‖/‖g₀‖ of the "
            "gradients with ReLU'(0) = 1 and = 0, per step (0 without live ties). The "
            "learning rate is the same for every value and not tuned: where a setting is far "
            "from trained after these epochs (compare its accuracies with batch norm's), a "
            "run counted as collapsed may only be a slow start.\n"
        )
        md += [
            collapse_table(col),
            "",
            "Rates per activation layer:",
            "",
            collapse_layer_table(col),
            "",
            PAPER_COLLAPSE_NOTE,
            "",
        ]
    if sections["divergence"]:
        md.append("## 4. Trajectory divergence (introductory experiment)\n")
        md.append(
            f"Two SGD runs (momentum {plan.divergence_momentum:g}, lr "
            f"{DivergenceConfig.learning_rate:g}, batch {DivergenceConfig.batch_size}, MLP "
            f"width {plan.divergence_width}, depth {DivergenceConfig.depth}) from one "
            "initialisation, ReLU'(0) = 0 and = 1.\n"
        )
        md += [divergence_table(sections["divergence"]), "", PAPER_DIVERGENCE_NOTE, ""]
    md += ["## Paper figures and ours\n", paper_figures_table(), ""]
    if plots:
        md.append("## Plots\n")
        md += [f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in plots]
        md.append("")
    return "\n".join(md)
