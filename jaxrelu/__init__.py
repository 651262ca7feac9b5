"""jaxrelu: nonsmooth derivatives in JAX.

ReLU-family activations with a chosen derivative at the kink, a linearization checker
that diagnoses kinks, kink analysis read from the jaxpr, and the ReLU'(0) study
(Bertoin et al., NeurIPS 2021).
"""

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

__version__ = "0.1.0"

__all__ = [
    "REGISTRY",
    "ActivationInfo",
    "Kink",
    "__version__",
    "abs",
    "hard_tanh",
    "leaky_relu",
    "maximum",
    "minimum",
    "relu",
    "relu6",
]
