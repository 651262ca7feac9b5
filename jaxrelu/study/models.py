r"""Small networks as plain pytrees: an MLP and a small CNN whose activations are
jaxrelu's, with the kink value a traced input.

Parameters are nested dicts of arrays; :func:`apply` returns the logits, the updated batch
norm statistics and the list of pre-activations (the inputs of every activation layer),
which the training engine counts exact kinks in.

Initialisations: ``"torch"`` (PyTorch's default for ``nn.Linear``/``nn.Conv2d``: weights
*and* biases uniform in :math:`\pm 1/\sqrt{\text{fan\_in}}`, the setting of Bertoin et al.)
and ``"he"`` (weights normal with std :math:`\sqrt{2/\text{fan\_in}}`, biases zero).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from .. import activations as _act

__all__ = ["ACTIVATIONS", "Architecture", "apply", "init", "n_activation_layers"]

BN_EPS = 1e-5
BN_MOMENTUM = 0.1

ACTIVATIONS: dict[str, tuple[Callable[[Any, Any], Any], tuple[float, ...]]] = {
    "relu": (lambda z, s: _act.relu(z, s), (0.0,)),
    "leaky_relu": (lambda z, s: _act.leaky_relu(z, s), (0.0,)),
    "abs": (lambda z, s: _act.abs(z, s), (0.0,)),
    "relu6": (lambda z, s: _act.relu6(z, (s, s)), (0.0, 6.0)),
    "hard_tanh": (lambda z, s: _act.hard_tanh(z, (s, s)), (-1.0, 1.0)),
}
"""Activation name -> (function of (pre-activation, kink value), kink locations)."""


@dataclasses.dataclass(frozen=True)
class Architecture:
    """What network to build (hashable: one compilation per architecture).

    Attributes:
        kind: ``"mlp"`` or ``"cnn"``.
        in_shape: shape of one input (``(H, W, C)`` images; the MLP flattens them).
        num_classes: number of outputs.
        width: hidden width of the MLP.
        depth: number of hidden layers of the MLP.
        channels: output channels of the CNN's 3x3 zero-padded convolutions, each followed
            by [batch norm], the activation and 2x2 max pooling.
        batchnorm: batch normalisation before every activation.
        init: ``"torch"`` or ``"he"``.
        activation: a name from :data:`ACTIVATIONS`.
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

    def __post_init__(self):
        if self.kind not in ("mlp", "cnn"):
            raise ValueError(f"`model` must be 'mlp' or 'cnn', got {self.kind!r}")
        if self.init not in ("torch", "he"):
            raise ValueError(f"`init` must be 'torch' or 'he', got {self.init!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"`activation` must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}"
            )
        for name in ("width", "depth", "num_classes"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"`{name}` must be a positive integer, got {v!r}")
        if self.kind == "cnn":
            if len(self.in_shape) != 3:
                raise ValueError(f"the CNN needs (H, W, C) images, got input shape {self.in_shape}")
            if not self.channels or any((not isinstance(c, int)) or c <= 0 for c in self.channels):
                raise ValueError(f"`channels` must be positive integers, got {self.channels!r}")
            h, w = self.in_shape[:2]
            if h >> len(self.channels) == 0 or w >> len(self.channels) == 0:
                raise ValueError(
                    f"{len(self.channels)} pooling stages are too many for {h}x{w} images"
                )


def n_activation_layers(arch: Architecture) -> int:
    return arch.depth if arch.kind == "mlp" else len(arch.channels)


def _uniform(key, shape, bound, dtype):
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound).astype(dtype)


def _dense(key, fan_in, fan_out, init_name, dtype):
    kw, kb = jax.random.split(key)
    if init_name == "torch":
        bound = 1.0 / math.sqrt(fan_in)
        return {
            "w": _uniform(kw, (fan_in, fan_out), bound, dtype),
            "b": _uniform(kb, (fan_out,), bound, dtype),
        }
    std = math.sqrt(2.0 / fan_in)
    return {
        "w": (jax.random.normal(kw, (fan_in, fan_out), jnp.float32) * std).astype(dtype),
        "b": jnp.zeros((fan_out,), dtype),
    }


def _conv(key, c_in, c_out, init_name, bias, dtype):
    kw, kb = jax.random.split(key)
    fan_in = 9 * c_in
    shape = (3, 3, c_in, c_out)
    if init_name == "torch":
        bound = 1.0 / math.sqrt(fan_in)
        p = {"w": _uniform(kw, shape, bound, dtype)}
        if bias:
            p["b"] = _uniform(kb, (c_out,), bound, dtype)
    else:
        p = {
            "w": (jax.random.normal(kw, shape, jnp.float32) * math.sqrt(2.0 / fan_in)).astype(dtype)
        }
        if bias:
            p["b"] = jnp.zeros((c_out,), dtype)
    return p


def init(arch: Architecture, key: jax.Array, dtype: Any = jnp.float32) -> tuple[dict, dict]:
    """Initial ``(params, state)``; ``state`` holds batch norm running statistics."""
    dtype = jnp.dtype(dtype)
    params: dict[str, list] = {"layers": [], "bn": []}
    state: dict[str, list] = {"bn": []}
    if arch.kind == "mlp":
        sizes = [math.prod(arch.in_shape)] + [arch.width] * arch.depth
        keys = jax.random.split(key, arch.depth + 1)
        for i in range(arch.depth):
            params["layers"].append(_dense(keys[i], sizes[i], sizes[i + 1], arch.init, dtype))
        n_feat = [arch.width] * arch.depth
        params["out"] = _dense(keys[-1], sizes[-1], arch.num_classes, arch.init, dtype)
    else:
        c_in = arch.in_shape[2]
        keys = jax.random.split(key, len(arch.channels) + 1)
        for i, c in enumerate(arch.channels):
            params["layers"].append(_conv(keys[i], c_in, c, arch.init, not arch.batchnorm, dtype))
            c_in = c
        h, w = arch.in_shape[0] >> len(arch.channels), arch.in_shape[1] >> len(arch.channels)
        params["out"] = _dense(keys[-1], h * w * c_in, arch.num_classes, arch.init, dtype)
        n_feat = list(arch.channels)
    if arch.batchnorm:
        for n in n_feat:
            params["bn"].append({"scale": jnp.ones((n,), dtype), "bias": jnp.zeros((n,), dtype)})
            state["bn"].append({"mean": jnp.zeros((n,), dtype), "var": jnp.ones((n,), dtype)})
    return params, state


def _batchnorm(z, p, s, train):
    axes = tuple(range(z.ndim - 1))
    if train:
        mean = jnp.mean(z, axis=axes)
        var = jnp.mean(jnp.square(z - mean), axis=axes)
        n = math.prod(z.shape[:-1])
        unbiased = var * (n / max(n - 1, 1))
        new = {
            "mean": ((1 - BN_MOMENTUM) * s["mean"] + BN_MOMENTUM * lax.stop_gradient(mean)).astype(
                s["mean"].dtype
            ),
            "var": (
                (1 - BN_MOMENTUM) * s["var"] + BN_MOMENTUM * lax.stop_gradient(unbiased)
            ).astype(s["var"].dtype),
        }
    else:
        mean, var, new = s["mean"], s["var"], s
    y = (z - mean) * lax.rsqrt(var + jnp.asarray(BN_EPS, z.dtype)) * p["scale"] + p["bias"]
    return y.astype(z.dtype), new


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
        kink: the activation's derivative at its kink (traced; see :func:`jaxrelu.relu`).
        train: batch statistics (and updated running statistics) for batch norm.
    """
    act, _ = ACTIVATIONS[arch.activation]
    dtype = params["out"]["w"].dtype
    x = x.astype(dtype)
    pre: list[jax.Array] = []
    new_bn = []
    if arch.kind == "mlp":
        h = x.reshape(x.shape[0], -1)
        for i, layer in enumerate(params["layers"]):
            z = h @ layer["w"] + layer["b"]
            if arch.batchnorm:
                z, st = _batchnorm(z, params["bn"][i], state["bn"][i], train)
                new_bn.append(st)
            pre.append(z)
            h = act(z, kink)
    else:
        h = x.reshape(x.shape[0], *arch.in_shape)
        for i, layer in enumerate(params["layers"]):
            z = lax.conv_general_dilated(
                h, layer["w"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
            if "b" in layer:
                z = z + layer["b"]
            if arch.batchnorm:
                z, st = _batchnorm(z, params["bn"][i], state["bn"][i], train)
                new_bn.append(st)
            pre.append(z)
            h = act(z, kink)
            h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        h = h.reshape(h.shape[0], -1)
    logits = h @ params["out"]["w"] + params["out"]["b"]
    return logits, {"bn": new_bn} if arch.batchnorm else state, pre
