"""Resource limits for the study, checked before anything is compiled or allocated.

Sizes are bounded to what the code supports (:data:`MAX_WIDTH`, :data:`MAX_DEPTH`,
:data:`MAX_CHANNELS`, :data:`MAX_SEED`, :data:`MAX_INITS`), and the memory a
configuration needs is estimated from its parameter count, batch and data size and
compared with the memory available (the device's limit on an accelerator; on the CPU the
host's available memory, capped by the process's ``RLIMIT_AS``/``RLIMIT_DATA``). A
configuration that cannot fit is refused with a :class:`ResourceLimitError` that states
the estimate. Estimates are deliberately generous (a factor :data:`SAFETY` over the
arrays counted) so that a refused run would really not have fit, and an accepted one has
room for XLA's temporaries.
"""

from __future__ import annotations

import os
import resource

import jax

__all__ = [
    "MAX_CHANNELS",
    "MAX_DEPTH",
    "MAX_EPOCHS",
    "MAX_INITS",
    "MAX_SEED",
    "MAX_WIDTH",
    "SAFETY",
    "ResourceLimitError",
    "available_bytes",
    "check_fits",
    "fmt_bytes",
    "proc_status",
]

MAX_WIDTH = 2**16
"""Widest MLP layer (65,536): one 65,536² float32 matrix is already 16 GiB."""
MAX_DEPTH = 64
"""Most hidden layers: the layers are unrolled in the compiled program, whose compile time
grows with depth (the paper goes to 6)."""
MAX_CHANNELS = 4096
"""Most channels of a CNN convolution."""
MAX_SEED = 2**32 - 1
"""Seeds are 32-bit unsigned integers (what :func:`jax.random.PRNGKey` takes everywhere)."""
MAX_INITS = 2**32
"""Initialisation ``i`` is ``fold_in(key, i)`` with a 32-bit ``i``."""
MAX_EPOCHS = 10**6
SAFETY = 2.0
"""Factor over the arrays counted by an estimate (XLA temporaries, fragmentation)."""


class ResourceLimitError(ValueError):
    """A configuration needs more memory than is available (raised before any work)."""


def fmt_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):  # pragma: no cover - not POSIX
        return None


def proc_status(field: str) -> str | None:
    """The value of ``field`` (e.g. ``"VmSize"``, ``"Umask"``) in ``/proc/self/status``,
    or None where there is no such file (not Linux)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - not Linux
        pass
    return None


def _vm_size() -> int:
    value = proc_status("VmSize")  # "123456 kB"
    return int(value.split()[0]) * 1024 if value else 0


def _rlimit_room() -> int | None:
    room = None
    for which in (resource.RLIMIT_AS, getattr(resource, "RLIMIT_DATA", None)):
        if which is None:
            continue
        soft, _ = resource.getrlimit(which)
        if soft != resource.RLIM_INFINITY:
            r = max(0, soft - _vm_size()) if which == resource.RLIMIT_AS else soft
            room = r if room is None else min(room, r)
    return room


def available_bytes() -> int:
    """Memory a new computation may use: the device's free memory on an accelerator,
    else the host's available memory (capped by this process's resource limits)."""
    if jax.default_backend() != "cpu":
        stats = jax.local_devices()[0].memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    candidates = [v for v in (_meminfo_available(), _rlimit_room()) if v is not None]
    return min(candidates) if candidates else 2**40


def check_fits(needed: int, what: str) -> None:
    """Raises :class:`ResourceLimitError` if ``needed`` bytes (an estimate, before the
    :data:`SAFETY` factor) do not fit the available memory."""
    total = int(needed * SAFETY)
    have = available_bytes()
    if total > have:
        raise ResourceLimitError(
            f"{what} needs about {fmt_bytes(total)} of memory (estimate), but only "
            f"{fmt_bytes(have)} is available; use a smaller width, depth, batch or data set"
        )
