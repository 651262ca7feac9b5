"""The ReLU'(0) study: an application built on jaxrelu's toolkit.

Reproduces Bertoin et al., *Numerical influence of ReLU'(0) on backpropagation* (NeurIPS
2021) on built-in data. Modules:

* :mod:`jaxrelu.study.data` -- data sets (scikit-learn digits, MNIST IDX files, ``.npz``);
* :mod:`jaxrelu.study.models` -- MLP and CNN as plain pytrees, jaxrelu activations;
* :mod:`jaxrelu.study.engine` -- jitted, instrumented ``lax.scan`` training;
* :mod:`jaxrelu.study.experiments` -- the bifurcation-zone volume, training comparison and
  trajectory divergence (also importable from here: ``jaxrelu.study.volume``);
* :mod:`jaxrelu.study.report` -- ``jaxrelu reproduce``: the plan, resumable runs, report;
* :mod:`jaxrelu.study.cli` -- the ``jaxrelu`` command.

The study uses only the toolkit's public API (:mod:`jaxrelu`).
"""

from .experiments import divergence as divergence
from .experiments import train_comparison as train_comparison
from .experiments import volume as volume
from .experiments import wilson_interval as wilson_interval

__all__ = ["divergence", "train_comparison", "volume", "wilson_interval"]
