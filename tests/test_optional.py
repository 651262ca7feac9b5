"""A missing optional dependency is one clear ImportError naming the extra to install."""

import builtins
import importlib

import jax.numpy as jnp
import pytest

import jaxrelu as jr
from jaxrelu import _util
from jaxrelu.study import data


@pytest.fixture
def without(monkeypatch):
    def hide(*names):
        real_import = builtins.__import__
        real_module = importlib.import_module

        def fake_import(name, *a, **k):
            if name.split(".")[0] in names:
                raise ImportError(f"No module named {name!r}")
            return real_import(name, *a, **k)

        def fake_module(name, *a, **k):
            if name.split(".")[0] in names:
                raise ImportError(f"No module named {name!r}")
            return real_module(name, *a, **k)

        monkeypatch.setattr(builtins, "__import__", fake_import)
        monkeypatch.setattr(importlib, "import_module", fake_module)

    return hide


def test_plot_without_matplotlib(without):
    rep = jr.check_linearization(jnp.sin, jnp.array(0.3), analyze_kinks=False)
    without("matplotlib")
    with pytest.raises(ImportError, match=r'pip install "jaxrelu\[plot\]"'):
        rep.plot()


def test_digits_without_sklearn(without):
    without("sklearn")
    with pytest.raises(ImportError, match=r'pip install "jaxrelu\[study\]"'):
        data.load_digits()


def test_require_names_the_extra(without):
    without("tqdm")
    with pytest.raises(ImportError, match=r"tqdm is needed for progress bars; install it with"):
        _util.require("tqdm", purpose="progress bars")


def test_training_runs_without_tqdm(without, capsys):
    from jaxrelu.study.engine import TrainConfig, train

    without("tqdm")
    ds = data.synthetic(256, 64, dim=8, num_classes=3, seed=2)  # test_train's program
    train(TrainConfig(width=8, epochs=2, batch_size=32), ds, progress=True)
    assert "epoch 2/2" in capsys.readouterr().err  # the plain-text progress line
