"""Alias of :mod:`jaxrelu.study.models` (moved there in 0.2.0; this name keeps working)."""

from .study.models import *  # noqa: F403
from .study.models import __all__ as __all__
