"""jaxrelu: nonsmooth derivatives in JAX.

ReLU-family activations with a chosen derivative at the kink, a linearization checker
that diagnoses kinks, kink analysis read from the jaxpr, and the ReLU'(0) study
(Bertoin et al., NeurIPS 2021).
"""

from importlib import metadata as _metadata

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

try:
    __version__: str = _metadata.version("jaxrelu")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

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
