"""What the installed JAX's AD returns at the kinks of common nonsmooth expressions,
beside the one-sided slopes and the lexicographic derivative.

The jaxrelu rows are generated from :data:`jaxrelu.REGISTRY` (one row per kink of every
activation, at its default kink value), so the audit checks the registry's documented
defaults against what AD actually returns."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from . import _table
from .activations import REGISTRY, relu
from .lexicographic import directional_derivative

__all__ = ["AuditRow", "ConventionAudit", "audit_conventions"]


@dataclasses.dataclass(frozen=True)
class AuditRow:
    """What JAX's AD returns at one kink of one expression.

    Attributes:
        expression: the expression, as a user would write it.
        at: the point (the kink).
        ad: the derivative JAX's AD returns there.
        left, right: the one-sided slopes (difference quotients over a power-of-two step,
            exact for these piecewise-linear functions).
        in_clarke: whether ``ad`` lies in ``[min(left, right), max(left, right)]``.
        library: ``"jax"`` or ``"jaxrelu"``.
        lexicographic: the lexicographic derivative with direction ``+1``
            (:func:`jaxrelu.ld_jacobian`): the right slope, computed from the jaxpr.
    """

    expression: str
    at: float
    ad: float
    left: float
    right: float
    in_clarke: bool
    library: str
    lexicographic: float = float("nan")


class ConventionAudit(tuple):
    """The rows of :func:`audit_conventions`; ``str()`` is a table, ``to_dicts()`` data."""

    def to_dicts(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(r) for r in self]

    def __str__(self) -> str:
        head = (
            "expression",
            "at",
            "AD derivative",
            "left slope",
            "right slope",
            "in Clarke",
            "lexicographic",
        )
        rows = [
            (
                r.expression,
                f"{r.at:g}",
                f"{r.ad:g}",
                f"{r.left:g}",
                f"{r.right:g}",
                "yes" if r.in_clarke else "NO",
                f"{r.lexicographic:g}",
            )
            for r in self
        ]
        return _table.render(head, rows, rule=True)


def _jax_cases() -> list[tuple[str, Callable, list[float], str]]:
    jnp_max = lambda x: jnp.max(jnp.stack([x, jnp.zeros_like(x)]))
    return [
        ("jax.nn.relu(x)", jax.nn.relu, [0.0], "jax"),
        ("jax.nn.relu6(x)", jax.nn.relu6, [0.0, 6.0], "jax"),
        ("jax.nn.hard_tanh(x)", jax.nn.hard_tanh, [-1.0, 1.0], "jax"),
        ("jax.nn.leaky_relu(x)", jax.nn.leaky_relu, [0.0], "jax"),
        ("jnp.abs(x)", jnp.abs, [0.0], "jax"),
        ("jnp.maximum(x, 0)", lambda x: jnp.maximum(x, 0.0), [0.0], "jax"),
        ("jnp.minimum(x, 0)", lambda x: jnp.minimum(x, 0.0), [0.0], "jax"),
        ("jnp.clip(x, 0, None)", lambda x: jnp.clip(x, 0.0, None), [0.0], "jax"),
        ("jnp.clip(x, -1, 1)", lambda x: jnp.clip(x, -1.0, 1.0), [-1.0, 1.0], "jax"),
        ("jnp.where(x > 0, x, 0)", lambda x: jnp.where(x > 0, x, 0.0), [0.0], "jax"),
        ("jnp.max([x, 0]) (tie)", jnp_max, [0.0], "jax"),
        ("relu(x) - relu(-x)  (= x)", lambda x: jax.nn.relu(x) - jax.nn.relu(-x), [0.0], "jax"),
    ]


def _registry_cases() -> list[tuple[str, Callable, list[float], str]]:
    cases: list[tuple[str, Callable, list[float], str]] = []
    for name, info in REGISTRY.items():
        if info.arity == 2:
            at_zero: Callable = lambda x, fn=info.fn: fn(x, 0.0)
            cases.append((f"jaxrelu.{name}(x, 0)", at_zero, [0.0], "jaxrelu"))
        else:
            cases.append((f"jaxrelu.{name}(x)", info.fn, [k.at for k in info.kinks], "jaxrelu"))
    cases.append(("jaxrelu.relu(x, 1.0)", lambda x: relu(x, 1.0), [0.0], "jaxrelu"))
    return cases


def audit_conventions() -> ConventionAudit:
    """What the installed JAX's AD returns at the kinks of common nonsmooth expressions.

    For each expression and kink: the derivative from :func:`jax.grad`, the left and
    right slopes (difference quotients over a power-of-two step on each side, exact for
    these piecewise-linear functions), whether the AD value lies in the Clarke interval
    between them, and the lexicographic derivative along ``+1`` (read from the jaxpr).
    Computed live, never from a stored table.

    Returns:
        A :class:`ConventionAudit` (a tuple of :class:`AuditRow`); print it for a table.

    Example:
        >>> import jaxrelu
        >>> rows = {r.expression: r for r in jaxrelu.audit_conventions()}
        >>> rows["jax.nn.relu(x)"].ad, rows["jnp.maximum(x, 0)"].ad
        (0.0, 0.5)
        >>> rows["relu(x) - relu(-x)  (= x)"].lexicographic
        1.0
    """
    h = 2.0**-10
    rows = []
    for expr, fn, kinks, lib in _jax_cases() + _registry_cases():
        grad = jax.jit(jax.grad(fn))
        for k in kinks:
            x = jnp.float32(k)
            ad = float(grad(x))
            f0 = float(fn(x))
            left = (f0 - float(fn(jnp.float32(k - h)))) / h
            right = (float(fn(jnp.float32(k + h))) - f0) / h
            lo, hi = min(left, right), max(left, right)
            tol = 1e-6 * (1 + abs(lo) + abs(hi))
            lex = float(directional_derivative(fn, x, jnp.float32(1.0)))
            rows.append(
                AuditRow(
                    expr,
                    float(k),
                    ad,
                    round(left, 6),
                    round(right, 6),
                    lo - tol <= ad <= hi + tol,
                    lib,
                    lex,
                )
            )
    return ConventionAudit(rows)
