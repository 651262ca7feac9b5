r"""The training-collapse experiment: does ReLU'(0) decide whether a bias-free residual
CNN trains with SGD?

Bertoin et al. (NeurIPS 2021, section 4) report that ResNet18 on CIFAR10, trained with
SGD and momentum without batch norm, fails to train for ReLU'(0) :math:`\ge 0.3` (most
runs stuck at 10%), loses 1--4 points at 0.1 and 0.2, and that batch norm repairs it. The
mechanism they give: bias-free convolutions over dead activations and zero padding produce
exact zeros wholesale, and backpropagation through them follows the convention.

:func:`collapse` trains the study's bias-free residual CNN (model ``"resnet"``) with
every value of :data:`KINK_GRADS` -- the conventions 0, 0.1, 0.2, 0.3, 0.5, 1 and the
lexicographic rule (:mod:`jaxrelu.study.ties`), whose step is an element of the Clarke
subdifferential of the minibatch loss -- in lockstep from one initialisation on the same
minibatches, and records per run:

* the test accuracy after every epoch (the curve) and the final one;
* the rate of exact zeros per activation layer (``zero_hits / evaluations``);
* the rate of *live* ties per layer: exact zeros whose gradient row with respect to the
  parameters may be nonzero (:func:`jaxrelu.study.models.tangent_support`); the others
  are structural (every path from a parameter to the unit is already zero) and no value of
  ReLU'(0) can change a gradient through them;
* how much of the backpropagated gradient flows through tied units: the relative L2 norm
  :math:`\|g_1 - g_0\| / \|g_0\|` of the gradients with ReLU'(0) = 1 and = 0 at the run's
  parameters, averaged over the steps (0 on a step without live ties, where they are
  equal) and its largest value.

A run counts as *collapsed* when its final test accuracy is at most
:data:`STUCK_ACCURACY` (twice chance for 10 classes): the paper's "stuck at 10%".
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .. import _validate
from . import limits, models
from .config import TrainConfig
from .data import Dataset, load_data
from .engine import train
from .ties import LEXICOGRAPHIC

__all__ = ["KINK_GRADS", "STUCK_ACCURACY", "CollapseConfig", "collapse"]

KINK_GRADS: tuple[float | str, ...] = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0, LEXICOGRAPHIC)
"""The paper's values of ReLU'(0) and the lexicographic rule."""
STUCK_ACCURACY = 0.2
"""A final test accuracy at or below this (twice chance for 10 classes) is a collapse."""


@dataclasses.dataclass(frozen=True)
class CollapseConfig:
    """One lockstep training of the residual CNN with every kink value.

    Attributes:
        dtype: precision (pure: parameters and arithmetic).
        batchnorm: batch norm before every activation.
        seed: seeds the initialisation and the shuffling.
        epochs: passes over the training set.
        channels: channels of each stage (the first stage keeps the image size, every
            later one halves it).
        depth: residual blocks per stage (two convolutions each).
        learning_rate, momentum, weight_decay: SGD (the paper's momentum and weight
            decay; one learning rate for every kink value, not tuned per value).
        batch_size: minibatch size (the paper's 128).
        init: ``"he"`` (``"torch"``'s uniform bound shrinks a bias-free network's signal
            with depth: it barely trains in a few hundred steps).
        accumulate: how 16-bit layers are rounded (``"native"`` or ``"float32"``).
        kink_grads: the values trained in lockstep.
    """

    dtype: str = "float32"
    batchnorm: bool = False
    seed: int = 0
    epochs: int = 20
    channels: tuple[int, ...] = (8, 16)
    depth: int = 2
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    init: str = "he"
    accumulate: str = "native"
    kink_grads: tuple[float | str, ...] = KINK_GRADS

    def __post_init__(self) -> None:
        _validate.positive_int(self.epochs, "epochs", hi=limits.MAX_EPOCHS)
        self.train_config()  # every other field is validated by TrainConfig

    def train_config(self) -> TrainConfig:
        """The :class:`~jaxrelu.study.config.TrainConfig` of this experiment."""
        return TrainConfig(
            model="resnet",
            channels=tuple(self.channels),
            depth=self.depth,
            batchnorm=self.batchnorm,
            init=self.init,
            dtype=self.dtype,
            accumulate=self.accumulate,
            optimizer="sgd",
            learning_rate=self.learning_rate,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            batch_size=self.batch_size,
            seed=self.seed,
            epochs=self.epochs,
            kink_grads=tuple(self.kink_grads),
        )


def _rates(counts: list[int] | None, per_layer: tuple[int, ...], steps: int) -> list[float]:
    if not counts:
        return []
    return [c / max(1, n * steps) for c, n in zip(counts, per_layer)]


def collapse(data: Any = "digits", progress: bool = False, **fields: Any) -> list[dict[str, Any]]:
    """Runs one :class:`CollapseConfig` (``fields`` are its fields) and returns one row
    per kink value.

    Each row: the config's fields (``kink_grad`` a number or ``"lexicographic"``),
    ``status``, ``test_accuracy`` (final), ``accuracy_curve`` (after every epoch),
    ``loss_curve`` (mean training loss per epoch), ``collapsed``
    (final accuracy :math:`\\le` :data:`STUCK_ACCURACY`), ``zero_hit_rate`` and
    ``zero_hit_rate_by_layer``, ``live_tie_rate_by_layer``, ``tie_gradient_mean`` and
    ``tie_gradient_max`` (see the module docstring), ``bifurcation_steps`` (steps whose
    gradients with ReLU'(0) = 0 and 1 differ), ``convolutions``, ``steps``, ``seconds``.

    Raises:
        TypeError, ValueError: a bad field (named), before anything is compiled.

    Example:
        >>> from jaxrelu.study.collapse import collapse
        >>> rows = collapse(epochs=1, channels=(2,), depth=1, kink_grads=(0.0, 1.0))
        >>> [r["kink_grad"] for r in rows], len(rows[0]["accuracy_curve"])
        ([0.0, 1.0], 1)
    """
    cfg = CollapseConfig(**fields)
    ds: Dataset = load_data(data)
    hist = train(cfg.train_config(), ds, progress=progress)
    steps = len(hist.step_loss)
    per_layer = hist.activations_per_step_by_layer
    arch = models.Architecture(
        kind="resnet", in_shape=ds.image_shape, channels=cfg.channels, depth=cfg.depth
    )
    convs = 1 + sum(2 + b.proj for b in models.resnet_blocks(arch))
    base = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "kink_grads"}
    base["channels"] = list(cfg.channels)
    rows = []
    for i, run in enumerate(hist.runs()):
        acc = run["test_accuracy"]
        rows.append(
            {
                **base,
                "kink_grad": run["kink_grad"],
                "status": run["status"],
                "test_accuracy": acc,
                "accuracy_curve": [float(a) for a in hist.test_accuracy[:, i]],
                "loss_curve": [float(v) for v in hist.epoch_loss[:, i]],
                "collapsed": acc is None or acc <= STUCK_ACCURACY,
                "zero_hit_rate": run["zero_hit_rate"],
                "zero_hit_rate_by_layer": _rates(run["zero_hits_by_layer"], per_layer, steps),
                "live_tie_rate_by_layer": _rates(run["live_ties_by_layer"], per_layer, steps),
                "tie_gradient_mean": run["tie_gradient_mean"],
                "tie_gradient_max": run["tie_gradient_max"],
                "bifurcation_steps": run["bifurcation_steps"],
                "convolutions": convs,
                "steps": steps,
                "seconds": hist.seconds,
            }
        )
    return rows
