"""Progress feedback for long study runs: tqdm when installed, else plain lines."""

from __future__ import annotations

import sys


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
