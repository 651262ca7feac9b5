"""Alias of :mod:`jaxrelu.checker` (the checker became a package in 0.2.0; this name keeps
working)."""

from .checker import *  # noqa: F403
from .checker import __all__ as __all__
