r"""Small networks as plain pytrees: an MLP and a small CNN whose activations are
jaxrelu's, with the kink value a traced input.

Parameters are nested dicts of arrays; :func:`apply` returns the logits, the updated batch
norm statistics and the list of pre-activations (the inputs of every activation layer),
which the training engine counts exact kinks in. Each kind of network is one entry of
:data:`MODELS` (an ``init``/``apply`` pair and its sizes), so a new kind is one new entry.

The activations are read from :data:`jaxrelu.REGISTRY` (function, kink locations): the
networks use every one-input activation named in :data:`ACTIVATION_NAMES`.

Initialisations: ``"torch"`` (PyTorch's default for ``nn.Linear``/``nn.Conv2d``: weights
*and* biases uniform in :math:`\pm 1/\sqrt{\text{fan\_in}}`, the setting of Bertoin et al.)
and ``"he"`` (weights normal with std :math:`\sqrt{2/\text{fan\_in}}`, biases zero).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import types
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

import jaxrelu

from .. import _validate
from . import limits

__all__ = [
    "ACTIVATIONS",
    "ACTIVATION_NAMES",
    "INITS",
    "MODELS",
    "Activation",
    "Architecture",
    "apply",
    "cross_entropy",
    "init",
    "n_activation_layers",
    "n_activations",
    "n_params",
    "nll",
]

BN_EPS = 1e-5
BN_MOMENTUM = 0.1
INITS = ("torch", "he")
ACTIVATION_NAMES = ("relu", "leaky_relu", "abs", "relu6", "hard_tanh")
"""The one-input activations of :data:`jaxrelu.REGISTRY` the networks can use."""


class Activation(NamedTuple):
    """An activation as the networks use it: ``fn(z, s)`` with every kink's derivative set
    to the (traced) value ``s``, and the kink locations ``kinks``."""

    fn: Callable[[Any, Any], Any]
    kinks: tuple[float, ...]


def _from_registry(name: str) -> Activation:
    info = jaxrelu.REGISTRY[name]
    n = len(info.kinks)
    return Activation(
        fn=lambda z, s: info.with_kink_values((s,) * n)(z),
        kinks=tuple(float(k.at) for k in info.kinks),
    )


ACTIVATIONS: Mapping[str, Activation] = types.MappingProxyType(
    {name: _from_registry(name) for name in ACTIVATION_NAMES}
)
"""Activation name -> :class:`Activation`, derived from :data:`jaxrelu.REGISTRY`."""


@dataclasses.dataclass(frozen=True)
class Architecture:
    """What network to build (hashable: one compilation per architecture).

    Attributes:
        kind: a key of :data:`MODELS` (``"mlp"`` or ``"cnn"``).
        in_shape: shape of one input (``(H, W, C)`` images; the MLP flattens them).
        num_classes: number of outputs.
        width: hidden width of the MLP (at most :data:`limits.MAX_WIDTH`).
        depth: number of hidden layers of the MLP (at most :data:`limits.MAX_DEPTH`).
        channels: output channels of the CNN's 3x3 zero-padded convolutions, each followed
            by [batch norm], the activation and 2x2 max pooling.
        batchnorm: batch normalisation before every activation.
        init: ``"torch"`` or ``"he"``.
        activation: a name from :data:`ACTIVATION_NAMES`.
    """

    kind: str = "mlp"
    in_shape: tuple[int, ...] = (64,)
    num_classes: int = 10
    width: int = 256
    depth: int = 2
    channels: tuple[int, ...] = (16, 32)
    batchnorm: bool = False
    init: str = "torch"
    activation: str = "relu"

    def __post_init__(self) -> None:
        _validate.one_of(self.kind, MODELS, "model")
        _validate.one_of(self.init, INITS, "init")
        _validate.one_of(self.activation, ACTIVATION_NAMES, "activation")
        _validate.positive_int(self.width, "width", hi=limits.MAX_WIDTH)
        _validate.positive_int(self.depth, "depth", hi=limits.MAX_DEPTH)
        _validate.positive_int(self.num_classes, "num_classes")
        object.__setattr__(self, "in_shape", tuple(int(d) for d in self.in_shape))
        object.__setattr__(
            self, "channels", _validate.int_tuple(self.channels, "channels", hi=limits.MAX_CHANNELS)
        )
        MODELS[self.kind].check(self)


def _check_mlp(arch: Architecture) -> None:
    if not arch.in_shape:
        raise ValueError("the MLP needs inputs with at least one feature")


def _check_cnn(arch: Architecture) -> None:
    if len(arch.in_shape) != 3:
        raise ValueError(
            f"the CNN needs (H, W, C) images, got input shape {arch.in_shape} (flat features: "
            "use model 'mlp')"
        )
    h, w = arch.in_shape[:2]
    if h >> len(arch.channels) == 0 or w >> len(arch.channels) == 0:
        raise ValueError(
            f"`channels`: {len(arch.channels)} pooling stages are too many for {h}x{w} images"
        )


def _uniform(key, shape, bound, dtype):
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound).astype(dtype)


def _weights(key, shape, fan_in, init_name, bias, dtype):
    """A layer's ``{"w", "b"}`` (``"b"`` only if ``bias``) for either initialisation."""
    kw, kb = jax.random.split(key)
    if init_name == "torch":
        bound = 1.0 / math.sqrt(fan_in)
        p = {"w": _uniform(kw, shape, bound, dtype)}
        if bias:
            p["b"] = _uniform(kb, (shape[-1],), bound, dtype)
        return p
    std = math.sqrt(2.0 / fan_in)
    p = {"w": (jax.random.normal(kw, shape, jnp.float32) * std).astype(dtype)}
    if bias:
        p["b"] = jnp.zeros((shape[-1],), dtype)
    return p


def _batchnorm_params(n_feat, dtype):
    params = [{"scale": jnp.ones((n,), dtype), "bias": jnp.zeros((n,), dtype)} for n in n_feat]
    state = [{"mean": jnp.zeros((n,), dtype), "var": jnp.ones((n,), dtype)} for n in n_feat]
    return params, state


def _init_mlp(arch: Architecture, key, dtype):
    sizes = [math.prod(arch.in_shape)] + [arch.width] * arch.depth
    keys = jax.random.split(key, arch.depth + 1)
    layers = [
        _weights(keys[i], (sizes[i], sizes[i + 1]), sizes[i], arch.init, True, dtype)
        for i in range(arch.depth)
    ]
    out = _weights(keys[-1], (sizes[-1], arch.num_classes), sizes[-1], arch.init, True, dtype)
    return layers, out, [arch.width] * arch.depth


def _init_cnn(arch: Architecture, key, dtype):
    c_in = arch.in_shape[2]
    keys = jax.random.split(key, len(arch.channels) + 1)
    layers = []
    for i, c in enumerate(arch.channels):
        bias = not arch.batchnorm  # batch norm's shift replaces the bias
        layers.append(_weights(keys[i], (3, 3, c_in, c), 9 * c_in, arch.init, bias, dtype))
        c_in = c
    h, w = arch.in_shape[0] >> len(arch.channels), arch.in_shape[1] >> len(arch.channels)
    fan_in = h * w * c_in
    out = _weights(keys[-1], (fan_in, arch.num_classes), fan_in, arch.init, True, dtype)
    return layers, out, list(arch.channels)


def init(arch: Architecture, key: jax.Array, dtype: Any = jnp.float32) -> tuple[dict, dict]:
    """Initial ``(params, state)``; ``state`` holds batch norm running statistics."""
    dtype = jnp.dtype(dtype)
    layers, out, n_feat = MODELS[arch.kind].init(arch, key, dtype)
    bn_params, bn_state = _batchnorm_params(n_feat, dtype) if arch.batchnorm else ([], [])
    return {"layers": layers, "bn": bn_params, "out": out}, {"bn": bn_state}


def _batchnorm(z, p, s, train):
    axes = tuple(range(z.ndim - 1))
    if train:
        mean = jnp.mean(z, axis=axes)
        var = jnp.mean(jnp.square(z - mean), axis=axes)
        n = math.prod(z.shape[:-1])
        unbiased = var * (n / max(n - 1, 1))

        def ema(old, new):
            return ((1 - BN_MOMENTUM) * old + BN_MOMENTUM * lax.stop_gradient(new)).astype(
                old.dtype
            )

        new = {"mean": ema(s["mean"], mean), "var": ema(s["var"], unbiased)}
    else:
        mean, var, new = s["mean"], s["var"], s
    y = (z - mean) * lax.rsqrt(var + jnp.asarray(BN_EPS, z.dtype)) * p["scale"] + p["bias"]
    return y.astype(z.dtype), new


def _mlp_layer(arch, layer, h):
    return h @ layer["w"] + layer["b"]


def _cnn_layer(arch, layer, h):
    z = lax.conv_general_dilated(
        h, layer["w"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return z + layer["b"] if "b" in layer else z


def _pool(h):
    return lax.reduce_window(h, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def apply(
    arch: Architecture,
    params: dict,
    state: dict,
    x: jax.Array,
    kink: Any = 0.0,
    train: bool = True,
) -> tuple[jax.Array, dict, list[jax.Array]]:
    """Forward pass: ``(logits, new_state, pre_activations)``.

    Args:
        arch: the architecture.
        params, state: from :func:`init` (any float dtype; ``x`` is cast to it).
        x: a batch of inputs, shape ``(n, *arch.in_shape)`` (or flat for the MLP).
        kink: the activation's derivative at its kinks (traced; see :func:`jaxrelu.relu`).
        train: batch statistics (and updated running statistics) for batch norm.
    """
    act = ACTIVATIONS[arch.activation].fn
    model = MODELS[arch.kind]
    x = x.astype(params["out"]["w"].dtype)
    h = model.prepare(arch, x)
    pre: list[jax.Array] = []
    new_bn = []
    for i, layer in enumerate(params["layers"]):
        z = model.layer(arch, layer, h)
        if arch.batchnorm:
            z, s = _batchnorm(z, params["bn"][i], state["bn"][i], train)
            new_bn.append(s)
        pre.append(z)
        h = model.after(act(z, kink))
    h = h.reshape(h.shape[0], -1)
    logits = h @ params["out"]["w"] + params["out"]["b"]
    return logits, {"bn": new_bn} if arch.batchnorm else state, pre


def nll(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example negative log-likelihood of integer ``labels`` under softmax(logits)."""
    logp = jax.nn.log_softmax(logits)
    return -jnp.take_along_axis(logp, labels[:, None], axis=1)[:, 0]


def cross_entropy(logits: jax.Array, labels: jax.Array, mask: jax.Array | None = None):
    """Mean cross-entropy over the batch, or over the examples where ``mask`` is true
    (padded examples weigh 0); computed in the logits' dtype."""
    losses = nll(logits, labels)
    if mask is None:
        return jnp.mean(losses)
    total = jnp.sum(jnp.where(mask, losses, jnp.zeros_like(losses)))
    return total / jnp.sum(mask).astype(losses.dtype)


class _Model(NamedTuple):
    """One kind of network: checks, parameter init, the layer map and sizes."""

    check: Callable[[Architecture], None]
    init: Callable[..., tuple[list, dict, list[int]]]
    prepare: Callable[[Architecture, jax.Array], jax.Array]
    layer: Callable[[Architecture, dict, jax.Array], jax.Array]
    after: Callable[[jax.Array], jax.Array]
    n_layers: Callable[[Architecture], int]


MODELS: Mapping[str, _Model] = types.MappingProxyType(
    {
        "mlp": _Model(
            _check_mlp,
            _init_mlp,
            lambda arch, x: x.reshape(x.shape[0], -1),
            _mlp_layer,
            lambda h: h,
            lambda arch: arch.depth,
        ),
        "cnn": _Model(
            _check_cnn,
            _init_cnn,
            lambda arch, x: x.reshape(x.shape[0], *arch.in_shape),
            _cnn_layer,
            _pool,
            lambda arch: len(arch.channels),
        ),
    }
)
"""Model kind -> its implementation (``"mlp"``, ``"cnn"``)."""


def n_activation_layers(arch: Architecture) -> int:
    """Number of activation layers (the length of ``apply``'s pre-activation list)."""
    return MODELS[arch.kind].n_layers(arch)


def _shapes(arch: Architecture, batch: int):
    x = jax.ShapeDtypeStruct((batch, *arch.in_shape), jnp.float32)
    params, state = jax.eval_shape(lambda: init(arch, jax.random.PRNGKey(0)))
    _, _, pre = jax.eval_shape(lambda p, s, v: apply(arch, p, s, v), params, state, x)
    return params, pre


def n_params(arch: Architecture) -> int:
    """Number of trainable parameters (from shapes only; nothing is allocated)."""
    if arch.kind == "mlp":  # analytic: eval_shape of a huge MLP is still cheap, but exact
        sizes = [math.prod(arch.in_shape)] + [arch.width] * arch.depth + [arch.num_classes]
        bn = 2 * arch.width * arch.depth if arch.batchnorm else 0
        return sum(a * b + b for a, b in itertools.pairwise(sizes)) + bn
    params, _ = _shapes(arch, 1)
    return int(sum(math.prod(v.shape) for v in jax.tree.leaves(params)))


def n_activations(arch: Architecture, batch: int) -> int:
    """Pre-activations evaluated by one forward pass of ``batch`` inputs."""
    if arch.kind == "mlp":
        return batch * arch.width * arch.depth
    _, pre = _shapes(arch, batch)
    return int(sum(math.prod(z.shape) for z in pre))
