"""The ReLU'(0) study: an application built on jaxrelu's toolkit.

Reproduces Bertoin et al., *Numerical influence of ReLU'(0) on backpropagation* (NeurIPS
2021) on built-in data. Modules:

* :mod:`jaxrelu.study.data` -- data sets (scikit-learn digits, MNIST IDX files, ``.npz``),
  checked and size-limited before they are read;
* :mod:`jaxrelu.study.models` -- MLP, CNN and bias-free residual CNN as plain pytrees,
  activations from :data:`jaxrelu.REGISTRY`, 16-bit layers rounded natively or with float32
  accumulation;
* :mod:`jaxrelu.study.ties` -- the lexicographic kink value (tied units resolved so that
  the step is an element of the Clarke subdifferential of the minibatch loss);
* :mod:`jaxrelu.study.config` -- ``TrainConfig`` and its parts (network, optimisation, run);
* :mod:`jaxrelu.study.instrument` -- zero hits and the bifurcation test, shared by the
  engine and the volume estimate;
* :mod:`jaxrelu.study.engine` -- jitted, instrumented ``lax.scan`` training
  (``TrainState``, ``init_state``, ``train_step``, ``train_epoch``, ``train``);
* :mod:`jaxrelu.study.experiments` -- the bifurcation-zone volume, training comparison and
  trajectory divergence (also importable from here: ``jaxrelu.study.volume``);
* :mod:`jaxrelu.study.collapse` -- the training-collapse experiment (residual CNN, every
  ReLU'(0) and the lexicographic rule in lockstep: ``jaxrelu.study.collapse.collapse``);
* :mod:`jaxrelu.study.plan`, :mod:`~jaxrelu.study.runner`, :mod:`~jaxrelu.study.report`,
  :mod:`~jaxrelu.study.plots`, :mod:`~jaxrelu.study.reproduce` -- ``jaxrelu reproduce``:
  what runs, resumable saved results, the markdown report, the figures, orchestration;
* :mod:`jaxrelu.study.outputs` -- the versioned JSON format (with its JSON Schema) and safe
  output paths;
* :mod:`jaxrelu.study.limits`, :mod:`~jaxrelu.study.interrupt`,
  :mod:`~jaxrelu.study.progress` -- resource limits, Ctrl-C at step boundaries, progress;
* :mod:`jaxrelu.study.cli` -- the ``jaxrelu`` command.

The study uses only the toolkit's public API (:mod:`jaxrelu`) and its internal helpers
(``_validate``, ``_table``, ``_util``). The names above are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .experiments import divergence as divergence
    from .experiments import train_comparison as train_comparison
    from .experiments import volume as volume
    from .experiments import wilson_interval as wilson_interval

__all__ = ["divergence", "train_comparison", "volume", "wilson_interval"]


def __getattr__(name: str) -> Any:
    """The re-exported names, imported on first use (as :mod:`jaxrelu`'s: the command
    line loads JAX only once it runs)."""
    if name in __all__:
        value = getattr(importlib.import_module(".experiments", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
