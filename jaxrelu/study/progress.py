"""Progress feedback for long study runs, readable in a terminal and in a log file.

* :class:`Progress` -- a bar for one loop. On a terminal: a tqdm bar (when tqdm is
  installed) that stays on screen when done. Otherwise (output redirected to a file or a
  pipe, or no tqdm): plain lines, one at the start, then at most one every
  ``interval`` seconds, and one at the end -- no carriage returns, no cursor escapes.
* :class:`Stages` -- the overall counter of ``jaxrelu reproduce``: ``[stage 3/31]`` with
  the elapsed time and an estimate of the time left, one line per stage.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["Progress", "Stages", "fmt_duration"]

PLAIN_INTERVAL = 10.0
"""Seconds between two plain progress lines."""


def fmt_duration(seconds: float) -> str:
    """``75.2`` -> ``'1:15'``, ``3725`` -> ``'1:02:05'``."""
    s = round(max(seconds, 0.0))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Progress:
    """A progress bar over ``total`` steps; silent when ``enabled`` is false.

    ``update(note, **info)`` advances by one and shows the ``info`` numbers."""

    def __init__(
        self,
        total: int,
        desc: str,
        unit: str,
        enabled: bool = True,
        *,
        stream: TextIO | None = None,
        interval: float = PLAIN_INTERVAL,
    ):
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.done = 0
        self.bar = None
        self._start = self._last = time.monotonic()
        if not enabled:
            return
        if _is_tty(self.stream):
            try:
                from tqdm import tqdm

                self.bar = tqdm(
                    total=total, desc=desc, unit=unit, leave=True, file=self.stream, ascii=False
                )
            except ImportError:
                self.bar = None
        if self.bar is None:
            self._line(f"started ({total} {unit}s)")

    def _line(self, text: str) -> None:
        print(f"{self.desc}: {text}", file=self.stream, flush=True)

    def update(self, note: str = "", **info: float) -> None:
        self.done += 1
        if not self.enabled:
            return
        numbers = {k: f"{v:.4g}" for k, v in info.items()}
        if self.bar is not None:
            if numbers:
                self.bar.set_postfix(numbers, refresh=False)
            self.bar.update(1)
            return
        now = time.monotonic()
        if self.done < self.total and now - self._last < self.interval:
            return
        self._last = now
        text = " ".join([f"{k}={v}" for k, v in numbers.items()] + ([note] if note else []))
        elapsed = fmt_duration(now - self._start)
        self._line(f"{self.unit} {self.done}/{self.total} ({elapsed}) {text}".rstrip())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Stages:
    """The overall stage counter: one line per stage on ``stream`` with the elapsed time
    and an estimate of the time left (the mean time of the stages computed so far, per
    kind of stage when known, times the stages left; stages loaded from a saved result
    take no time and do not count towards the mean)."""

    def __init__(self, kinds: list[str], enabled: bool = True, stream: TextIO | None = None):
        self.kinds = list(kinds)
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.index = 0
        self.start = time.monotonic()
        self._began = self.start
        self.spent: dict[str, list[float]] = {}

    @property
    def total(self) -> int:
        return len(self.kinds)

    def eta(self) -> float | None:
        """Seconds left, or None before any stage was computed."""
        all_times = [t for ts in self.spent.values() for t in ts]
        if not all_times:
            return None
        overall = sum(all_times) / len(all_times)
        left = 0.0
        for kind in self.kinds[self.index :]:
            ts = self.spent.get(kind)
            left += sum(ts) / len(ts) if ts else overall
        return left

    def begin(self, label: str) -> None:
        """Announces the next stage."""
        self._began = time.monotonic()
        if not self.enabled:
            return
        eta = self.eta()
        left = "ETA unknown" if eta is None else f"ETA {fmt_duration(eta)}"
        elapsed = fmt_duration(self._began - self.start)
        print(
            f"[stage {self.index + 1}/{self.total}] {label} (elapsed {elapsed}, {left})",
            file=self.stream,
            flush=True,
        )

    def end(self, computed: bool) -> None:
        """Closes the current stage; ``computed`` is false for a saved result."""
        if computed:
            kind = self.kinds[self.index]
            self.spent.setdefault(kind, []).append(time.monotonic() - self._began)
        self.index += 1
