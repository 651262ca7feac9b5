"""What ``jaxrelu reproduce`` runs: the quick and full plans, their jobs, and the paper's
published numbers they are compared with.

A job is a JSON-ready dict of keyword arguments for one experiment
(:func:`~jaxrelu.study.experiments.volume`,
:func:`~jaxrelu.study.experiments.train_comparison` or
:func:`~jaxrelu.study.experiments.divergence`); the runner saves one result per job.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .config import TrainConfig
from .data import Dataset
from .experiments import DivergenceConfig, VolumeConfig

__all__ = [
    "EXPERIMENTS",
    "FULL",
    "PAPER_BASE",
    "PAPER_BATCH",
    "PAPER_DEPTH",
    "PAPER_WIDTH",
    "QUICK",
    "Job",
    "Plan",
    "jobs",
]

EXPERIMENTS = ("volume", "train", "divergence")

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
            return (
                f"volume {k['dtype']} w{k['width']} d{k['depth']} b{k['batch_size']} "
                f"({k['inits']} inits)"
            )
        if self.experiment == "train":
            shape = f"w{k['width']}" if k["model"] == "mlp" else "cnn"
            bn = " BN" if k["batchnorm"] else ""
            return f"train {k['model']} {shape} {k['dtype']} {k['optimizer']}{bn} seed {k['seed']}"
        return f"divergence {k['dtype']} ({k['steps']} steps)"


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
        "divergence": _divergence_jobs(plan),
    }
