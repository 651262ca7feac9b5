"""What ``jaxrelu reproduce`` runs: the quick and full plans, their jobs, and the paper's
published numbers they are compared with.

A job is a JSON-ready dict of keyword arguments for one experiment
(:func:`~jaxrelu.study.experiments.volume`,
:func:`~jaxrelu.study.experiments.train_comparison` or
:func:`~jaxrelu.study.experiments.divergence`); the runner saves one result per job.

The full plan also runs the volume protocol at the paper's exposure (as many images per
initialisation as one pass over MNIST, 60,000) and the training-collapse experiment
(:mod:`jaxrelu.study.collapse`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from .collapse import KINK_GRADS, CollapseConfig
from .config import TrainConfig
from .data import Dataset
from .experiments import DivergenceConfig, VolumeConfig, wilson_interval

__all__ = [
    "EXPERIMENTS",
    "FULL",
    "MNIST_IMAGES",
    "PAPER_BASE",
    "PAPER_BATCH",
    "PAPER_DEPTH",
    "PAPER_EXPOSURE",
    "PAPER_WIDTH",
    "QUICK",
    "Job",
    "Plan",
    "hazard",
    "jobs",
    "volume_cell",
    "volume_rows",
]

EXPERIMENTS = ("volume", "train", "collapse", "divergence")
MNIST_IMAGES = 60_000
"""Images in one pass over MNIST's training set (the paper's exposure per initialisation)."""

# Bertoin et al., NeurIPS 2021, MNIST MLP, P(theta in S01) out of 1000 initialisations
# (section 3): (16 bit, 32 bit, 64 bit). Quoted for comparison only; never mixed with ours.
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
PAPER_BATCH = {  # (16 bit, 32 bit)
    16: (1.0, 0.439),
    64: (1.0, 0.453),
    256: (1.0, 0.488),
    512: (1.0, 0.351),
    1024: (1.0, 0.384),
}
PAPER_BASE = {"float16": 1.0, "float32": 0.445, "float64": 0.0}
"""A stored run of the paper's code: batch 100, 200 initialisations."""
PAPER_EXPOSURE: dict[str, Any] = {
    "probability": 0.478,
    "inits": 1000,
    "images": MNIST_IMAGES,
    "width": 256,
    "depth": 3,
    "batch_size": 256,
}
"""The paper's 32-bit headline cell (width 256, depth 3, batch 256, one pass over MNIST)."""


def hazard(in_zone: int, inits: int, images: int) -> tuple[float, float, float]:
    r"""The per-image hazard :math:`\lambda` of entering the bifurcation zone, from
    ``in_zone`` of ``inits`` initialisations hit within ``images`` images each, with the
    Wilson 95% interval carried through: :math:`P = 1 - e^{-\lambda N}`, so
    :math:`\lambda = -\ln(1 - P) / N` (monotone in :math:`P`). Returns ``(lambda, lo,
    hi)``; a bound at :math:`P = 1` is infinite.

    Example:
        >>> lam, lo, hi = hazard(478, 1000, 60_000)
        >>> f"{lam:.3g} [{lo:.3g}, {hi:.3g}]"
        '1.08e-05 [9.88e-06, 1.19e-05]'
    """
    lo_p, hi_p = wilson_interval(in_zone, inits)
    rate = lambda p: math.inf if p >= 1 else -math.log1p(-p) / images
    return rate(in_zone / inits), rate(lo_p), rate(hi_p)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What ``reproduce`` runs (the sweeps are empty in the quick plan)."""

    volume_base: dict[str, int]
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
    divergence_width: int = DivergenceConfig.width
    divergence_momentum: float = DivergenceConfig.momentum
    # precisions whose base cell also runs with float32 accumulation
    accumulate_dtypes: tuple[str, ...] = ()
    # the exposure cell: volume keyword arguments (dtype, width, depth, batch_size, images,
    # inits); empty: none
    exposure: dict[str, Any] = dataclasses.field(default_factory=dict)
    collapse_dtypes: tuple[str, ...] = ()
    collapse_batchnorm: tuple[bool, ...] = (False, True)
    collapse_seeds: tuple[int, ...] = (0, 1, 2)
    collapse_epochs: int = CollapseConfig.epochs
    collapse_channels: tuple[int, ...] = CollapseConfig.channels
    collapse_depth: int = CollapseConfig.depth
    collapse_kinks: tuple[float | str, ...] = KINK_GRADS

    @property
    def largest_batch(self) -> int:
        return max([self.volume_base["batch_size"], *self.batch_sizes, TrainConfig().batch_size])

    def check_data(self, data: Dataset) -> None:
        """Raises a one-line ``ValueError`` if the plan cannot run on ``data`` (checked
        before any work, so that no rerun fails half-way)."""
        n = len(data.y_train)
        if n < self.largest_batch:
            raise ValueError(
                f"{data.name} has {n} training images, but this plan needs at least "
                f"{self.largest_batch} (its largest batch size)"
            )
        if self.cnn and self.cnn_dtypes and len(data.image_shape) != 3:
            raise ValueError(
                f"{data.name} has flat features {data.image_shape}; the plan's CNN runs need "
                "(H, W, C) images"
            )


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
    accumulate_dtypes=("float16",),
    exposure={
        "dtype": "float32",
        "width": 64,
        "depth": 2,
        "batch_size": 128,
        "images": 6000,
        "inits": 16,
    },
    collapse_dtypes=("float16",),
    collapse_batchnorm=(False,),
    collapse_seeds=(0,),
    collapse_epochs=2,
    collapse_channels=(2,),
    collapse_depth=1,
    collapse_kinks=(0.0, 1.0),
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
    train_optimizers=("sgd",),
    train_batchnorm=(False, True),
    seeds=(0, 1, 2),
    epochs=10,
    train_width=256,
    cnn=False,
    cnn_dtypes=("float32", "float16"),
    divergence_dtypes=("float16", "bfloat16", "float32", "float64"),
    divergence_steps=100,
    accumulate_dtypes=("float16", "bfloat16"),
    exposure={
        "dtype": "float32",
        **{k: PAPER_EXPOSURE[k] for k in ("width", "depth", "batch_size", "images", "inits")},
    },
    collapse_dtypes=("float32", "float16"),
    collapse_channels=(4, 8),
    collapse_epochs=10,
)


@dataclasses.dataclass(frozen=True)
class Job:
    """One configuration of one experiment: ``kwargs`` for the experiment's function."""

    experiment: str
    kwargs: dict[str, Any]

    @property
    def label(self) -> str:
        """A short human-readable name, e.g. ``volume float16 w64 d2 b128``."""
        k = self.kwargs
        if self.experiment == "volume":
            acc = "" if k.get("accumulate", "native") == "native" else " f32-accumulate"
            seen = f", {k['images']} images" if k.get("images") else ""
            return (
                f"volume {k['dtype']}{acc} w{k['width']} d{k['depth']} b{k['batch_size']} "
                f"({k['inits']} inits{seen})"
            )
        if self.experiment == "collapse":
            bn = " BN" if k["batchnorm"] else ""
            return f"collapse resnet {k['dtype']}{bn} seed {k['seed']} ({k['epochs']} epochs)"
        if self.experiment == "train":
            shape = f"w{k['width']}" if k["model"] == "mlp" else "cnn"
            bn = " BN" if k["batchnorm"] else ""
            return f"train {k['model']} {shape} {k['dtype']} {k['optimizer']}{bn} seed {k['seed']}"
        return f"divergence {k['dtype']} ({k['steps']} steps)"


VOLUME_CELLS = ("sweep", "accumulate", "exposure")
"""What a volume job of the plan is for: the base cell and the sweeps (native rounding,
one pass), the base cell with float32 accumulation, the paper's exposure."""


def volume_cell(kwargs: dict[str, Any]) -> str:
    """Which of :data:`VOLUME_CELLS` the volume job with ``kwargs`` belongs to (recorded
    in each volume row of ``reproduce`` as ``cell``)."""
    if kwargs.get("images") is not None:
        return "exposure"
    return "sweep" if kwargs.get("accumulate", "native") == "native" else "accumulate"


def volume_rows(rows: list[dict[str, Any]], cell: str) -> list[dict[str, Any]]:
    """The volume rows of one cell (rows without ``cell`` are sweep rows)."""
    return [r for r in rows if r.get("cell", "sweep") == cell]


def _volume_jobs(plan: Plan) -> list[Job]:
    jobs: list[Job] = []
    seen: set[tuple] = set()

    def add(dtype: str, width: int, depth: int, batch: int) -> None:
        if (dtype, width, depth, batch) not in seen:
            seen.add((dtype, width, depth, batch))
            kwargs = {"dtype": dtype, "width": width, "depth": depth, "batch_size": batch}
            jobs.append(Job("volume", {**kwargs, "inits": plan.inits, "seed": VolumeConfig.seed}))

    b = plan.volume_base
    for dt in plan.volume_dtypes:
        add(dt, b["width"], b["depth"], b["batch_size"])
    for dt in plan.accumulate_dtypes:
        kwargs = {
            "dtype": dt,
            "width": b["width"],
            "depth": b["depth"],
            "batch_size": b["batch_size"],
        }
        kwargs.update(inits=plan.inits, seed=VolumeConfig.seed, accumulate="float32")
        jobs.append(Job("volume", kwargs))
    if plan.exposure:
        jobs.append(Job("volume", {**plan.exposure, "seed": VolumeConfig.seed}))
    for dt in plan.sweep_dtypes:
        for d in plan.depths:
            add(dt, b["width"], d, b["batch_size"])
        for w in plan.widths:
            add(dt, w, b["depth"], b["batch_size"])
    for dt in plan.batch_dtypes:
        for bs in plan.batch_sizes:
            add(dt, b["width"], b["depth"], bs)
    return jobs


def _train_jobs(plan: Plan) -> list[Job]:
    jobs = []
    for dt in plan.train_dtypes:
        for bn in plan.train_batchnorm:
            for opt in plan.train_optimizers:
                for seed in plan.seeds:
                    kwargs = {"model": "mlp", "dtype": dt, "batchnorm": bn, "optimizer": opt}
                    kwargs.update(seed=seed, epochs=plan.epochs, kink_grads=list(plan.train_kinks))
                    kwargs.update(width=plan.train_width, momentum=plan.train_momentum)
                    jobs.append(Job("train", kwargs))
    if plan.cnn:
        for dt in plan.cnn_dtypes:
            for bn in (False, True):
                for seed in plan.seeds[:2]:
                    kwargs = {"model": "cnn", "dtype": dt, "batchnorm": bn, "optimizer": "sgd"}
                    kwargs.update(seed=seed, epochs=plan.epochs, kink_grads=[0.0, 1.0])
                    jobs.append(Job("train", {**kwargs, "init": "he"}))
    return jobs


def _collapse_jobs(plan: Plan) -> list[Job]:
    return [
        Job(
            "collapse",
            {
                "dtype": dt,
                "batchnorm": bn,
                "seed": seed,
                "epochs": plan.collapse_epochs,
                "channels": list(plan.collapse_channels),
                "depth": plan.collapse_depth,
                "kink_grads": list(plan.collapse_kinks),
            },
        )
        for dt in plan.collapse_dtypes
        for bn in plan.collapse_batchnorm
        for seed in plan.collapse_seeds
    ]


def _divergence_jobs(plan: Plan) -> list[Job]:
    return [
        Job(
            "divergence",
            {
                "dtype": dt,
                "steps": plan.divergence_steps,
                "width": plan.divergence_width,
                "momentum": plan.divergence_momentum,
            },
        )
        for dt in plan.divergence_dtypes
    ]


def jobs(plan: Plan) -> dict[str, list[Job]]:
    """The plan's jobs, by experiment, in the order they run."""
    return {
        "volume": _volume_jobs(plan),
        "train": _train_jobs(plan),
        "collapse": _collapse_jobs(plan),
        "divergence": _divergence_jobs(plan),
    }
