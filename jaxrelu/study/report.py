"""``jaxrelu reproduce``: the paper-mirroring set of experiments, resumable, with a report.

Every finished configuration is written atomically to ``OUT/runs/`` as it completes;
rerunning with the same ``--out`` skips those. At the end (and after each section) the
report is rebuilt from all finished configurations: ``OUT/report.md``,
``OUT/results.json`` and PNG plots.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import math
import os
import platform
import tempfile
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from .. import __version__
from . import experiments as study
from .data import Dataset
from .progress import Progress

# ---------------------------------------------------------------- the paper's numbers
# Bertoin et al., NeurIPS 2021, MNIST MLP, P(theta in S01) out of 1000 initialisations
# (see REFERENCE: section 3). Quoted for comparison only; never mixed with ours.
PAPER_DEPTH = {
    1: (0.871, 0.054, 0.0),
    2: (0.999, 0.258, 0.0),
    3: (1.0, 0.463, 0.0),
    5: (1.0, 0.647, 0.0),
    6: (1.0, 0.697, 0.0),
}
PAPER_WIDTH = {
    16: (0.333, 0.021, 0.0),
    64: (1.0, 0.163, 0.0),
    256: (1.0, 0.478, 0.0),
    512: (1.0, 0.582, 0.0),
    1024: (1.0, 0.873, 0.0),
}
PAPER_BATCH = {
    16: (1.0, 0.439),
    64: (1.0, 0.453),
    256: (1.0, 0.488),
    512: (1.0, 0.351),
    1024: (1.0, 0.384),
}
PAPER_BASE = {"float16": 1.0, "float32": 0.445, "float64": 0.0}  # stored run: batch 100, 200 inits


@dataclasses.dataclass(frozen=True)
class Plan:
    """What ``reproduce`` runs."""

    volume_base: dict[str, Any]
    volume_dtypes: tuple[str, ...]
    depths: tuple[int, ...]
    widths: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    sweep_dtypes: tuple[str, ...]
    batch_dtypes: tuple[str, ...]
    inits: int
    train_kinks: tuple[float, ...]
    train_dtypes: tuple[str, ...]
    train_optimizers: tuple[str, ...]
    train_batchnorm: tuple[bool, ...]
    seeds: tuple[int, ...]
    epochs: int
    train_width: int
    cnn: bool
    cnn_dtypes: tuple[str, ...]
    divergence_dtypes: tuple[str, ...]
    divergence_steps: int
    train_momentum: float = 0.9
    divergence_width: int = 256
    divergence_momentum: float = 0.0


QUICK = Plan(
    volume_base={"width": 64, "depth": 2, "batch_size": 128},
    volume_dtypes=("float16", "bfloat16", "float32", "float64"),
    depths=(),
    widths=(),
    batch_sizes=(),
    sweep_dtypes=(),
    batch_dtypes=(),
    inits=16,
    train_kinks=(0.0, 1.0),
    train_dtypes=("float16", "float32"),
    train_optimizers=("sgd",),
    train_batchnorm=(False,),
    seeds=(0,),
    epochs=4,
    train_width=64,
    cnn=False,
    cnn_dtypes=(),
    divergence_dtypes=("float16", "float32", "float64"),
    divergence_steps=30,
    # the divergence runs use the training runs' network and optimizer: one compilation
    divergence_width=64,
    divergence_momentum=0.9,
)

FULL = Plan(
    volume_base={"width": 256, "depth": 3, "batch_size": 128},
    volume_dtypes=("float16", "bfloat16", "float32", "float64"),
    depths=(1, 2, 3, 5, 6),
    widths=(16, 64, 256, 512, 1024),
    batch_sizes=(16, 64, 128, 256, 512),
    sweep_dtypes=("float16", "float32", "float64"),
    batch_dtypes=("float16", "float32"),
    inits=100,
    train_kinks=(0.0, 0.5, 1.0),
    train_dtypes=("float16", "float32"),
    train_optimizers=("sgd", "adam"),
    train_batchnorm=(False, True),
    seeds=(0, 1, 2),
    epochs=10,
    train_width=256,
    cnn=True,
    cnn_dtypes=("float32", "float16"),
    divergence_dtypes=("float16", "bfloat16", "float32", "float64"),
    divergence_steps=100,
)


def _volume_jobs(plan: Plan) -> list[dict[str, Any]]:
    jobs, seen = [], set()

    def add(dtype, width, depth, batch):
        key = (dtype, width, depth, batch)
        if key not in seen:
            seen.add(key)
            jobs.append(
                {
                    "dtype": dtype,
                    "width": width,
                    "depth": depth,
                    "batch_size": batch,
                    "inits": plan.inits,
                    "seed": 0,
                }
            )

    b = plan.volume_base
    for dt in plan.volume_dtypes:
        add(dt, b["width"], b["depth"], b["batch_size"])
    for dt in plan.sweep_dtypes:
        for d in plan.depths:
            add(dt, b["width"], d, b["batch_size"])
        for w in plan.widths:
            add(dt, w, b["depth"], b["batch_size"])
    for dt in plan.batch_dtypes:
        for bs in plan.batch_sizes:
            add(dt, b["width"], b["depth"], bs)
    return jobs


def _train_jobs(plan: Plan) -> list[dict[str, Any]]:
    jobs = []
    for dt in plan.train_dtypes:
        for bn in plan.train_batchnorm:
            for opt in plan.train_optimizers:
                for seed in plan.seeds:
                    jobs.append(
                        {
                            "model": "mlp",
                            "dtype": dt,
                            "batchnorm": bn,
                            "optimizer": opt,
                            "seed": seed,
                            "epochs": plan.epochs,
                            "kink_grads": list(plan.train_kinks),
                            "width": plan.train_width,
                            "momentum": plan.train_momentum,
                        }
                    )
    if plan.cnn:
        for dt in plan.cnn_dtypes:
            for bn in (False, True):
                for seed in plan.seeds[:2]:
                    jobs.append(
                        {
                            "model": "cnn",
                            "dtype": dt,
                            "batchnorm": bn,
                            "optimizer": "sgd",
                            "seed": seed,
                            "epochs": plan.epochs,
                            "kink_grads": [0.0, 1.0],
                            "init": "he",
                        }
                    )
    return jobs


def _divergence_jobs(plan: Plan) -> list[dict[str, Any]]:
    return [
        {
            "dtype": dt,
            "steps": plan.divergence_steps,
            "width": plan.divergence_width,
            "momentum": plan.divergence_momentum,
        }
        for dt in plan.divergence_dtypes
    ]


# ------------------------------------------------------------------- persistence


def _job_id(experiment: str, job: dict[str, Any], data_name: str) -> str:
    text = json.dumps({"experiment": experiment, "data": data_name, **job}, sort_keys=True)
    return f"{experiment}-{hashlib.sha1(text.encode()).hexdigest()[:12]}"


def atomic_write(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` so that readers see either the old or the new file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def check_writable(out: str) -> None:
    """Raises a one-line error if ``out`` cannot be created or written."""
    try:
        os.makedirs(out, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out, prefix=".probe-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        raise ValueError(f"--out {out!r} is not writable ({err.strerror or err})") from err


def machine_info() -> dict[str, str]:
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
        "devices": str(len(jax.devices())),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "jax_version": jax.__version__,
        "python": platform.python_version(),
    }


class Runner:
    """Runs jobs, skipping the ones already saved, saving each as it finishes."""

    def __init__(self, out: str, data: Dataset, progress: bool = True):
        self.out = out
        self.data = data
        self.progress = progress
        self.runs_dir = os.path.join(out, "runs")
        os.makedirs(self.runs_dir, exist_ok=True)

    def run(self, experiment: str, jobs: list[dict], fn: Callable[[dict], Any]) -> list[dict]:
        results = []
        bar = Progress(len(jobs), experiment, "config", self.progress)
        try:
            for job in jobs:
                path = os.path.join(
                    self.runs_dir, _job_id(experiment, job, self.data.name) + ".json"
                )
                if os.path.exists(path):
                    with open(path) as fh:
                        results.append(json.load(fh))
                    bar.update("(saved earlier)")
                    continue
                rows = fn(job)
                record = {"experiment": experiment, "job": job, "rows": rows}
                atomic_write(path, json.dumps(record, default=_json_default))
                results.append(record)
                bar.update()
        finally:
            bar.close()
        return results


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if not math.isfinite(float(o)) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# ---------------------------------------------------------------------- the tables


def _fmt_p(row: dict | None) -> str:
    if row is None:
        return "-"
    lo, hi = row["ci"]
    return f"{row['probability']:.3f} [{lo:.2f}, {hi:.2f}]"


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def volume_tables(rows: list[dict], plan: Plan, data_name: str) -> list[tuple[str, str]]:
    by = {(r["dtype"], r["width"], r["depth"], r["batch_size"]): r for r in rows}
    b = plan.volume_base
    W, D, B = b["width"], b["depth"], b["batch_size"]
    tables = []
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
        r = by.get((dt, W, D, B))
        if r is None:
            continue
        rel = "-" if r["relative_l2"] is None else f"{r['relative_l2']:.2e}"
        paper = PAPER_BASE.get(dt)
        body.append(
            [
                dt,
                _fmt_p(r),
                f"{r['minibatch_rate']:.3f}",
                rel,
                f"{r['zero_hit_rate']:.3f}",
                f"{r['seconds']:.2f}",
                "-" if paper is None else f"{paper:.3f}",
            ]
        )
    title = (
        f"Volume of the bifurcation zone: MLP width {W}, depth {D}, batch {B}, "
        f"{plan.inits} initialisations, one pass"
    )
    tables.append((title, _md_table(head, body)))
    for name, values, key, paper in (
        ("depth", plan.depths, lambda v: (W, v, B), PAPER_DEPTH),
        ("width", plan.widths, lambda v: (v, D, B), PAPER_WIDTH),
    ):
        if not values:
            continue
        dts = plan.sweep_dtypes
        head = [name] + [f"ours {dt}" for dt in dts] + ["paper MNIST 16 / 32 / 64 bit"]
        body = []
        for v in values:
            cells = [str(v)] + [_fmt_p(by.get((dt, *key(v)))) for dt in dts]
            p = paper.get(v)
            cells.append("-" if p is None else " / ".join(f"{x:.3f}" for x in p))
            body.append(cells)
        fixed = f"width {W}" if name == "depth" else f"depth {D}"
        tables.append((f"P(θ ∈ S01) by {name} ({fixed}, batch {B})", _md_table(head, body)))
    if plan.batch_sizes:
        dts = plan.batch_dtypes
        head = ["batch"] + [f"ours {dt}" for dt in dts] + ["paper MNIST 16 / 32 bit"]
        body = []
        for v in plan.batch_sizes:
            cells = [str(v)] + [_fmt_p(by.get((dt, W, D, v))) for dt in dts]
            p = PAPER_BATCH.get(v)
            cells.append("-" if p is None else " / ".join(f"{x:.3f}" for x in p))
            body.append(cells)
        tables.append((f"P(θ ∈ S01) by batch size (width {W}, depth {D})", _md_table(head, body)))
    return tables


def train_table(rows: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(
            (r["model"], r["dtype"], r["batchnorm"], r["optimizer"], r["kink_grad"]), []
        ).append(r)
    head = [
        "model",
        "precision",
        "batch norm",
        "optimizer",
        "ReLU'(0)",
        "test accuracy (mean ± std)",
        "runs",
        "diverged",
        "zero hits (rate)",
        "bifurcation steps",
    ]
    body = []
    for key in sorted(groups):
        g = groups[key]
        acc = np.array([r["test_accuracy"] for r in g if r["status"] == "ok"])
        mean = f"{acc.mean():.4f} ± {acc.std():.4f}" if len(acc) else "-"
        rate = np.mean([r["zero_hit_rate"] for r in g])
        body.append(
            [
                key[0],
                key[1],
                "on" if key[2] else "off",
                key[3],
                f"{key[4]:g}",
                mean,
                str(len(g)),
                str(sum(r["status"] != "ok" for r in g)),
                f"{sum(r['zero_hits'] for r in g)} ({rate:.1e})",
                str(sum(r["bifurcation_steps"] for r in g)),
            ]
        )
    return _md_table(head, body)


def divergence_table(rows: list[dict]) -> str:
    head = [
        "precision",
        "steps",
        "first step with distance > 0",
        "L1 distance at the end",
        "steps with an exact zero (ReLU'(0)=0 run)",
    ]
    body = []
    for r in rows:
        first = "never" if r["first_divergence"] is None else str(r["first_divergence"])
        body.append(
            [
                r["dtype"],
                str(r["steps"]),
                first,
                f"{r['l1'][-1]:.3g}",
                str(sum(1 for h in r["zero_hits"] if h > 0)),
            ]
        )
    return _md_table(head, body)


PAPER_TRAIN_NOTE = """The paper's training figures (Bertoin et al. 2021, section 4; networks and
data far larger than ours, quoted for comparison only): ResNet18 / CIFAR10 / SGD without batch
norm: ReLU'(0) = 0 → 90.14%, 0.1 → 89.07%, 0.2 → 86.34%, ≥ 0.3 → most runs stuck at 10%;
with batch norm: 0 → 91.87%, 0.5 → 90.92%, 1 → 89.81%. VGG11 / SVHN / Adam without batch
norm: 0 → 96.11%, 1 → 95.82%; with batch norm ≈ 97.1–97.2% for every value. Rate of exact
zeros over 100 epochs of MNIST SGD: about 8.4e-8 at 16 bit, 2.9e-9 at 32 bit."""

PAPER_DIVERGENCE_NOTE = """The paper (introductory experiment, MNIST MLP 784-2000-128-10, batch 128,
plain SGD): the L1 distance between the weights stays 0 at 64 bits and jumps away from 0 at 32
bits at the first minibatch with an exact zero pre-activation."""


# ------------------------------------------------------------------------- plotting


def make_plots(out: str, vol: list[dict], tr: list[dict], div: list[dict], plan: Plan) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    files = []
    b = plan.volume_base
    for name, values, sel in (
        (
            "width",
            plan.widths,
            lambda r: r["depth"] == b["depth"] and r["batch_size"] == b["batch_size"],
        ),
        (
            "depth",
            plan.depths,
            lambda r: r["width"] == b["width"] and r["batch_size"] == b["batch_size"],
        ),
    ):
        if not values:
            continue
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for dt in plan.sweep_dtypes:
            pts = sorted(
                (r[name], r) for r in vol if r["dtype"] == dt and sel(r) and r[name] in values
            )
            if not pts:
                continue
            xs = [p[0] for p in pts]
            ys = [p[1]["probability"] for p in pts]
            err = [
                [max(0.0, y - p[1]["ci"][0]) for y, p in zip(ys, pts)],
                [max(0.0, p[1]["ci"][1] - y) for y, p in zip(ys, pts)],
            ]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=dt)
        if name == "width":
            ax.set_xscale("log", base=2)
        ax.set_xlabel(name)
        ax.set_ylabel("P(θ in bifurcation zone)")
        ax.set_ylim(-0.05, 1.05)
        ax.legend(fontsize=8)
        ax.set_title(f"bifurcation zone vs {name} (95% CI)")
        fig.tight_layout()
        path = os.path.join(out, f"volume_vs_{name}.png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        files.append(path)
    if tr:
        groups: dict[tuple, list[float]] = {}
        for r in tr:
            if r["status"] == "ok":
                groups.setdefault(
                    (r["model"], r["dtype"], r["batchnorm"], r["optimizer"]), {}
                ).setdefault(r["kink_grad"], []).append(r["test_accuracy"])
        fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(groups) + 2), 3.6))
        kinks = sorted({r["kink_grad"] for r in tr})
        width = 0.8 / max(len(kinks), 1)
        for j, s in enumerate(kinks):
            means = [np.mean(groups[g].get(s, [np.nan])) for g in sorted(groups)]
            stds = [np.std(groups[g].get(s, [np.nan])) for g in sorted(groups)]
            ax.bar(
                np.arange(len(groups)) + j * width, means, width, yerr=stds, label=f"ReLU'(0)={s:g}"
            )
        ax.set_xticks(np.arange(len(groups)) + 0.4 - width / 2)
        ax.set_xticklabels(
            [f"{g[0]} {g[1]}\n{'BN' if g[2] else 'no BN'} {g[3]}" for g in sorted(groups)],
            fontsize=7,
        )
        lo = min(
            (np.nanmin(np.mean(v, axis=0)) for g in groups.values() for v in g.values()), default=0
        )
        ax.set_ylim(max(0.0, lo - 0.1), 1.0)
        ax.set_ylabel("test accuracy")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = os.path.join(out, "accuracy_by_kink.png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        files.append(path)
    if div:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for r in div:
            l1 = np.asarray(r["l1"], float)
            ax.plot(np.arange(1, len(l1) + 1), np.where(l1 > 0, l1, np.nan), label=r["dtype"])
        ax.set_yscale("log")
        ax.set_xlabel("SGD step")
        ax.set_ylabel("L1 distance, ReLU'(0)=0 vs 1")
        ax.set_title("lockstep trajectories (zero distance not drawn)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(out, "divergence.png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        files.append(path)
    return files


# ------------------------------------------------------------------------- reproduce


def reproduce(
    out: str,
    data: Dataset,
    quick: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Runs the plan (quick or full), saving as it goes, and writes the report."""
    plan = QUICK if quick else FULL
    check_writable(out)
    runner = Runner(out, data, progress)
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    sections: dict[str, list[dict]] = {"volume": [], "train": [], "divergence": []}

    def finish():
        return write_report(out, data, plan, quick, sections, started)

    vol = runner.run("volume", _volume_jobs(plan), lambda j: [study.volume(data=data, **j)])
    sections["volume"] = [r for rec in vol for r in rec["rows"]]
    for title, table in volume_tables(sections["volume"], plan, data.name):
        echo(f"\n## {title}\n\n{table}")
    finish()

    def run_train(j):
        j = dict(j)
        kinks = tuple(j.pop("kink_grads"))
        return study.train_comparison(kink_grads=kinks, data=data, progress=progress, **j)

    tr = runner.run("train", _train_jobs(plan), run_train)
    sections["train"] = [r for rec in tr for r in rec["rows"]]
    echo(f"\n## Training comparison ({plan.epochs} epochs)\n\n{train_table(sections['train'])}")
    finish()
    dv = runner.run(
        "divergence", _divergence_jobs(plan), lambda j: [study.divergence(data=data, **j)]
    )
    sections["divergence"] = [r for rec in dv for r in rec["rows"]]
    echo(f"\n## Trajectory divergence\n\n{divergence_table(sections['divergence'])}")
    return finish()


def write_report(out, data, plan, quick, sections, started) -> dict[str, Any]:
    machine = machine_info()
    rows = [dict(r, experiment=name) for name, rs in sections.items() for r in rs]
    doc = {
        "jaxrelu_version": __version__,
        "dataset": {
            "name": data.name,
            "train": len(data.y_train),
            "test": len(data.y_test),
            "image_shape": list(data.image_shape),
            "classes": data.num_classes,
        },
        "config": {"mode": "quick" if quick else "full", **dataclasses.asdict(plan)},
        "machine": machine,
        "started": started,
        "results": rows,
    }
    atomic_write(
        os.path.join(out, "results.json"), json.dumps(doc, indent=1, default=_json_default)
    )
    plots = make_plots(out, sections["volume"], sections["train"], sections["divergence"], plan)
    md = [
        f"# jaxrelu reproduce: Bertoin et al. (NeurIPS 2021) on `{data.name}`",
        "",
        f"Mode: **{'quick' if quick else 'full'}**. jaxrelu {__version__}, "
        f"JAX {machine['jax_version']}, "
        f"backend {machine['backend']} ({machine['device']}), CPU: {machine['cpu']}, "
        f"{machine['cores']} cores. Started {started}. Data: {data.name} "
        f"({len(data.y_train)} training / {len(data.y_test)} test images, {data.image_shape}).",
        "",
        "Every number under *ours* was computed by this run. Columns marked *paper* are the "
        "published MNIST figures (Bertoin et al. 2021), quoted for comparison: MNIST has 33× "
        "more training images than digits, so at 32 bits our probabilities are smaller; the "
        "ordering by precision is the paper's. Their PyTorch ReLU wrote the constant α at exact "
        "zeros instead of α × the upstream gradient; jaxrelu applies the chain rule (α × "
        "upstream).",
        "",
    ]
    if sections["volume"]:
        md.append("## 1. Volume of the bifurcation zone (section 3 protocol)\n")
        md.append(
            "θ is in the zone S01 if, on some minibatch of one pass over the training set "
            "(no shuffling), the first-layer weight gradients with ReLU'(0) = 0 and = 1 differ "
            "exactly. PyTorch's default init; intervals are Wilson 95%.\n"
        )
        for title, table in volume_tables(sections["volume"], plan, data.name):
            md += [f"### {title}", "", table, ""]
    if sections["train"]:
        md.append(f"## 2. Training with different ReLU'(0) (section 4), {plan.epochs} epochs\n")
        md.append(
            "All ReLU'(0) values of a row group train in lockstep from one initialisation "
            f"on the same minibatches. SGD: momentum {plan.train_momentum:g}, lr 0.1; Adam: "
            "lr 1e-3; batch 128. "
            "Accuracy is the mean ± std over seeds of runs that did not diverge.\n"
        )
        md += [train_table(sections["train"]), ""]
        diverged = [r for r in sections["train"] if r["status"] != "ok"]
        if diverged:
            groups = sorted(
                {
                    (
                        r["model"],
                        r["dtype"],
                        r["optimizer"],
                        r["batchnorm"],
                        r["seed"],
                        r["diverged_step"],
                    )
                    for r in diverged
                }
            )
            lines = [
                f"{m} {d} {o}{' BN' if bn else ''} seed {s}: loss not finite at step {st}"
                for m, d, o, bn, s, st in groups
            ]
            md.append(
                "Diverged runs (their accuracy is left out of the mean): " + "; ".join(lines) + "."
            )
            if any(r["dtype"] == "float16" and r["optimizer"] == "adam" for r in diverged):
                md.append(
                    " In pure float16, Adam's default epsilon (1e-8) rounds to 0, so the first "
                    "update divides by zero wherever a gradient is 0; `TrainConfig(mixed=True)` "
                    "(float32 master weights) avoids it."
                )
            md.append("")
        md += [PAPER_TRAIN_NOTE, ""]
    if sections["divergence"]:
        md.append("## 3. Trajectory divergence (introductory experiment)\n")
        md.append(
            f"Two SGD runs (momentum {plan.divergence_momentum:g}, lr 0.1, batch 128, MLP "
            f"width {plan.divergence_width}, depth 2) from one initialisation, ReLU'(0) = 0 "
            "and = 1.\n"
        )
        md += [divergence_table(sections["divergence"]), "", PAPER_DIVERGENCE_NOTE, ""]
    if plots:
        md.append("## Plots\n")
        md += [f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in plots]
        md.append("")
    atomic_write(os.path.join(out, "report.md"), "\n".join(md))
    return doc
