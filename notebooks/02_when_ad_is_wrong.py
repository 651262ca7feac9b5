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
# # When automatic differentiation is wrong
#
# AD applies the chain rule to the program, not to the function. Where a program is
# nonsmooth but the *function* is smooth, AD can return a derivative that is simply wrong
# (Kakade & Lee 2018). The checker calls this verdict `wrong_derivative`: the remainder is of
# order 1, yet the one-sided slopes agree, so $f$ is differentiable and AD returned another value.

# %%
import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import matplotlib.pyplot as plt

import jaxrelu as jr

x0, d = jnp.array(0.0), jnp.array(1.0)
programs = {
    "relu(x) - relu(-x)   (= x)": lambda x: jax.nn.relu(x) - jax.nn.relu(-x),
    "max(x, 0) + min(x, 0) (= x)": lambda x: jnp.maximum(x, 0.0) + jnp.minimum(x, 0.0),
    "|x| as jnp.abs": jnp.abs,
    "|x| as max(x, -x)": lambda x: jnp.maximum(x, -x),
    "|x| as where(x > 0, x, -x)": lambda x: jnp.where(x > 0, x, -x),
    "|x| as sqrt(x**2 + 0)": lambda x: jnp.sqrt(x**2),
}
reports = {}
for name, f in programs.items():
    rep = jr.check_linearization(f, x0, d)
    reports[name] = rep
    print(
        f"{name:30s} verdict {rep.verdict:17s} AD {rep.ad_slope:+g}  "
        f"slopes {rep.slope_minus:+g}/{rep.slope_plus:+g}"
    )

assert reports["relu(x) - relu(-x)   (= x)"].verdict == "wrong_derivative"
assert reports["max(x, 0) + min(x, 0) (= x)"].verdict == "linear"  # right, by convention
assert reports["|x| as jnp.abs"].verdict == "kink"

# %% [markdown]
# * `relu(x) - relu(-x)` is the identity, but AD returns $0$ at 0 (ReLU'(0) = 0 on both
#   terms). With ReLU'(0) = 1 it would return 2. Only ReLU'(0) = 1/2 gives the right answer.
# * `max(x, 0) + min(x, 0)` is also the identity; JAX splits ties evenly, $0.5 + 0.5 = 1$:
#   correct by luck of convention.
# * $|x|$ written three ways gives three different AD values at 0 (all in the Clarke interval
#   $[-1, 1]$, and the checker says `kink`); `sqrt(x**2)` even returns NaN (`inconclusive`).

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
reports["relu(x) - relu(-x)   (= x)"].plot(axes[0]).set_title(
    "relu(x) - relu(-x): wrong derivative"
)
reports["|x| as jnp.abs"].plot(axes[1]).set_title("|x|: a kink, AD in the Clarke hull")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## What JAX returns at kinks, audited live

# %%
audit = jr.audit_conventions()
print(audit)
rows = {(r.expression, r.at): r for r in audit}
assert rows[("jax.nn.relu(x)", 0.0)].ad == 0.0
assert rows[("jnp.maximum(x, 0)", 0.0)].ad == 0.5
assert not rows[("relu(x) - relu(-x)  (= x)", 0.0)].in_clarke

# %% [markdown]
# The same function, $\max(x, 0)$, gets derivative 0 from `jax.nn.relu` but 0.5 from
# `jnp.maximum(x, 0)` and `jnp.clip(x, 0, None)`. Why 0 for `jax.nn.relu`? Its docstring cites
# Bertoin et al. (2021): in exact arithmetic any value in $[0, 1]$ gives the same training,
# but in floating point exact zeros do occur, and ReLU'(0) = 0 trained best with plain SGD.
# jaxrelu lets you choose: `jr.relu(x, kink_grad=s)` with `s` traced, so several conventions
# can even train side by side in one program.
