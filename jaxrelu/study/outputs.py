"""Everything the study writes: one versioned JSON format, safe output paths, atomic
writes with the user's permissions.

**JSON.** Every file the ``jaxrelu`` command writes (``--json``, ``results.json``,
``runs/*.json``) is one :func:`document`: ``schema_version`` (:data:`SCHEMA_VERSION`),
``kind``, the jaxrelu and JAX versions, the ``interval`` method and level, the data set,
the configuration and the ``results`` rows. The JSON Schema shipped with the package
(:func:`schema`, ``jaxrelu/study/output.schema.json``) describes it. Output is strict
JSON: NumPy scalars and arrays become numbers and lists, and a non-finite number becomes
``null`` (rows carry a ``status`` saying why), never a bare ``NaN``.

**Paths.** :func:`check_output_file` and :func:`check_output_dir` refuse, before any
work, anything but a regular file or a new path (a directory, a FIFO, a device such as
``/dev/stdout``, a symlink), and a parent directory that does not exist or is not
writable. :func:`atomic_write` replaces a file so that readers see the old or the new
contents, never a mix, and creates it with the permissions of the user's umask (like
``open()``), not the 0600 of a temporary file.
"""

from __future__ import annotations

import json
import math
import os
import stat
import tempfile
from collections.abc import Iterable
from importlib import resources
from typing import Any

import jax
import numpy as np

import jaxrelu

from . import limits
from .experiments import INTERVAL

__all__ = [
    "KINDS",
    "SCHEMA_VERSION",
    "OutputPathError",
    "atomic_write",
    "check_output_dir",
    "check_output_file",
    "document",
    "dumps",
    "loads",
    "schema",
    "to_json",
]

SCHEMA_VERSION = 1
KINDS = ("volume", "train", "divergence", "collapse", "audit", "reproduce", "run")
"""What a document holds: one CLI command's rows, a reproduce run's results, or one saved
configuration of a reproduce run (``"run"``)."""


class OutputPathError(ValueError):
    """An output path that is not safe to write (raised before any work)."""


def to_json(obj: Any) -> Any:
    """``obj`` with NumPy/JAX numbers and arrays made Python, tuples made lists and
    non-finite floats made ``None``."""
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, (np.ndarray, jax.Array)):
        return to_json(np.asarray(obj).tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    return obj


def dumps(doc: Any) -> str:
    """Strict JSON text (``allow_nan=False``) of ``to_json(doc)``."""
    return json.dumps(to_json(doc), indent=1, allow_nan=False) + "\n"


def _no_constants(name: str) -> Any:
    raise ValueError(f"not strict JSON: {name}")


def loads(text: str) -> Any:
    """Parses strict JSON (``NaN``/``Infinity`` refused)."""
    return json.loads(text, parse_constant=_no_constants)


def document(
    kind: str,
    results: list[dict[str, Any]],
    *,
    dataset: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A versioned output document (see the module docstring)."""
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {KINDS}, got {kind!r}")
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "jaxrelu_version": jaxrelu.__version__,
        "jax_version": jax.__version__,
        "interval": dict(INTERVAL),
        "dataset": dataset,
        "config": config or {},
        **extra,
        "results": results,
    }


def schema() -> dict[str, Any]:
    """The JSON Schema of :func:`document` (shipped as package data)."""
    text = resources.files(__package__).joinpath("output.schema.json").read_text("utf-8")
    return json.loads(text)


# ----------------------------------------------------------------------------- paths


def _kind_of(mode: int) -> str:
    for test, name in (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _refuse_special(path: str, what: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as err:
        raise OutputPathError(f"{what} {path}: cannot inspect it ({err.strerror})") from err
    if not stat.S_ISREG(mode):
        raise OutputPathError(
            f"{what} {path} is {_kind_of(mode)}; refusing to write over anything but a "
            "regular file or a new path"
        )


def _probe_writable(directory: str, what: str, path: str) -> None:
    """Creates and removes a temporary file in ``directory`` (``os.access`` is not
    enough: it says yes to root on read-only or virtual file systems)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".probe-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        raise OutputPathError(
            f"{what} {path} is not writable ({err.strerror or err} in {directory})"
        ) from err


def check_output_file(path: str | os.PathLike, what: str = "output") -> str:
    """The absolute path of ``path`` if it is safe to write: a regular file (not a
    symlink) or a new name in an existing, writable directory. Raises
    :class:`OutputPathError` otherwise."""
    path = os.path.abspath(os.fspath(path))
    _refuse_special(path, what)
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise OutputPathError(f"{what} {path}: no such directory {parent}")
    _probe_writable(parent, what, path)
    return path


def check_output_dir(
    path: str | os.PathLike, what: str = "output directory", files: Iterable[str] = ()
) -> str:
    """The absolute path of ``path`` once it is a writable directory (created if
    needed) in which every name of ``files`` (relative paths) is safe to write. Raises
    :class:`OutputPathError` otherwise; writes nothing else."""
    if not os.fspath(path):  # ("" would be the working directory)
        raise OutputPathError(f"{what} is empty; give a directory")
    path = os.path.abspath(os.fspath(path))
    if os.path.lexists(path) and (os.path.islink(path) or not os.path.isdir(path)):
        raise OutputPathError(
            f"{what} {path} is {_kind_of(os.lstat(path).st_mode)}, not a directory"
        )
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise OutputPathError(f"{what} {path} is not writable ({err.strerror or err})") from err
    _probe_writable(path, what, path)
    for name in files:
        full = os.path.join(path, name)
        _refuse_special(full, what + " file")
        sub = os.path.dirname(full)
        if sub != path and os.path.lexists(sub) and not os.path.isdir(sub):
            raise OutputPathError(f"{what} {sub} is {_kind_of(os.lstat(sub).st_mode)}")
    return path


def _umask() -> int:
    value = limits.proc_status("Umask")
    if value is not None:
        return int(value, 8)
    mask = os.umask(0o022)  # pragma: no cover - not Linux: read it by setting it back
    os.umask(mask)  # pragma: no cover
    return mask  # pragma: no cover


def atomic_write(path: str | os.PathLike, data: str | bytes) -> str:
    """Writes ``data`` to ``path`` atomically (a temporary file in the same directory,
    fsynced, then renamed over it) with mode ``0o666 & ~umask``; creates missing parent
    directories. Refuses a ``path`` that is not a regular file or a new name. Returns the
    absolute path."""
    path = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    _refuse_special(path, "output")
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
