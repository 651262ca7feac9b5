"""The jaxpr interpreter shared by the kink analysis, the lexicographic derivatives and
the checker: one evaluation loop (:mod:`.core`), one table of per-primitive rules
(:mod:`.rules` for elementwise and discrete primitives, :mod:`.reductions` for order-based
ones, :mod:`.control` for calls and control flow), static passes (:mod:`.passes`) and the
compile cache (:mod:`.driver`)."""

from .core import RULES, SiteMeta, SiteStats
from .driver import Analysis, analyse, clear_caches, trace
from .passes import lowest_float
from .reductions import APPROXIMATE_AT_TIES
from .rules import SMOOTH

__all__ = [
    "APPROXIMATE_AT_TIES",
    "RULES",
    "SMOOTH",
    "Analysis",
    "SiteMeta",
    "SiteStats",
    "analyse",
    "clear_caches",
    "lowest_float",
    "trace",
]
