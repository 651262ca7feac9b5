"""Shared test configuration: float64 available everywhere, small shapes, shared fixtures,
and the ``slow`` marker that ``pytest -m "not slow"`` (the fast subset) leaves out."""

import os
import re

os.environ.setdefault("MPLBACKEND", "Agg")

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import pytest  # noqa: E402

FLOAT_DTYPES = [jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64]


@pytest.fixture(params=FLOAT_DTYPES, ids=lambda d: jnp.dtype(d).name)
def float_dtype(request):
    return request.param


# The fast subset (`pytest -m "not slow"`, under 2 minutes on 2 CPU cores) leaves out what
# takes seconds per test: every notebook, training on the digits data, end-to-end study and
# CLI runs, multi-device runs, brute-force oracles over random networks, and the
# float16/bfloat16 half of the dtype matrices (float32 and float64 stay). The full suite
# (`pytest`, CI) runs everything. Keyed on name patterns and fixtures because the test files
# have several owners; a test may also mark itself with `@pytest.mark.slow`.
SLOW_NAMES = {  # file -> regular expression searched in the test's name
    "test_notebooks.py": r"^test_notebook_executes$",
    "test_activations.py": r"^test_transforms_give_the_kink_value$",
    "test_cli.py": r"json",
    "test_kinks.py": r"brute_force",
    "test_linearization.py": r"random_relu_networks|linear_region_and_radius|error_orders",
    "test_study.py": r"reproduce|one_at_a_time|on_digits|train_comparison",
    "test_train.py": r"brute_force|lockstep|learns|divergence_is|cnn|multi_device|mixed_precision",
    "engine.py": r"^jaxrelu\.study\.engine\.train$",  # doctests that train a network
    "experiments.py": r"^jaxrelu\.study\.experiments\.volume$",
}
SLOW_FIXTURES = {"digits"}  # tests that train on the digits data
SLOW_DTYPES = {"float16", "bfloat16"}


def _is_slow(item: pytest.Item) -> bool:
    name = getattr(item, "originalname", None) or item.name
    pattern = SLOW_NAMES.get(item.path.name)
    if pattern is not None and re.search(pattern, name):
        return True
    if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    dtype = callspec.params.get("float_dtype") if callspec is not None else None
    return dtype is not None and jnp.dtype(dtype).name in SLOW_DTYPES


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _is_slow(item):
            item.add_marker(pytest.mark.slow)
