r"""Kink instrumentation shared by the training engine and the volume estimate.

* :func:`kink_hits`: how many pre-activations sit *exactly* at a kink of the activation,
  per layer. Only then can the value of the derivative at the kink change a gradient.
* :func:`kink_any`: whether any pre-activation sits exactly at a kink (the volume
  estimate's zero search, which needs no count).
* :func:`compare_gradients`: whether two gradient pytrees differ (exactly, in any entry)
  and the relative L2 norm of their difference,
  :math:`\|g_0 - g_1\|_2 / \|g_0\|_2`, computed in the widest float available.
* :func:`bifurcation_test`: the test of Bertoin et al. -- the gradient with the kink's
  derivative set to 0 against the gradient with it set to 1 -- run under a
  :func:`jax.lax.cond` only when some pre-activation hit a kink (elsewhere both gradients
  are the same computation on the same numbers, so they cannot differ).

Everything here is jittable and works on one run; the engine vmaps it over its lockstep
runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from .. import _util

__all__ = ["bifurcation_test", "compare_gradients", "kink_any", "kink_hits"]


def kink_hits(
    pre: Sequence[jax.Array], kinks: Sequence[float], mask: jax.Array | None = None
) -> jax.Array:
    """Number of entries of each pre-activation array equal to one of ``kinks``.

    Args:
        pre: pre-activations, one array per layer, batch axis first.
        kinks: the activation's kink locations.
        mask: ``(batch,)`` booleans; examples where it is false are not counted.

    Returns:
        ``(layers,)`` int32 counts.

    Example:
        >>> import jax.numpy as jnp
        >>> kink_hits([jnp.array([[0.0, 1.0], [6.0, 0.0]])], (0.0, 6.0)).tolist()
        [3]
    """
    ats = []
    for z in pre:
        at = sum((z == jnp.asarray(a, z.dtype)).astype(jnp.int32) for a in kinks)
        if mask is not None:
            at = at * mask.reshape(mask.shape + (1,) * (z.ndim - 1)).astype(jnp.int32)
        ats.append(at)
    return _util.counts(ats, most=len(kinks))


def kink_any(
    pre: Sequence[jax.Array], kinks: Sequence[float], mask: jax.Array | None = None
) -> jax.Array:
    """Whether any entry of the pre-activations equals one of ``kinks``: a boolean scalar,
    ``kink_hits(pre, kinks, mask).sum() > 0`` without the count (``pre``: arrays with a
    batch axis first, as in :func:`kink_hits`).

    On the CPU each layer is first reduced over its batch axis (a reduction that keeps the
    minor axis, which XLA's CPU backend vectorizes), then the small remainder; an
    optimization barrier keeps XLA from merging the two into one reduction over the whole
    array, which its CPU backend runs element by element (a 1,536 x 256 pre-activation's
    test took about 70-90 us this way and 170-200 us as one reduction or as
    :func:`kink_hits`' count on a 2-core CPU). Elsewhere it is one reduction per layer.

    Example:
        >>> import jax.numpy as jnp
        >>> bool(kink_any([jnp.array([[0.5, 1.0], [6.0, 2.0]])], (0.0, 6.0)))
        True
    """
    ats = []
    for z in pre:
        at = jnp.zeros(z.shape, bool)
        for a in kinks:
            at = at | (z == jnp.asarray(a, z.dtype))
        if mask is not None:
            at = at & mask.reshape(mask.shape + (1,) * (z.ndim - 1))
        ats.append(at)
    if not ats:
        return jnp.zeros((), bool)

    return lax.platform_dependent(*ats, cpu=_any_staged, default=_any_whole)


def _any_staged(*ats: jax.Array) -> jax.Array:
    """:func:`kink_any` on the CPU: each mask reduced over its first axis, then the rest."""
    parts = lax.optimization_barrier([jnp.any(at, axis=0) for at in ats])
    return jnp.any(jnp.stack([jnp.any(p) for p in parts]))


def _any_whole(*ats: jax.Array) -> jax.Array:
    """:func:`kink_any` elsewhere: one reduction per mask."""
    return jnp.any(jnp.stack([jnp.any(at) for at in ats]))


def compare_gradients(g0: Any, g1: Any) -> tuple[jax.Array, jax.Array]:
    """``(differ, rel_l2)`` for two gradient pytrees of one run.

    ``differ`` is true if any entry differs (``!=``, so a NaN counts as a difference);
    ``rel_l2`` is :math:`\\|g_0 - g_1\\|_2 / \\|g_0\\|_2` in float32 (0 when equal)."""
    wide = _util.widest_float()
    leaves0, leaves1 = jax.tree.leaves(g0), jax.tree.leaves(g1)
    differ = jnp.any(jnp.stack([jnp.any(a != b) for a, b in zip(leaves0, leaves1)]))
    num = sum(
        jnp.sum(jnp.square(a.astype(wide) - b.astype(wide))) for a, b in zip(leaves0, leaves1)
    )
    den = sum(jnp.sum(jnp.square(a.astype(wide))) for a in leaves0)
    rel = jnp.sqrt(num) / jnp.maximum(jnp.sqrt(den), jnp.finfo(wide).tiny)
    return differ, rel.astype(jnp.float32)


def bifurcation_test(
    grad_at: Callable[[float], Any], any_hit: jax.Array, runs: int | None = None
) -> tuple[jax.Array, jax.Array]:
    """Compares ``grad_at(0.0)`` with ``grad_at(1.0)`` when ``any_hit``, else reports no
    difference without computing them.

    Args:
        grad_at: the gradient as a function of the kink derivative (a Python float).
        any_hit: scalar boolean, whether some pre-activation hit a kink.
        runs: if given, the gradients have a leading axis of ``runs`` lockstep runs and
            the comparison is per run.

    Returns:
        ``(differ, rel_l2)``, scalars or ``(runs,)`` arrays (see :func:`compare_gradients`).
    """
    compare = compare_gradients if runs is None else jax.vmap(compare_gradients)
    shape = () if runs is None else (runs,)

    def both(_):
        return compare(grad_at(0.0), grad_at(1.0))

    def neither(_):
        return jnp.zeros(shape, bool), jnp.zeros(shape, jnp.float32)

    return lax.cond(any_hit, both, neither, None)
