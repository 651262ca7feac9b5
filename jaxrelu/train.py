"""Alias of :mod:`jaxrelu.study.engine` (moved there in 0.2.0; this name keeps working)."""

from .study.engine import *  # noqa: F403
from .study.engine import __all__ as __all__
