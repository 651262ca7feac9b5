"""What defines a training run: :class:`TrainConfig`, built from three frozen parts.

* :class:`NetworkConfig` -- the architecture (model kind, width, depth, channels, batch
  norm, initialisation, activation);
* :class:`OptimConfig` -- the optimisation (optimizer, learning rate, momentum, weight
  decay, batch size);
* :class:`RunConfig` -- the run settings (precision and accumulation, kink values, seed,
  epochs, instrumentation, devices, loss scaling).

Every part validates its fields on construction (a ``TypeError``/``ValueError`` naming
the field, NumPy scalars accepted). ``TrainConfig`` holds the three parts and nothing
else; it is built either from parts or from flat keywords, which go to the part that owns
them, and reads flat attributes through to the parts::

    TrainConfig(width=32, epochs=2, dtype="float16", kink_grads=(0.0, 1.0))
    TrainConfig(network=NetworkConfig(width=32), run=RunConfig(epochs=2))

Every default lives here, once; the command line reads its defaults from these classes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax

from .. import _validate
from . import limits, models
from .ties import LEXICOGRAPHIC

__all__ = [
    "ACCUMULATE",
    "DEFAULT_LEARNING_RATES",
    "DTYPES",
    "MATMUL_PRECISIONS",
    "OPTIMIZERS",
    "NetworkConfig",
    "OptimConfig",
    "RunConfig",
    "TrainConfig",
    "data_devices",
    "kink_values",
]

DTYPES = _validate.FLOAT_DTYPES
OPTIMIZERS = ("sgd", "adam")
DEFAULT_LEARNING_RATES: Mapping[str, float] = {"sgd": 0.1, "adam": 1e-3}
"""The learning rate used when none is given: 0.1 for SGD (the paper's), 1e-3 for Adam."""
MATMUL_PRECISIONS = ("highest", "high", "default", "float32", "tensorfloat32", "bfloat16")
ACCUMULATE = models.ACCUMULATE
LEXICOGRAPHIC_MODELS = ("mlp", "resnet")
"""Models the lexicographic kink value supports (the CNN's max pooling has ties of its own)."""


def kink_values(values: Any, name: str = "kink_grads") -> tuple[float | str, ...]:
    """A non-empty sequence of finite numbers and ``"lexicographic"``, as a tuple of
    Python floats and that string (a ``ValueError``/``TypeError`` naming the entry)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        try:
            values = tuple(values)
        except TypeError:
            raise TypeError(f"`{name}` must be a sequence of numbers, got {values!r}") from None
    out: list[float | str] = []
    for i, v in enumerate(values):
        if isinstance(v, str):
            if v != LEXICOGRAPHIC:
                raise ValueError(f"`{name}[{i}]` must be a number or {LEXICOGRAPHIC!r}, got {v!r}")
            out.append(v)
        else:
            out.append(_validate.number(v, f"{name}[{i}]"))
    if not out:
        raise ValueError(f"`{name}` must not be empty")
    return tuple(out)


def data_devices() -> list:
    """The devices a run may use: this process's, or in a multi-process run
    (:func:`jax.distributed.initialize`) every process's, in :func:`jax.devices` order."""
    return jax.devices() if jax.process_count() > 1 else jax.local_devices()


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """The network (see :class:`jaxrelu.study.models.Architecture`).

    Attributes:
        model: ``"mlp"``, ``"cnn"`` or ``"resnet"`` (the bias-free residual CNN).
        width, depth: MLP hidden width and number of hidden layers; for the residual CNN,
            ``depth`` is the number of residual blocks per stage (``width`` is not used by
            the CNNs).
        channels: CNN convolution channels; residual CNN stage channels (not used by the
            MLP).
        batchnorm: batch norm before every activation.
        init: ``"torch"`` (the paper's) or ``"he"``.
        activation: ``"relu"``, ``"leaky_relu"``, ``"abs"``, ``"relu6"`` or ``"hard_tanh"``.
    """

    # the defaults are the Architecture's: one source
    model: str = models.Architecture.kind
    width: int = models.Architecture.width
    depth: int = models.Architecture.depth
    channels: tuple[int, ...] = models.Architecture.channels
    batchnorm: bool = models.Architecture.batchnorm
    init: str = models.Architecture.init
    activation: str = models.Architecture.activation

    def __post_init__(self) -> None:
        _validate.one_of(self.model, models.MODELS, "model")
        _set(self, "width", _validate.positive_int(self.width, "width", hi=limits.MAX_WIDTH))
        _set(self, "depth", _validate.positive_int(self.depth, "depth", hi=limits.MAX_DEPTH))
        _set(
            self,
            "channels",
            _validate.int_tuple(self.channels, "channels", hi=limits.MAX_CHANNELS),
        )
        _set(self, "batchnorm", _validate.boolean(self.batchnorm, "batchnorm"))
        _validate.one_of(self.init, models.INITS, "init")
        _validate.one_of(self.activation, models.ACTIVATION_NAMES, "activation")

    def architecture(
        self, in_shape: tuple[int, ...], num_classes: int, accumulate: str = "native"
    ) -> models.Architecture:
        """The :class:`~jaxrelu.study.models.Architecture` for inputs of ``in_shape``."""
        return models.Architecture(
            kind=self.model,
            in_shape=tuple(in_shape),
            num_classes=num_classes,
            width=self.width,
            depth=self.depth,
            channels=self.channels,
            batchnorm=self.batchnorm,
            init=self.init,
            activation=self.activation,
            accumulate=accumulate,
        )

    def to_dict(self) -> dict[str, Any]:
        """The fields that shape this model (width/depth for the MLP, channels for the
        CNN, channels/depth for the residual CNN), JSON-ready."""
        d = dataclasses.asdict(self)
        by_model = {"mlp": ("channels",), "cnn": ("width", "depth"), "resnet": ("width",)}
        for k in by_model[self.model]:
            d.pop(k)
        if "channels" in d:
            d["channels"] = list(d["channels"])
        return d


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """The optimisation.

    Attributes:
        optimizer: ``"sgd"`` (momentum; weight decay added to the gradient as in PyTorch)
            or ``"adam"``.
        learning_rate: a positive number or an optax schedule (step -> rate); ``None``
            (the default) takes the optimizer's entry of :data:`DEFAULT_LEARNING_RATES`.
        momentum: SGD momentum.
        weight_decay: L2 weight decay.
        batch_size: minibatch size (the last partial batch of an epoch is dropped).
    """

    optimizer: str = "sgd"
    learning_rate: float | Callable[[Any], Any] | None = None
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 128

    def __post_init__(self) -> None:
        _validate.one_of(self.optimizer, OPTIMIZERS, "optimizer")
        lr = self.learning_rate
        if lr is None:
            lr = DEFAULT_LEARNING_RATES[self.optimizer]
        elif not callable(lr):
            lr = _validate.number(lr, "learning_rate", positive=True)
        _set(self, "learning_rate", lr)
        _set(self, "momentum", _validate.number(self.momentum, "momentum", nonneg=True))
        _set(self, "weight_decay", _validate.number(self.weight_decay, "weight_decay", nonneg=True))
        _set(self, "batch_size", _validate.positive_int(self.batch_size, "batch_size"))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if callable(self.learning_rate):
            d["learning_rate"] = "schedule"
        return d


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The run settings.

    Attributes:
        dtype: ``"float16"``, ``"bfloat16"``, ``"float32"`` or ``"float64"`` (float64 needs
            ``jax.config.update("jax_enable_x64", True)``).
        mixed: float32 master weights with ``dtype`` compute (and loss scaling for float16).
        accumulate: how 16-bit layers are rounded: ``"native"`` (product and bias addition
            each rounded to ``dtype``) or ``"float32"`` (accumulated in float32, rounded
            once, as fused kernels and tensor cores do); no effect at 32 and 64 bits.
        kink_grads: the values of the activation's derivative at its kinks, trained side by
            side (lockstep) from one initialisation; ``"lexicographic"`` resolves every
            tie by the lexicographic rule (:mod:`jaxrelu.study.ties`; ReLU networks
            without max pooling: the MLP and the residual CNN).
        seed: seeds the initialisation and the shuffling (0 to ``limits.MAX_SEED``).
        epochs: number of passes over the training set.
        instrument: record zero hits and bifurcations (cheap; on by default).
        devices: number of local devices for data parallelism; None uses as many as divide
            the batch size.
        loss_scale: initial dynamic loss scale for mixed float16.
        loss_scale_period: good steps after which the loss scale doubles (it halves on a
            step with non-finite gradients, which is skipped).
        matmul_precision: ``jax.default_matmul_precision`` for the run: ``"highest"`` (the
            default) makes float32 products float32 on GPUs too, as PyTorch does by default;
            ``"default"`` lets JAX use TF32 there.
    """

    dtype: str = "float32"
    mixed: bool = False
    accumulate: str = "native"
    kink_grads: tuple[float | str, ...] = (0.0,)
    seed: int = 0
    epochs: int = 10
    instrument: bool = True
    devices: int | None = None
    loss_scale: float = 2.0**15
    loss_scale_period: int = 2000
    matmul_precision: str = "highest"

    def __post_init__(self) -> None:
        _set(self, "dtype", _validate.float_dtype(self.dtype, "dtype"))
        _set(self, "mixed", _validate.boolean(self.mixed, "mixed"))
        if self.mixed and self.dtype in ("float32", "float64"):
            raise ValueError("`mixed` precision needs a low-precision `dtype` (float16, bfloat16)")
        _validate.one_of(self.accumulate, ACCUMULATE, "accumulate")
        _set(self, "kink_grads", kink_values(self.kink_grads))
        _set(self, "seed", _validate.integer(self.seed, "seed", lo=0, hi=limits.MAX_SEED))
        _set(self, "epochs", _validate.positive_int(self.epochs, "epochs", hi=limits.MAX_EPOCHS))
        _set(self, "instrument", _validate.boolean(self.instrument, "instrument"))
        if self.devices is not None:
            _set(self, "devices", _validate.positive_int(self.devices, "devices"))
        _set(self, "loss_scale", _validate.number(self.loss_scale, "loss_scale", positive=True))
        _set(
            self,
            "loss_scale_period",
            _validate.positive_int(self.loss_scale_period, "loss_scale_period"),
        )
        _validate.one_of(self.matmul_precision, MATMUL_PRECISIONS, "matmul_precision")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["kink_grads"] = list(self.kink_grads)
        return d


_PARTS: dict[str, type] = {"network": NetworkConfig, "optim": OptimConfig, "run": RunConfig}
_OWNER: dict[str, str] = {
    f.name: part for part, cls in _PARTS.items() for f in dataclasses.fields(cls)
}


@dataclasses.dataclass(frozen=True, init=False, repr=False)
class TrainConfig:
    """Everything that defines a training run (frozen, hashable), in three parts.

    Build it from parts, from flat keywords (each goes to the part that owns it), or both
    (keywords override the parts). Flat attributes (``cfg.width``, ``cfg.dtype``, ...)
    read through to the parts. See :class:`NetworkConfig`, :class:`OptimConfig` and
    :class:`RunConfig` for the fields.

    Example:
        >>> cfg = TrainConfig(width=32, epochs=2, dtype="float16", kink_grads=(0.0, 1.0))
        >>> cfg.network.width, cfg.run.epochs, cfg.dtype
        (32, 2, 'float16')
        >>> cfg
        TrainConfig(width=32, dtype='float16', kink_grads=(0.0, 1.0), epochs=2)
    """

    network: NetworkConfig
    optim: OptimConfig
    run: RunConfig

    def __init__(
        self,
        network: NetworkConfig | None = None,
        optim: OptimConfig | None = None,
        run: RunConfig | None = None,
        **fields: Any,
    ) -> None:
        unknown = sorted(set(fields) - set(_OWNER))
        if unknown:
            raise TypeError(f"TrainConfig has no field {', '.join(map(repr, unknown))}")
        given = {"network": network, "optim": optim, "run": run}
        for part, cls in _PARTS.items():
            value = given[part]
            if value is not None and not isinstance(value, cls):
                raise TypeError(f"`{part}` must be a {cls.__name__}, got {type(value).__name__}")
            own = {k: v for k, v in fields.items() if _OWNER[k] == part}
            if value is None:
                value = cls(**own)
            elif own:
                if part == "optim" and "optimizer" in own and "learning_rate" not in own:
                    own["learning_rate"] = None  # the new optimizer's default rate
                value = dataclasses.replace(value, **own)
            _set(self, part, value)
        if LEXICOGRAPHIC in self.run.kink_grads:
            net = self.network
            if net.model not in LEXICOGRAPHIC_MODELS or net.activation != "relu":
                raise ValueError(
                    f"`kink_grads`: {LEXICOGRAPHIC!r} needs a ReLU network without max "
                    f"pooling (model {' or '.join(LEXICOGRAPHIC_MODELS)}, activation 'relu'); "
                    f"got model {net.model!r}, activation {net.activation!r}"
                )

    def __getattr__(self, name: str) -> Any:
        part = _OWNER.get(name)
        if part is None:
            raise AttributeError(f"TrainConfig has no attribute {name!r}")
        return getattr(object.__getattribute__(self, part), name)

    def __repr__(self) -> str:
        changed = [
            f"{f.name}={getattr(getattr(self, part), f.name)!r}"
            for part, cls in _PARTS.items()
            for f in dataclasses.fields(cls)
            if getattr(getattr(self, part), f.name) != getattr(cls(), f.name)
        ]
        return f"TrainConfig({', '.join(changed)})"

    def check_data(self, in_shape: tuple[int, ...], num_classes: int, n_train: int) -> None:
        """Raises a ``ValueError`` naming the field if the configuration cannot train on
        data of this shape (batch larger than the training set, CNN on flat features)."""
        if self.optim.batch_size > n_train:
            raise ValueError(
                f"`batch_size` {self.optim.batch_size} is larger than the training set "
                f"({n_train} examples)"
            )
        self.network.architecture(in_shape, num_classes, self.run.accumulate)
        n = len(data_devices())
        if jax.process_count() > 1:  # every process's devices take part
            if self.run.devices not in (None, n):
                raise ValueError(
                    f"`devices` must be {n} (every device of the {jax.process_count()} "
                    f"processes) or None in a multi-process run, got {self.run.devices}"
                )
            if self.optim.batch_size % n:
                raise ValueError(
                    f"`batch_size` {self.optim.batch_size} is not divisible by the {n} devices "
                    f"of the {jax.process_count()} processes"
                )
        elif self.run.devices is not None:
            if self.run.devices > n:
                raise ValueError(
                    f"`devices` must be between 1 and {n} (local devices), got {self.run.devices}"
                )
            if self.optim.batch_size % self.run.devices:
                raise ValueError(
                    f"`batch_size` {self.optim.batch_size} is not divisible by `devices` "
                    f"{self.run.devices}"
                )

    def n_devices(self) -> int:
        """Devices the batch is sharded over: ``devices``, or as many local devices as
        divide the batch size; in a multi-process run, every device of every process."""
        if jax.process_count() > 1:
            return len(data_devices())
        if self.run.devices is not None:
            return self.run.devices
        n = len(jax.local_devices())
        while self.optim.batch_size % n:
            n -= 1
        return n

    def to_dict(self) -> dict[str, Any]:
        """The configuration as recorded in JSON: flat, with only the fields the model
        uses (so a CNN's record has ``channels``, not ``width``/``depth``)."""
        return {**self.network.to_dict(), **self.optim.to_dict(), **self.run.to_dict()}
