r"""Small networks as plain pytrees: an MLP, a small CNN and a bias-free residual CNN whose
activations are jaxrelu's, with the kink value a traced input.

Parameters are nested dicts of arrays; :func:`apply` returns the logits, the updated batch
norm statistics and the list of pre-activations (the inputs of every activation layer),
which the training engine counts exact kinks in. Each kind of network is one entry of
:data:`MODELS` (its checks, initialisation, forward pass and sizes), so a new kind is one
new entry.

**Accumulation.** ``Architecture.accumulate`` says how a layer is rounded in 16-bit
precision: ``"native"`` computes ``x @ w + b`` in the working precision (the product
rounded, then the bias addition rounded again: what ``jnp`` does), ``"float32"``
accumulates the product in float32, adds the bias in float32 and rounds once to the
working precision (what fused kernels and GPU tensor cores do, and PyTorch's CPU
``nn.Linear``). At 32 and 64 bits both are the same.

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

from .. import _rng, _validate
from . import limits

__all__ = [
    "ACCUMULATE",
    "ACTIVATIONS",
    "ACTIVATION_NAMES",
    "INITS",
    "MODELS",
    "Activation",
    "Architecture",
    "Block",
    "apply",
    "cross_entropy",
    "init",
    "linear",
    "n_activation_layers",
    "n_activations",
    "n_activations_by_layer",
    "n_params",
    "nll",
    "resnet_blocks",
    "support_is_everywhere",
    "tangent_support",
]

BN_EPS = 1e-5
BN_MOMENTUM = 0.1
INITS = ("torch", "he")
ACCUMULATE = ("native", "float32")
"""How 16-bit layers are rounded (see the module docstring)."""
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
        kind: a key of :data:`MODELS` (``"mlp"``, ``"cnn"`` or ``"resnet"``).
        in_shape: shape of one input (``(H, W, C)`` images; the MLP flattens them).
        num_classes: number of outputs.
        width: hidden width of the MLP (at most :data:`limits.MAX_WIDTH`).
        depth: number of hidden layers of the MLP (at most :data:`limits.MAX_DEPTH`); for
            the residual CNN, residual blocks per stage.
        channels: output channels of the CNN's 3x3 zero-padded convolutions, each followed
            by [batch norm], the activation and 2x2 max pooling; for the residual CNN, the
            channels of each stage (see :func:`resnet_blocks`).
        batchnorm: batch normalisation before every activation.
        init: ``"torch"`` or ``"he"``.
        activation: a name from :data:`ACTIVATION_NAMES`.
        accumulate: ``"native"`` or ``"float32"`` (see the module docstring).
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
    accumulate: str = "native"

    def __post_init__(self) -> None:
        _validate.one_of(self.kind, MODELS, "model")
        _validate.one_of(self.init, INITS, "init")
        _validate.one_of(self.activation, ACTIVATION_NAMES, "activation")
        _validate.one_of(self.accumulate, ACCUMULATE, "accumulate")
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


def _check_resnet(arch: Architecture) -> None:
    if len(arch.in_shape) != 3:
        raise ValueError(
            f"the residual CNN needs (H, W, C) images, got input shape {arch.in_shape} (flat "
            "features: use model 'mlp')"
        )
    h, w = arch.in_shape[:2]
    stages = len(arch.channels) - 1  # every stage after the first halves the image
    if h >> stages == 0 or w >> stages == 0:
        raise ValueError(f"`channels`: {len(arch.channels)} stages are too many for {h}x{w} images")


def _uniform(key, shape, bound, dtype):
    # jax.random.uniform's numbers, drawn faster on the CPU (see jaxrelu._rng)
    return _rng.uniform(key, shape, -bound, bound).astype(dtype)


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
    """Batch norm parameters and statistics for every entry (a feature count) of the
    pytree ``n_feat``."""
    params = jax.tree.map(
        lambda n: {"scale": jnp.ones((n,), dtype), "bias": jnp.zeros((n,), dtype)}, n_feat
    )
    state = jax.tree.map(
        lambda n: {"mean": jnp.zeros((n,), dtype), "var": jnp.ones((n,), dtype)}, n_feat
    )
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


class Block(NamedTuple):
    """One residual block of the residual CNN: 3x3 convolution (``stride``), activation,
    3x3 convolution, plus the shortcut (a 1x1 convolution with ``stride`` when ``proj``,
    else the identity), activation."""

    c_in: int
    c_out: int
    stride: int
    proj: bool


def resnet_blocks(arch: Architecture) -> list[Block]:
    """The residual CNN's blocks: ``arch.depth`` per stage, one stage per entry of
    ``arch.channels``; the first block of every stage after the first halves the image
    (stride 2). Before them, a 3x3 stem convolution to ``channels[0]``; after them,
    global average pooling and a linear layer (the only bias). Convolutions: 1 + 2 x
    blocks (+ a 1x1 projection where the channels or the size change)."""
    blocks, c_in = [], arch.channels[0]
    for s, c in enumerate(arch.channels):
        for b in range(arch.depth):
            stride = 2 if s > 0 and b == 0 else 1
            blocks.append(Block(c_in, c, stride, stride != 1 or c_in != c))
            c_in = c
    return blocks


def _init_resnet(arch: Architecture, key, dtype):
    """Bias-free convolutions (batch norm's shift, when on, is the only shift before an
    activation); the output layer has a bias."""
    blocks = resnet_blocks(arch)
    keys = iter(jax.random.split(key, 3 * len(blocks) + 2))

    def conv(size: int, c_in: int, c_out: int) -> dict:
        fan_in = size * size * c_in
        return _weights(next(keys), (size, size, c_in, c_out), fan_in, arch.init, False, dtype)

    layers: list[Any] = [conv(3, arch.in_shape[2], arch.channels[0])]
    feats: list[Any] = [arch.channels[0]]
    for blk in blocks:
        layer = {"conv1": conv(3, blk.c_in, blk.c_out), "conv2": conv(3, blk.c_out, blk.c_out)}
        if blk.proj:
            layer["proj"] = conv(1, blk.c_in, blk.c_out)
        layers.append(layer)
        feats.append({name: blk.c_out for name in layer})
    c = arch.channels[-1]
    out = _weights(next(keys), (c, arch.num_classes), c, arch.init, True, dtype)
    return layers, out, feats


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


def _wide(arch: Architecture, dtype: Any) -> bool:
    """Whether products accumulate in float32 and round once (16-bit ``accumulate="float32"``)."""
    return arch.accumulate == "float32" and jnp.dtype(dtype).itemsize < 4


def _finish(arch: Architecture, z, bias, dtype):
    """Adds the bias (if any) and rounds to ``dtype`` as the accumulation mode says."""
    if _wide(arch, dtype):
        z = z if bias is None else z + bias.astype(jnp.float32)
        return z.astype(dtype)
    return z if bias is None else z + bias


def linear(arch: Architecture, layer: dict, h: jax.Array) -> jax.Array:
    """``h @ w + b`` (``b`` if the layer has one), rounded as ``arch.accumulate`` says."""
    kw = {"preferred_element_type": jnp.float32} if _wide(arch, h.dtype) else {}
    return _finish(arch, jnp.matmul(h, layer["w"], **kw), layer.get("b"), h.dtype)


def _windows(h: jax.Array, size: int, stride: int) -> jax.Array:
    """The ``size`` x ``size`` windows of ``h`` (NHWC), zero-padded by ``(size - 1) // 2``
    on every side, at ``stride``: ``(n, H', W', size * size * C)`` (im2col)."""
    pad = (size - 1) // 2
    if pad:
        h = jnp.pad(h, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    rows = (h.shape[1] - size) // stride + 1
    cols = (h.shape[2] - size) // stride + 1
    parts = [
        h[:, i : i + stride * (rows - 1) + 1 : stride, j : j + stride * (cols - 1) + 1 : stride]
        for i in range(size)
        for j in range(size)
    ]
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)


def _conv(arch: Architecture, h, w, bias=None, stride: int = 1):
    """A zero-padded convolution (HWIO weights, odd square kernel) as one matrix product
    over the windows: XLA's CPU convolutions inside a loop (the training scan) are several
    times slower than its matrix products."""
    size = w.shape[0]
    kw = {"preferred_element_type": jnp.float32} if _wide(arch, h.dtype) else {}
    z = jnp.matmul(_windows(h, size, stride), w.reshape(-1, w.shape[-1]), **kw)
    return _finish(arch, z, bias, h.dtype)


def _mlp_layer(arch, layer, h):
    return linear(arch, layer, h)


def _cnn_layer(arch, layer, h):
    return _conv(arch, h, layer["w"], layer.get("b"))


def _pool(h):
    return lax.reduce_window(h, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1))


def _layer_kink(kink: Any, i: int) -> Any:
    return kink[i] if isinstance(kink, (list, tuple)) else kink


def _chain_forward(arch: Architecture, params, state, h, kink, train):
    """The MLP and the CNN: layer, [batch norm], activation, [pooling], repeated."""
    act = ACTIVATIONS[arch.activation].fn
    model = MODELS[arch.kind]
    assert model.prepare and model.layer and model.after  # a chain network
    h = model.prepare(arch, h)
    pre: list[jax.Array] = []
    new_bn = []
    for i, layer in enumerate(params["layers"]):
        z = model.layer(arch, layer, h)
        if arch.batchnorm:
            z, s = _batchnorm(z, params["bn"][i], state["bn"][i], train)
            new_bn.append(s)
        pre.append(z)
        h = model.after(act(z, _layer_kink(kink, i)))
    return h, new_bn, pre


def _resnet_forward(arch: Architecture, params, state, x, kink, train):
    """Stem, residual blocks (:func:`resnet_blocks`), global average pooling."""
    act = ACTIVATIONS[arch.activation].fn
    pre: list[jax.Array] = []
    new_bn: list[Any] = []

    def norm(z, p, s):
        if not arch.batchnorm:
            return z, None
        return _batchnorm(z, p, s, train)

    bn_p = params["bn"] if arch.batchnorm else [None] * len(params["layers"])
    bn_s = state["bn"] if arch.batchnorm else [None] * len(params["layers"])
    z, s0 = norm(_conv(arch, x, params["layers"][0]["w"]), bn_p[0], bn_s[0])
    new_bn.append(s0)
    pre.append(z)
    h = act(z, _layer_kink(kink, 0))
    for blk, layer, bp, bs in zip(resnet_blocks(arch), params["layers"][1:], bn_p[1:], bn_s[1:]):
        stats = {}
        pick = lambda name, tree: None if tree is None else tree[name]
        z1, stats["conv1"] = norm(
            _conv(arch, h, layer["conv1"]["w"], stride=blk.stride),
            pick("conv1", bp), pick("conv1", bs),
        )  # fmt: skip
        pre.append(z1)
        h1 = act(z1, _layer_kink(kink, len(pre) - 1))
        conv2 = _conv(arch, h1, layer["conv2"]["w"])
        z2, stats["conv2"] = norm(conv2, pick("conv2", bp), pick("conv2", bs))
        shortcut = h
        if blk.proj:
            shortcut, stats["proj"] = norm(
                _conv(arch, h, layer["proj"]["w"], stride=blk.stride),
                pick("proj", bp), pick("proj", bs),
            )  # fmt: skip
        new_bn.append(stats)
        z = (z2 + shortcut).astype(z2.dtype)
        pre.append(z)
        h = act(z, _layer_kink(kink, len(pre) - 1))
    return jnp.mean(h, axis=(1, 2)).astype(h.dtype), new_bn, pre


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
        kink: the activation's derivative at its kinks (traced; see :func:`jaxrelu.relu`):
            one value for every layer, or a list with one value (or array broadcastable to
            that layer's pre-activations) per activation layer.
        train: batch statistics (and updated running statistics) for batch norm.
    """
    x = x.astype(params["out"]["w"].dtype)
    h, new_bn, pre = MODELS[arch.kind].forward(arch, params, state, x, kink, train)
    logits = linear(arch, params["out"], h.reshape(h.shape[0], -1))
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
    """One kind of network: checks, parameter init, forward pass, layer map and sizes
    (``prepare``/``layer``/``after`` are the chain networks' steps, used by
    ``_chain_forward``)."""

    check: Callable[[Architecture], None]
    init: Callable[..., tuple[list, dict, Any]]
    forward: Callable[..., tuple[jax.Array, list, list[jax.Array]]]
    n_layers: Callable[[Architecture], int]
    prepare: Callable[[Architecture, jax.Array], jax.Array] | None = None
    layer: Callable[[Architecture, dict, jax.Array], jax.Array] | None = None
    after: Callable[[jax.Array], jax.Array] | None = None


MODELS: Mapping[str, _Model] = types.MappingProxyType(
    {
        "mlp": _Model(
            _check_mlp,
            _init_mlp,
            _chain_forward,
            lambda arch: arch.depth,
            lambda arch, x: x.reshape(x.shape[0], -1),
            _mlp_layer,
            lambda h: h,
        ),
        "cnn": _Model(
            _check_cnn,
            _init_cnn,
            _chain_forward,
            lambda arch: len(arch.channels),
            lambda arch, x: x.reshape(x.shape[0], *arch.in_shape),
            _cnn_layer,
            _pool,
        ),
        "resnet": _Model(
            _check_resnet,
            _init_resnet,
            lambda arch, p, s, x, k, t: _resnet_forward(
                arch, p, s, x.reshape(x.shape[0], *arch.in_shape), k, t
            ),
            lambda arch: 1 + 2 * len(resnet_blocks(arch)),
        ),
    }
)
"""Model kind -> its implementation (``"mlp"``, ``"cnn"``, ``"resnet"``)."""


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


def n_activations_by_layer(arch: Architecture, batch: int) -> tuple[int, ...]:
    """Pre-activations of each activation layer for one forward pass of ``batch``
    inputs."""
    if arch.kind == "mlp":
        return (batch * arch.width,) * arch.depth
    _, pre = _shapes(arch, batch)
    return tuple(int(math.prod(z.shape)) for z in pre)


def n_activations(arch: Architecture, batch: int) -> int:
    """Pre-activations evaluated by one forward pass of ``batch`` inputs."""
    if arch.kind == "mlp":
        return batch * arch.width * arch.depth
    _, pre = _shapes(arch, batch)
    return int(sum(math.prod(z.shape) for z in pre))


def support_is_everywhere(arch: Architecture) -> bool:
    """Whether :func:`tangent_support` is all True for ``arch`` whatever the parameters
    and inputs: every unit has a parameter of its own (the MLP's biases, batch norm's
    shifts). The CNN is not (its max pooling has ties of its own)."""
    return arch.kind != "cnn" and (arch.kind == "mlp" or bool(arch.batchnorm))


def tangent_support(
    arch: Architecture, params: dict, pre: list[jax.Array], x: jax.Array
) -> list[jax.Array]:
    r"""Where a pre-activation's gradient with respect to the parameters may be nonzero.

    For every entry of every pre-activation (``pre``, from :func:`apply` at ``params`` and
    the inputs ``x``): False only where the gradient row :math:`\partial z_u / \partial
    \theta` is exactly zero whatever derivative the activations take at their ties (a
    structural zero: every path from a parameter to the unit passes through a zero input
    or a negative pre-activation). Such a unit's derivative at its kink cannot change any
    gradient, so the lexicographic rule need not look at it. Conservative: True may still
    be a zero row.

    Every unit of the MLP (its bias) and of any network with batch norm (its shift) has a
    parameter of its own: all True. For the bias-free residual CNN without batch norm, the
    support is propagated through the network: a convolution output may move if an input
    of its window is nonzero (its weights move it) or may move (through a nonzero weight);
    a ReLU passes its input's support where the input is positive or tied.

    Raises:
        ValueError: for the CNN (its max pooling has ties of its own).
    """
    if arch.kind == "cnn":
        raise ValueError("the CNN's max pooling has ties of its own: no tangent support")
    if support_is_everywhere(arch):
        return [jnp.ones(z.shape, bool) for z in pre]
    f32 = jnp.float32
    x = x.reshape(x.shape[0], *arch.in_shape)

    def spread(t, w, stride):  # support carried by the inputs' tangents
        return _support_conv(t, (w != 0).astype(f32), stride)

    def own(nonzero, w, stride):  # the layer's own weights move it
        return _support_conv(nonzero, jnp.ones(w.shape, f32), stride)

    layers = params["layers"]
    t = own(x != 0, layers[0]["w"], 1)
    out = [t]
    k = 0
    for blk, layer in zip(resnet_blocks(arch), layers[1:]):
        z_in = pre[k]
        live, t_in = z_in > 0, t & (z_in >= 0)  # relu: value where > 0, tangent where >= 0
        w1, w2 = layer["conv1"]["w"], layer["conv2"]["w"]
        t1 = spread(t_in, w1, blk.stride) | own(live, w1, blk.stride)
        z1 = pre[k + 1]
        live1, t1_in = z1 > 0, t1 & (z1 >= 0)
        t2 = spread(t1_in, w2, 1) | own(live1, w2, 1)
        if blk.proj:
            wp = layer["proj"]["w"]
            t2 = t2 | spread(t_in, wp, blk.stride) | own(live, wp, blk.stride)
        else:
            t2 = t2 | t_in
        out += [t1, t2]
        t = t2
        k += 2
    return out


def _support_conv(indicator, kernel, stride) -> jax.Array:
    """Whether some input of each output window is flagged in ``indicator`` (exact: sums
    of 0/1 products in float32)."""
    windows = _windows(indicator.astype(jnp.float32), kernel.shape[0], stride)
    y = jnp.matmul(windows, kernel.reshape(-1, kernel.shape[-1]), precision="highest")
    return y > 0
