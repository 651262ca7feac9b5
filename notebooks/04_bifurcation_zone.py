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
# # The bifurcation zone: where ReLU'(0) changes the gradient
#
# Bertoin et al. (2021): with exact arithmetic, the value of ReLU'(0) in $[0, 1]$ changes
# backprop's result only on a set of parameters of measure zero (the *bifurcation zone*
# $S_{01}$). In floating point that set has volume. The protocol: draw random
# initialisations, make one pass over the data, and compare the first-layer gradients with
# ReLU'(0) = 0 and = 1 exactly; $\theta \in S_{01}$ if any minibatch differs.
# Small settings here (the full sweep is `jaxrelu reproduce`).

# %%
import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from jaxrelu import study
from jaxrelu.study import models
from jaxrelu.study.data import load_digits

digits = load_digits()
rows = {
    dt: study.volume(dt, width=64, depth=2, batch_size=128, inits=32, data=digits)
    for dt in ("float16", "bfloat16", "float32", "float64")
}
for dt, r in rows.items():
    print(
        f"{dt:9s} P = {r['probability']:.3f}  95% CI [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]  "
        f"minibatches that differ {r['minibatch_rate']:.2f}"
    )
assert rows["float16"]["probability"] > 0.9 and rows["float64"]["in_zone"] == 0

# %% [markdown]
# ## By width and depth (16 vs 32 bits)

# %%
sweep = {"width": [16, 64, 128], "depth": [1, 2, 3]}  # width 64, depth 2 is the run above
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
for ax, (name, values) in zip(axes, sweep.items()):
    for dt in ("float16", "float32"):
        res = []
        for v in values:
            w, dep = (v, 2) if name == "width" else (64, v)
            res.append(study.volume(dt, width=w, depth=dep, batch_size=128, inits=32, data=digits))
        p = np.array([r["probability"] for r in res])
        lo = np.maximum(p - np.array([r["ci"][0] for r in res]), 0)
        hi = np.maximum(np.array([r["ci"][1] for r in res]) - p, 0)
        ax.errorbar(values, p, yerr=[lo, hi], marker="o", capsize=3, label=dt)
    ax.set_xlabel(name)
    ax.set_ylabel("P(θ in S01), 95% CI")
    ax.set_ylim(-0.05, 1.05)
    ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Where the exact zeros come from
#
# **Bias cancellation.** A pre-activation is exactly 0 when the rounded product $w \cdot x$
# equals $-b$. With 11 bits of mantissa (float16) that happens constantly; with 24 bits rarely.

# %%
arch = models.Architecture("mlp", (64,), 10, width=256, depth=1)
counts = {}
for dt in ("float16", "bfloat16", "float32", "float64"):
    params, state = models.init(arch, jax.random.PRNGKey(0), dt)
    _, _, pre = models.apply(arch, params, state, jnp.asarray(digits.x_train, dt))
    counts[dt] = int(jnp.sum(pre[0] == 0))
    print(f"{dt:9s} exact zeros among {pre[0].size} first-layer pre-activations: {counts[dt]}")
assert counts["float16"] > counts["float32"] >= counts["float64"]

# %% [markdown]
# **Zero padding.** A convolution without bias (as in ResNets and batch-normed VGGs) over a
# zero background outputs exactly 0, whatever the precision: there ReLU'(0) matters at 64 bits too.

# %%
cnn = models.Architecture("cnn", (8, 8, 1), 10, channels=(8,), batchnorm=True, init="he")
params, state = models.init(cnn, jax.random.PRNGKey(0), "float64")
_, _, pre = models.apply(
    cnn, params, state, jnp.asarray(digits.x_train[:256], "float64"), train=False
)
share = float(jnp.mean(pre[0] == 0))
print(f"float64 CNN: {100 * share:.1f}% of conv pre-activations are exactly 0")
assert share > 0.1
