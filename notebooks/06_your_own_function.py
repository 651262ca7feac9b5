# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Use it on your own function: a template
#
# Replace `my_function` and `x0` below with yours. Any JAX-traceable function of one argument
# (an array or a pytree of arrays) works; the output may be a scalar, an array or a pytree.

# %%
import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import matplotlib.pyplot as plt

import jaxrelu as jr


def my_function(params):
    """Example: a loss with an L1 penalty and a hinge."""
    w, b = params["w"], params["b"]
    margin = 1.0 - (jnp.array([1.0, -1.0, 1.0]) * (jnp.array([0.5, -2.0, 1.0]) * w + b))
    return jnp.sum(jnp.maximum(margin, 0.0)) + 0.1 * jnp.sum(jnp.abs(w))


x0 = {"w": jnp.array(0.0), "b": jnp.array(0.5)}

# %% [markdown]
# ## 1. Is the derivative right here, along a random direction?

# %%
report = jr.check_linearization(my_function, x0)
print(report)
report.plot()
plt.show()

# %% [markdown]
# ## 2. Along a direction you care about (here: only `w` moves)

# %%
d = {"w": jnp.array(1.0), "b": jnp.array(0.0)}
rep_w = jr.check_linearization(my_function, x0, d)
print(rep_w.verdict, "|", rep_w.reason)
assert rep_w.verdict == "kink"  # |w| at w = 0

# %% [markdown]
# ## 3. Which operations are nonsmooth, and how close are they?

# %%
print(jr.summary(jr.find_kinks(my_function, x0)))
print("distance along d to the next switch:", jr.kink_radius(my_function, x0, d))

# %% [markdown]
# ## 4. Many points at once, and a test you can keep

# %%
points = {"w": jnp.linspace(-1, 1, 9), "b": jnp.full(9, 0.5)}
many = jr.check_many(my_function, points)
print(many.counts)
assert sum(many.counts.values()) == 9
jr.assert_linearization(jnp.tanh, jnp.array([0.1, 0.2]))  # raises with the table if not smooth
