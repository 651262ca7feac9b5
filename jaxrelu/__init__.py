"""jaxrelu: nonsmooth derivatives in JAX.

ReLU-family activations with a chosen derivative at the kink, a linearization checker
that diagnoses kinks, kink analysis read from the jaxpr, and the ReLU'(0) study
(Bertoin et al., NeurIPS 2021).

Names are imported lazily (PEP 562): ``import jaxrelu`` loads no JAX until one is used, so
the command line handles Ctrl-C from its first instant.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    __version__: str
    from ._jaxpr import clear_caches as clear_caches
    from .activations import REGISTRY as REGISTRY
    from .activations import ActivationInfo as ActivationInfo
    from .activations import Kink as Kink
    from .activations import abs as abs
    from .activations import hard_tanh as hard_tanh
    from .activations import leaky_relu as leaky_relu
    from .activations import maximum as maximum
    from .activations import minimum as minimum
    from .activations import relu as relu
    from .activations import relu6 as relu6
    from .audit import AuditRow as AuditRow
    from .audit import ConventionAudit as ConventionAudit
    from .audit import audit_conventions as audit_conventions
    from .checker import VERDICTS as VERDICTS
    from .checker import LinearizationReport as LinearizationReport
    from .checker import ManyReport as ManyReport
    from .checker import NeighbourhoodError as NeighbourhoodError
    from .checker import Verdict as Verdict
    from .checker import assert_linearization as assert_linearization
    from .checker import check_linearization as check_linearization
    from .checker import check_many as check_many
    from .checker import neighbourhood_error as neighbourhood_error
    from .kinks import KinkSite as KinkSite
    from .kinks import count_ties as count_ties
    from .kinks import find_kinks as find_kinks
    from .kinks import kink_radius as kink_radius
    from .kinks import kink_sites as kink_sites
    from .kinks import summary as summary
    from .lexicographic import Certificate as Certificate
    from .lexicographic import UndecidedTieWarning as UndecidedTieWarning
    from .lexicographic import certified_grad as certified_grad
    from .lexicographic import directional_derivative as directional_derivative
    from .lexicographic import ld_grad as ld_grad
    from .lexicographic import ld_jacobian as ld_jacobian
    from .lexicographic import ld_jvp as ld_jvp

_LAZY = {
    "clear_caches": "._jaxpr",
    "REGISTRY": ".activations",
    "ActivationInfo": ".activations",
    "Kink": ".activations",
    "abs": ".activations",
    "hard_tanh": ".activations",
    "leaky_relu": ".activations",
    "maximum": ".activations",
    "minimum": ".activations",
    "relu": ".activations",
    "relu6": ".activations",
    "AuditRow": ".audit",
    "ConventionAudit": ".audit",
    "audit_conventions": ".audit",
    "VERDICTS": ".checker",
    "LinearizationReport": ".checker",
    "ManyReport": ".checker",
    "NeighbourhoodError": ".checker",
    "Verdict": ".checker",
    "assert_linearization": ".checker",
    "check_linearization": ".checker",
    "check_many": ".checker",
    "neighbourhood_error": ".checker",
    "KinkSite": ".kinks",
    "count_ties": ".kinks",
    "find_kinks": ".kinks",
    "kink_radius": ".kinks",
    "kink_sites": ".kinks",
    "summary": ".kinks",
    "Certificate": ".lexicographic",
    "UndecidedTieWarning": ".lexicographic",
    "certified_grad": ".lexicographic",
    "directional_derivative": ".lexicographic",
    "ld_grad": ".lexicographic",
    "ld_jacobian": ".lexicographic",
    "ld_jvp": ".lexicographic",
}
"""Public name -> the submodule that defines it."""


def __getattr__(name: str) -> Any:
    """Imports a public name (or a submodule, as ``jaxrelu.kinks``; or reads
    ``__version__``) on first use."""
    if name == "__version__":
        from importlib import metadata

        try:
            value: Any = metadata.version("jaxrelu")
        except metadata.PackageNotFoundError:  # pragma: no cover - from a source tree
            value = "0+unknown"
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    elif importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "REGISTRY",
    "VERDICTS",
    "ActivationInfo",
    "AuditRow",
    "Certificate",
    "ConventionAudit",
    "Kink",
    "KinkSite",
    "LinearizationReport",
    "ManyReport",
    "NeighbourhoodError",
    "UndecidedTieWarning",
    "Verdict",
    "__version__",
    "abs",
    "assert_linearization",
    "audit_conventions",
    "certified_grad",
    "check_linearization",
    "check_many",
    "clear_caches",
    "count_ties",
    "directional_derivative",
    "find_kinks",
    "hard_tanh",
    "kink_radius",
    "kink_sites",
    "ld_grad",
    "ld_jacobian",
    "ld_jvp",
    "leaky_relu",
    "maximum",
    "minimum",
    "neighbourhood_error",
    "relu",
    "relu6",
    "summary",
]
