"""The linearization checker: a Taylor-remainder test that diagnoses kinks.

Backpropagation relies on one property, :math:`f(x) \\approx f(x_0) + J(x_0)(x - x_0)`.
:func:`check_linearization` measures it along a direction over shrinking steps, separates
truncation from roundoff, and says why it holds or fails (:class:`Verdict`). The stages
are small modules: :mod:`.problem` (validation, tracing, mode, precision), :mod:`.grid`
(steps), :mod:`.evaluate` (the measurements, one compiled program), :mod:`.remainders`
(floor and order), :mod:`.slopes` (one-sided slopes from values), :mod:`.verdict` (the
decision), :mod:`.explain` (its sentence), :mod:`.report` (results).

Matrix products are evaluated at full precision of their dtype
(``jax.default_matmul_precision("highest")``): on GPUs JAX's default would run float32
products in TF32, whose 10-bit mantissa the float32 roundoff floor does not describe.
"""

from .api import assert_linearization, check_linearization, check_many, neighbourhood_error
from .remainders import Pattern, RemainderEvidence, classify_remainders
from .report import LinearizationReport, ManyReport, NeighbourhoodError
from .slopes import Slope
from .verdict import VERDICTS, Cause, Evidence, SlopeTests, Verdict, decide

__all__ = [
    "VERDICTS",
    "Cause",
    "Evidence",
    "LinearizationReport",
    "ManyReport",
    "NeighbourhoodError",
    "Pattern",
    "RemainderEvidence",
    "Slope",
    "SlopeTests",
    "Verdict",
    "assert_linearization",
    "check_linearization",
    "check_many",
    "classify_remainders",
    "decide",
    "neighbourhood_error",
]
