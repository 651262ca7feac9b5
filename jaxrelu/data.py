"""Alias of :mod:`jaxrelu.study.data` (moved there in 0.2.0; this name keeps working)."""

from .study.data import *  # noqa: F403
from .study.data import __all__ as __all__
