"""One table renderer and one way to print numbers, missing values and intervals, for
every table jaxrelu prints or writes (reports, the CLI, the kink summary, the audit)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

MISSING = "-"


def fmt_value(v: Any, digits: int = 4) -> str:
    """A cell: floats to ``digits`` significant digits, ``None``/NaN as :data:`MISSING`."""
    if v is None:
        return MISSING
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return MISSING
        return f"{v:.{digits}g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt_value(x, digits) for x in v) + "]"
    return str(v)


def fmt_interval(p: float | None, ci: Sequence[float] | None, digits: int = 3) -> str:
    """A proportion with its interval, e.g. ``0.450 [0.35, 0.55]``; :data:`MISSING` if
    ``p`` is None."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return MISSING
    if ci is None:
        return f"{p:.{digits}f}"
    lo, hi = ci
    return f"{p:.{digits}f} [{lo:.{digits - 1}f}, {hi:.{digits - 1}f}]"


def render(
    head: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    style: str = "text",
    right: Sequence[int] = (),
    rule: bool = False,
) -> str:
    """Renders a table.

    Args:
        head: column titles.
        rows: cells (strings are used as they are, anything else through
            :func:`fmt_value`).
        style: ``"text"`` (aligned columns, two spaces apart) or ``"markdown"``.
        right: indices of right-aligned columns (text style).
        rule: a dashed line under the header (text style).
    """
    cells = [[c if isinstance(c, str) else fmt_value(c) for c in r] for r in rows]
    if style == "markdown":
        out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        out += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in cells]
        return "\n".join(out)
    if style != "text":
        raise ValueError(f"`style` must be 'text' or 'markdown', got {style!r}")
    widths = [max(len(r[i]) for r in [list(head), *cells]) for i in range(len(head))]

    def line(r: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(r)
        ).rstrip()

    out = [line(head)]
    if rule:
        out.append("  ".join("-" * w for w in widths))
    out += [line(r) for r in cells]
    return "\n".join(out)
