"""Private helpers shared by the checker and the kink analysis: argument validation,
user-frame lookup, optional dependencies."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))
_JAX_DIRS = tuple(
    os.path.dirname(os.path.abspath(m.__file__))
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
            dtype = jnp.result_type(leaf)
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
        out.append(jnp.asarray(leaf))
    return jax.tree_util.tree_unflatten(treedef, out)


def check_same_structure(a: Any, b: Any, name_a: str, name_b: str) -> None:
    ta, tb = jax.tree_util.tree_structure(a), jax.tree_util.tree_structure(b)
    if ta != tb:
        raise ValueError(f"`{name_b}` must have the same structure as `{name_a}`: {tb} vs {ta}")
    for i, (u, v) in enumerate(zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))):
        if jnp.shape(u) != jnp.shape(v):
            raise ValueError(
                f"`{name_b}` leaf {i} has shape {jnp.shape(v)}, but `{name_a}` leaf {i} has "
                f"shape {jnp.shape(u)}"
            )


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


def widest_float() -> Any:
    """float64 when x64 is enabled, else float32: the precision used for bookkeeping."""
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def eps_of(dtypes: Any) -> float:
    """Machine epsilon of the lowest-precision dtype among ``dtypes``."""
    return max(float(jnp.finfo(d).eps) for d in dtypes)


class Progress:
    """A progress bar: tqdm when installed, else one plain line on stderr per step; silent
    when disabled. ``update(note, **info)`` advances by one and shows ``info`` numbers."""

    def __init__(self, total: int, desc: str, unit: str, enabled: bool = True):
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        self.done = 0
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr)
            except ImportError:
                self.bar = None

    def update(self, note: str = "", **info: float) -> None:
        self.done += 1
        if not self.enabled:
            return
        if self.bar is not None:
            if info:
                self.bar.set_postfix({k: f"{v:.4g}" for k, v in info.items()}, refresh=False)
            self.bar.update(1)
        else:
            text = " ".join([f"{k}={v:.4g}" for k, v in info.items()] + ([note] if note else []))
            print(
                f"{self.desc} {self.unit} {self.done}/{self.total} {text}".rstrip(),
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
