"""Argument validation, in one place for the toolkit and the study.

Every validator raises ``TypeError`` (wrong kind of value) or ``ValueError`` (right kind,
bad value) whose message names the argument in backticks and says what was expected, and
returns the value normalised (NumPy scalars become Python numbers).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _util

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def check_callable(f: Any, name: str = "f") -> None:
    if not callable(f):
        raise TypeError(f"`{name}` must be callable, got {type(f).__name__}")


def float_tree(x: Any, name: str) -> Any:
    """Validates a pytree of floating-point arrays and converts its leaves to JAX arrays."""
    leaves, treedef = jax.tree_util.tree_flatten(x)
    if not leaves:
        raise ValueError(f"`{name}` must contain at least one floating-point array, got {x!r}")
    out = []
    for i, leaf in enumerate(leaves):
        if isinstance(leaf, bool) or isinstance(leaf, (str, bytes)) or leaf is None:
            raise TypeError(f"`{name}` leaf {i} must be a floating-point array, got {leaf!r}")
        if isinstance(leaf, int):
            raise TypeError(
                f"`{name}` leaf {i} is the integer {leaf}; pass a float (e.g. {float(leaf)})"
            )
        try:
            dtype = _util.dtype_of(leaf)
        except TypeError as err:
            raise TypeError(
                f"`{name}` leaf {i} must be a floating-point array, got {type(leaf).__name__}"
            ) from err
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"`{name}` must hold floating-point arrays only; leaf {i} has dtype {dtype}"
                + (
                    f" (convert it, e.g. jnp.asarray({name}, jnp.float32))"
                    if jnp.issubdtype(dtype, jnp.integer) or dtype == jnp.bool_
                    else ""
                )
            )
        out.append(leaf if isinstance(leaf, jax.Array) else jnp.asarray(leaf))
    return jax.tree_util.tree_unflatten(treedef, out)


def concrete(x: Any, name: str) -> None:
    """Rejects traced values: the lexicographic functions analyse ``f`` at concrete values
    on the host, so they cannot run inside ``jax.jit``, ``jax.vmap`` or ``jax.grad``."""
    if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x)):
        raise TypeError(
            f"`{name}` is a traced value: the lexicographic functions analyse f at concrete "
            "values on the host and run outside jax.jit, jax.vmap and jax.grad (call them "
            "on concrete arrays, one point at a time)"
        )


@jax.jit
def _all_finite(leaves: list) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in leaves]))


def finite_tree(x: Any, name: str) -> None:
    """Raises ``ValueError`` naming ``name`` if a leaf is empty or holds NaN/inf (checked
    where the values live: one small reduction on the device for JAX arrays)."""
    leaves = jax.tree_util.tree_leaves(x)
    for i, leaf in enumerate(leaves):
        if np.size(leaf) == 0:
            raise ValueError(f"`{name}` leaf {i} is empty (shape {np.shape(leaf)}); give values")
    if leaves and bool(_all_finite(leaves)):
        return
    for i, leaf in enumerate(leaves):
        arr = np.asarray(leaf)
        if not np.all(np.isfinite(arr)):
            bad = "NaN" if np.any(np.isnan(arr)) else "inf"
            raise ValueError(f"`{name}` must be finite; leaf {i} holds {bad}")


def check_same_structure(a: Any, b: Any, name_a: str, name_b: str) -> None:
    ta: Any = jax.tree_util.tree_structure(a)
    tb: Any = jax.tree_util.tree_structure(b)
    if ta != tb:
        raise ValueError(f"`{name_b}` must have the same structure as `{name_a}`: {tb} vs {ta}")
    for i, (u, v) in enumerate(zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))):
        if jnp.shape(u) != jnp.shape(v):
            raise ValueError(
                f"`{name_b}` leaf {i} has shape {jnp.shape(v)}, but `{name_a}` leaf {i} has "
                f"shape {jnp.shape(u)}"
            )


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def integer(value: Any, name: str, *, lo: int | None = None, hi: int | None = None) -> int:
    """An integer (Python or NumPy) in ``[lo, hi]``."""
    if not _is_int(value):
        raise TypeError(f"`{name}` must be an integer, got {value!r}")
    v = int(value)
    if lo is not None and v < lo:
        raise ValueError(f"`{name}` must be at least {lo}, got {v}")
    if hi is not None and v > hi:
        raise ValueError(f"`{name}` must be at most {hi}, got {v}")
    return v


def positive_int(value: Any, name: str, *, hi: int | None = None) -> int:
    """An integer >= 1 (and <= ``hi`` when given)."""
    if not _is_int(value):
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
    if int(value) <= 0:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
    return integer(value, name, lo=1, hi=hi)


def number(
    value: Any,
    name: str,
    *,
    positive: bool = False,
    nonneg: bool = False,
    hi: float | None = None,
) -> float:
    """A finite real number (Python, NumPy or 0-d array), optionally > 0, >= 0, <= hi."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (numbers.Real, np.generic, np.ndarray, jax.Array)
    ):
        raise TypeError(f"`{name}` must be a real number, got {value!r}")
    arr = np.asarray(value)
    if arr.ndim != 0 or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"`{name}` must be a real number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"`{name}` must be finite, got {v}")
    if positive and not v > 0:
        raise ValueError(f"`{name}` must be positive, got {v:g}")
    if nonneg and v < 0:
        raise ValueError(f"`{name}` must be non-negative, got {v:g}")
    if hi is not None and v > hi:
        raise ValueError(f"`{name}` must be at most {hi:g}, got {v:g}")
    return v


def one_of(value: Any, choices: Iterable[Any], name: str) -> Any:
    """``value`` if it is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def float_dtype(value: Any, name: str = "dtype") -> str:
    """A floating-point dtype name from :data:`FLOAT_DTYPES`; float64 needs x64 mode."""
    if not isinstance(value, str):
        try:
            value = jnp.dtype(value).name
        except TypeError as err:
            raise TypeError(f"`{name}` must be a dtype name, got {value!r}") from err
    if value not in FLOAT_DTYPES:
        raise ValueError(f"unknown `{name}` {value!r}; choose from {', '.join(FLOAT_DTYPES)}")
    if value == "float64" and not _util.x64():
        raise ValueError(
            f"`{name}` float64 needs 64-bit mode: call "
            "jax.config.update('jax_enable_x64', True) first"
        )
    return value


def boolean(value: Any, name: str) -> bool:
    """A Python or NumPy boolean."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False, got {value!r}")
    return bool(value)


def int_tuple(
    values: Any, name: str, *, lo: int = 1, hi: int | None = None, nonempty: bool = True
) -> tuple[int, ...]:
    """A sequence of integers in ``[lo, hi]``, returned as a tuple of Python ints."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"`{name}` must be a sequence of integers, got {values!r}")
    out = tuple(integer(v, f"{name}[{i}]", lo=lo, hi=hi) for i, v in enumerate(values))
    if nonempty and not out:
        raise ValueError(f"`{name}` must not be empty")
    return out


def number_tuple(values: Any, name: str, *, nonempty: bool = True) -> tuple[float, ...]:
    """A sequence of finite real numbers, returned as a tuple of Python floats."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"`{name}` must be a sequence of numbers, got {values!r}")
    out = tuple(number(v, f"{name}[{i}]") for i, v in enumerate(values))
    if nonempty and not out:
        raise ValueError(f"`{name}` must not be empty")
    return out
