r"""The lexicographic kink value: a training step that is an element of the Clarke
subdifferential of the minibatch loss, also at ties.

With ReLU'(0) fixed to a number, backpropagation at a tied unit (a pre-activation exactly
0) follows a convention, and the result need not be a (generalized) gradient of the loss.
The lexicographic rule (Nesterov 2005; Khan and Barton 2013, 2015) resolves every tied
unit by the direction the loss actually moves in: with the parameters perturbed along
the coordinate directions in a fixed order, unit :math:`u` passes its input (slope 1) if
the first nonzero entry of :math:`\partial z_u / \partial \theta` is positive, and blocks
it (slope 0) otherwise. Units are resolved in topological order (layer by layer), each
with the slopes of the earlier ties already in place. One backward pass with these
per-unit slopes then gives the lexicographic gradient, which is the gradient wherever the
loss is differentiable and an element of its Clarke subdifferential everywhere;
:func:`jaxrelu.ld_grad` computes the same by forward mode, one column per parameter (the
tests use it as the oracle).

Cost: nothing on a step without candidate ties (the engine computes the ordinary gradient
and only then, under a :func:`jax.lax.cond`, this); otherwise, per layer with candidates,
one forward pass and one batched reverse pass per :data:`BATCH` tied units, then the
final backward pass. Candidates are the tied units whose gradient row may be nonzero
(:func:`jaxrelu.study.models.tangent_support`): the others cannot change any gradient.
The parameter order is ``jax.tree.leaves`` order, each leaf raveled, as for
:func:`jaxrelu.ld_grad`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["BATCH", "LEXICOGRAPHIC", "first_signs", "lexicographic_grad", "resolve"]

LEXICOGRAPHIC = "lexicographic"
"""The kink value that asks for the lexicographic rule (``TrainConfig(kink_grads=...)``)."""
BATCH = 2
"""Tied units resolved by one batched reverse pass."""


def first_signs(rows: Any) -> jax.Array:
    """The sign (-1, 0 or 1) of the first nonzero entry of each row of a pytree whose
    leaves have a leading axis of rows, in ``jax.tree.leaves`` order, each leaf raveled.

    Example:
        >>> import jax.numpy as jnp
        >>> first_signs({"a": jnp.array([[0.0], [0.0], [0.0]]),
        ...              "b": jnp.array([[0.0, -2.0], [3.0, 1.0], [0.0, 0.0]])}).tolist()
        [-1, 1, 0]
    """
    leaves = jax.tree.leaves(rows)
    flat = jnp.concatenate([v.reshape(v.shape[0], -1) for v in leaves], axis=1)
    nonzero = flat != 0
    first = jnp.argmax(nonzero, axis=1)
    value = jnp.take_along_axis(flat, first[:, None], axis=1)[:, 0]
    return jnp.where(jnp.any(nonzero, axis=1), jnp.sign(value), 0).astype(jnp.int32)


def resolve(
    pre_of: Callable[[Any, list[jax.Array]], Sequence[jax.Array]],
    params: Any,
    candidates: Sequence[jax.Array],
    slopes: list[jax.Array],
    batch: int = BATCH,
) -> list[jax.Array]:
    """Per-unit slopes (0 or 1) at the candidate ties, by the lexicographic rule.

    Args:
        pre_of: ``pre_of(params, slopes)`` -> the pre-activations, one array per layer in
            topological order; ``slopes[l]`` is the derivative layer ``l``'s activation
            takes where its input is 0 (it changes gradients, never values).
        params: the point.
        candidates: per layer, booleans: the tied units to resolve.
        slopes: per layer, the starting slopes (entries outside the candidates are kept).
        batch: units per batched reverse pass.

    Returns:
        ``slopes`` with every candidate set to 1 if the first nonzero entry of its
        gradient row is positive, else 0.
    """
    slopes = list(slopes)
    for layer, cand in enumerate(candidates):

        def one_layer(slopes: list[jax.Array], layer: int = layer, cand: jax.Array = cand):
            # the layer's pre-activations as a function of the parameters, with the
            # earlier layers' ties resolved (this layer's and later slopes cannot matter)
            _, vjp = jax.vjp(lambda p: pre_of(p, slopes)[layer], params)
            shape, n = cand.shape, cand.size
            dtype = slopes[layer].dtype

            def step(carry):
                s, left = carry
                idx = jnp.nonzero(left, size=batch, fill_value=n)[0]
                cot = jax.nn.one_hot(idx, n, dtype=dtype).reshape(batch, *shape)
                (rows,) = jax.vmap(vjp)(cot)
                up = (first_signs(rows) > 0).astype(dtype)
                s = s.at[idx].set(up, mode="drop")  # the padding index n is dropped
                return s, left.at[idx].set(False, mode="drop")

            flat, _ = lax.while_loop(
                lambda c: jnp.any(c[1]), step, (slopes[layer].ravel(), cand.ravel())
            )
            return [*slopes[:layer], flat.reshape(shape), *slopes[layer + 1 :]]

        slopes = lax.cond(jnp.any(cand), one_layer, lambda s: list(s), slopes)
    return slopes


def lexicographic_grad(
    loss_of: Callable[[Any, list[jax.Array]], tuple[jax.Array, Sequence[jax.Array]]],
    params: Any,
    pre: Sequence[jax.Array],
    candidates: Sequence[jax.Array],
) -> Any:
    """The lexicographic gradient of ``loss_of(·, slopes)[0]`` at ``params``.

    Args:
        loss_of: ``loss_of(params, slopes)`` -> ``(loss, pre-activations)``, with
            ``slopes`` as in :func:`resolve`.
        params: the point.
        pre: the pre-activations at ``params`` (their shapes and dtypes).
        candidates: per layer, the tied units whose gradient row may be nonzero (ties
            outside them take slope 0: their rows are zero, so any slope gives the same
            gradient).

    Returns:
        The gradient, with the structure of ``params``.
    """
    zeros = [jnp.zeros(z.shape, z.dtype) for z in pre]
    slopes = resolve(lambda p, s: loss_of(p, s)[1], params, candidates, zeros)
    return jax.grad(lambda p: loss_of(p, slopes)[0])(params)
