"""Shared test configuration: float64 available everywhere, small shapes, shared fixtures,
and the ``slow`` marker that ``pytest -m "not slow"`` (the fast subset) leaves out."""

import os
import re

os.environ.setdefault("MPLBACKEND", "Agg")

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

FLOAT_DTYPES = [jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64]


@pytest.fixture(params=FLOAT_DTYPES, ids=lambda d: jnp.dtype(d).name)
def float_dtype(request):
    return request.param


# The fast subset (`pytest -m "not slow"`, 10 minutes on 2 CPU cores) leaves out what
# takes seconds per test: every notebook, the oracle tables (checker cases, kink oracles),
# training on the digits data, end-to-end study, reproduce and CLI runs, multi-device runs,
# brute-force comparisons over random networks, and every test parametrized with float16 or
# bfloat16 (float32 and float64 stay). The full suite (`pytest`, CI) runs everything. Keyed
# on file and name patterns and on fixtures because the test files have several owners; a
# test may also mark itself with `@pytest.mark.slow`.
SLOW_NAMES = {  # file -> regular expression searched in the test's name ("." = all of it)
    "test_notebooks.py": r"^test_notebook_executes$",
    "test_checker_cases.py": r".",
    "test_kinks_oracle.py": r".",
    "test_study_reproduce.py": r".",
    "test_activations.py": r"^test_transforms_give_the_kink_value$",
    "test_cli.py": r"json|ctrl_c",
    "test_kinks.py": r"brute_force|audit_matches_jax_grad|constructed_bias",
    "test_lexicographic.py": r"away_from_ties|limiting_jacobian|max_pooling|piecewise_smooth",
    "test_linearization.py": (
        r"random_relu_networks|linear_region_and_radius|error_orders|check_many_equals_single"
        r"|every_kink_value|low_precision"
    ),
    "test_optional.py": r"training_runs",
    "test_external_kinds.py": r"searchsorted|interp|digitize|hides|below_the_floor|stays_linear",
    "test_study_ties.py": r".",
    "test_distributed.py": r".",
    "test_volume_contract.py": r".",
    "test_study.py": r"reproduce|one_at_a_time|on_digits|train_comparison",
    "test_train.py": (
        r"brute_force|lockstep|learns|divergence_is|cnn|multi_device|mixed_precision"
        r"|chunks_equal|reruns_reuse|loss_scale|divergence_bound"
    ),
    # doctests that train a network or run the whole audit
    "engine.py": r"^jaxrelu\.study\.engine\.train$",
    "experiments.py": r"^jaxrelu\.study\.experiments\.volume$",
    "audit.py": r"audit_conventions$",
}
SLOW_FIXTURES = {"digits"}  # tests that train on the digits data
SLOW_DTYPES = {"float16", "bfloat16"}


def _dtype_name(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if not isinstance(value, (type, np.dtype)):
        return None
    try:
        return jnp.dtype(value).name
    except (TypeError, ValueError):
        return None


def _is_slow(item: pytest.Item) -> bool:
    name = getattr(item, "originalname", None) or item.name
    pattern = SLOW_NAMES.get(item.path.name)
    if pattern is not None and re.search(pattern, name):
        return True
    if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    params = callspec.params.values() if callspec is not None else ()
    return any(_dtype_name(v) in SLOW_DTYPES for v in params)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _is_slow(item):
            item.add_marker(pytest.mark.slow)
