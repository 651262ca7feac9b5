"""Internal helpers shared by the toolkit and the study: optional dependencies, the user's
source line, tree norms and precision bookkeeping. (Argument validation: :mod:`._validate`.)"""

from __future__ import annotations

import importlib
import os
import traceback
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))
_JAX_DIRS: tuple[str, ...] = tuple(
    os.path.dirname(os.path.abspath(str(m.__file__)))
    for m in (jax, __import__("jaxlib"))
    if getattr(m, "__file__", None)
)

EXTRAS = {
    "matplotlib": "plot",
    "sklearn": "study",
    "tqdm": "study",
}


def require(module: str, extra: str | None = None, purpose: str = "") -> Any:
    """Imports an optional dependency, or raises one clear ImportError naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        extra = extra or EXTRAS.get(module.split(".")[0], "dev")
        what = f" for {purpose}" if purpose else ""
        raise ImportError(
            f"{module.split('.')[0]} is needed{what}; install it with "
            f'`pip install "jaxrelu[{extra}]"`'
        ) from err


def is_internal_file(path: str) -> bool:
    """True for files inside jax, jaxlib, jaxrelu itself or the Python standard library."""
    path = os.path.abspath(path)
    if path.startswith(_PKG_DIR + os.sep) or path.startswith(_JAX_DIRS):
        return True
    return "<frozen" in path or os.sep + "contextlib.py" in path or "functools.py" in path


def user_frame_of_exception(exc: BaseException) -> str:
    """``file:line`` of the innermost frame of ``exc`` that is in the user's code."""
    frames = traceback.extract_tb(exc.__traceback__)
    for fr in reversed(frames):
        if not is_internal_file(fr.filename):
            return f"{os.path.basename(fr.filename)}:{fr.lineno}"
    return "unknown location"


def caller_location() -> str:
    """``file:line`` of the innermost frame on the current stack outside jax/jaxrelu."""
    for fr in reversed(traceback.extract_stack()):
        if not is_internal_file(fr.filename):
            return f"{os.path.basename(fr.filename)}:{fr.lineno}"
    return "unknown"


def tree_norm(tree: Any) -> float:
    """Euclidean norm over all leaves, computed in float64 on the host."""
    return float(
        np.sqrt(sum(np.sum(np.square(np.asarray(v, np.float64))) for v in jax.tree.leaves(tree)))
    )


def trace_output(f: Callable, *args: Any, name: str = "f") -> Any:
    """``jax.eval_shape(f, *args)`` with a clear error when ``f`` cannot be traced or
    returns something that is not floating point."""
    try:
        out = jax.eval_shape(f, *args)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise TypeError(
            f"`{name}` must be a JAX-traceable function of its inputs; tracing it failed at "
            f"{user_frame_of_exception(err)} with {type(err).__name__}: {first}"
        ) from err
    leaves = jax.tree.leaves(out)
    if not leaves:
        raise TypeError(f"`{name}` returned no arrays")
    for leaf in leaves:
        dtype = getattr(leaf, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"`{name}` must return floating-point arrays; it returned dtype {dtype}"
            )
    return out


def dtype_of(x: Any) -> Any:
    """``jnp.result_type(x)``: read off a JAX array directly (the common case, several
    microseconds faster per call); anything else (NumPy arrays, whose float64 becomes
    float32 without x64, and Python scalars) goes through JAX's rules."""
    if isinstance(x, jax.Array):
        return x.dtype
    return jnp.result_type(x)


def count(mask: Any, most: int = 1) -> Any:
    """``jnp.sum(mask)`` as an int32 scalar, for a boolean or small non-negative integer
    array (each entry at most ``most``).

    On the CPU it is a matrix-vector product: the last axis is summed by ``rows @ ones``
    in float32, then the rows' counts as integers. XLA's CPU backend reduces an integer
    mask slowly; written out as float32 and summed by its matrix-vector kernel, the
    count of a 256 x 1024 pre-activation's zeros inside the training step cost about
    10 us instead of 150 us on a 2-core CPU. Exact: every row's count is an integer below
    2**24 (checked from the shape; otherwise the plain sum), and float32 products at full
    precision add integers below 2**24 exactly.

    Elsewhere (GPU, TPU) it is the integer sum itself, one reduction kernel that XLA
    fuses with the comparison, where the product takes more (the mask written out, the
    library's matrix-vector kernel, the rows' sum); on an NVIDIA H100 the two measured
    the same within noise in the training step. The choice is made when the program is
    lowered for its platform (:func:`jax.lax.platform_dependent`)."""
    mask = jnp.asarray(mask)
    plain = lambda m: jnp.sum(m, dtype=jnp.int32)
    if mask.ndim == 0 or mask.size == 0 or mask.shape[-1] * most >= 2**24:
        return plain(mask)
    return jax.lax.platform_dependent(mask, cpu=_count_by_product, default=plain)


def _count_by_product(mask: Any) -> Any:
    """:func:`count` on the CPU: ``rows @ ones`` at full float32 precision."""
    return _counts_by_product(mask[None])[0]


def _counts_by_product(masks: Any) -> Any:
    """:func:`counts` of a stack of masks on the CPU: one ``rows @ ones`` product for all
    of them, at full float32 precision, then each mask's rows summed as integers."""
    rows = masks.reshape(-1, masks.shape[-1]).astype(jnp.float32)
    per_row = jnp.dot(
        rows, jnp.ones(masks.shape[-1], jnp.float32), precision=jax.lax.Precision.HIGHEST
    )
    return jnp.sum(per_row.astype(jnp.int32).reshape(masks.shape[0], -1), axis=1, dtype=jnp.int32)


STACK_MOST = 1 << 16
"""Most elements of a mask that :func:`counts` stacks with others of its shape."""


def counts(masks: Any, most: int = 1) -> Any:
    """``jnp.stack([count(m, most) for m in masks])``: ``(len(masks),)`` int32 counts,
    where masks of one shape and dtype are stacked and, on the CPU, counted by one
    matrix-vector product (each product and each integer sum is an operation of its own,
    whose fixed cost dominates for the small pre-activations of a training step). Masks
    of more than :data:`STACK_MOST` elements are counted one by one: there the stack is
    one more pass over them (the volume search's 1,536 x 256 zero tests ran about 1%
    slower stacked on a 2-core CPU). Elsewhere each mask is its own integer sum, as in
    :func:`count`."""
    masks = [jnp.asarray(m) for m in masks]
    out: list[Any] = [None] * len(masks)
    groups: dict[tuple, list[int]] = {}
    for i, m in enumerate(masks):
        groups.setdefault((m.shape, m.dtype), []).append(i)
    for (shape, _), idx in groups.items():
        size = int(np.prod(shape, dtype=np.int64)) if shape else 0
        if len(idx) == 1 or not size or size > STACK_MOST or shape[-1] * most >= 2**24:
            for i in idx:
                out[i] = count(masks[i], most)
            continue
        plain = lambda *ms: jnp.stack([jnp.sum(m, dtype=jnp.int32) for m in ms])
        by_product = lambda *ms: _counts_by_product(jnp.stack(ms))
        group = [masks[i] for i in idx]
        each = jax.lax.platform_dependent(*group, cpu=by_product, default=plain)
        for j, i in enumerate(idx):
            out[i] = each[j]
    return jnp.stack(out) if out else jnp.zeros((0,), jnp.int32)


def widest_float() -> Any:
    """float64 when x64 is enabled, else float32: the precision used for bookkeeping."""
    return jnp.float64 if x64() else jnp.float32


def x64() -> bool:
    """Whether 64-bit mode is on (``jax_enable_x64``)."""
    return bool(jax.config.read("jax_enable_x64"))


def eps_of(dtypes: Any) -> float:
    """Machine epsilon of the lowest-precision dtype among ``dtypes``."""
    return max(float(jnp.finfo(d).eps) for d in dtypes)


def linearize(g: Callable[[Any], Any], x0: Any) -> tuple[Any, Callable[[Any], Any]]:
    """``jax.linearize(g, x0)``, or where JAX cannot partially evaluate ``g``'s JVP (a
    generic ``lax.reduce_window``: "Linearization failed to produce known values") the
    same pair from ``jax.jvp``, the JVP evaluated again for each tangent."""
    try:
        return jax.linearize(g, x0)
    except ValueError as err:
        if "Linearization failed" not in str(err):  # pragma: no cover - JAX's own error
            raise
        return g(x0), lambda v: jax.jvp(g, (x0,), (v,))[1]
