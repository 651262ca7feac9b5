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
# # Kinks and linear regions of a network
#
# A ReLU network is piecewise affine: inside one *activation pattern* (which ReLUs are on)
# it is exactly linear. `find_kinks` reads the program's jaxpr and reports every nonsmooth
# operation with how many elements sit exactly on a kink and how close the others are;
# `kink_radius` says how far one can move along a direction before any ReLU switches.

# %%
import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from jax import lax

import jaxrelu as jr

keys = jax.random.split(jax.random.PRNGKey(0), 6)
W1 = jax.random.normal(keys[0], (2, 24))
b1 = jax.random.normal(keys[1], (24,)) * 0.5
W2 = jax.random.normal(keys[2], (24, 12)) / 5
b2 = jax.random.normal(keys[3], (12,)) * 0.2
W3 = jax.random.normal(keys[4], (12, 1))


def mlp(x):
    h = jr.relu(x @ W1 + b1)
    h = jr.relu(h @ W2 + b2)
    return (h @ W3)[..., 0]


x0 = jnp.array([0.3, -0.2])
sites = jr.find_kinks(mlp, x0)
print(jr.summary(sites))
assert len(sites) == 2 and all(s.activation == "relu" for s in sites)

# %% [markdown]
# A small CNN (zero-padded convolution, max pooling, `jnp.maximum` written by hand):

# %%
K = jax.random.normal(keys[5], (3, 3, 1, 4))


def cnn(img):
    z = lax.conv_general_dilated(img, K, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    h = jnp.maximum(z, 0.0)
    p = lax.reduce_window(h, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    return jnp.sum(p)


img = jnp.zeros((1, 8, 8, 1)).at[0, 2:6, 3:5, 0].set(1.0)  # a bar on a zero background
cnn_sites = jr.find_kinks(cnn, img)
print(jr.summary(cnn_sites))
relu_site = cnn_sites[0]
print(
    f"{relu_site.ties} of {relu_site.size} pre-activations are exactly 0: zero padding over "
    "a zero background gives exact zeros wholesale"
)
assert relu_site.ties > relu_site.size // 2

# %% [markdown]
# ## A 2-D slice of the input space, coloured by activation pattern
#
# Each colour is one linear region. From $x_0$ we draw, along a few directions, the segment
# of length `kink_radius`: it ends exactly on a region boundary.

# %%
n = 300
g = np.linspace(-2, 2, n)
X, Y = np.meshgrid(g, g)
pts = jnp.stack([X.ravel(), Y.ravel()], axis=1)
z1 = pts @ W1 + b1
z2 = jr.relu(z1) @ W2 + b2
pattern = np.concatenate([np.asarray(z1 > 0), np.asarray(z2 > 0)], axis=1)
_, ids = np.unique(pattern, axis=0, return_inverse=True)
ids = ids.reshape(n, n)
rng = np.random.default_rng(0)
perm = rng.permutation(ids.max() + 1)

fig, ax = plt.subplots(figsize=(5.5, 5))
ax.imshow(perm[ids] % 20, extent=(-2, 2, -2, 2), origin="lower", cmap="tab20", alpha=0.8)
radii = []
for ang in np.linspace(0, 2 * np.pi, 12, endpoint=False):
    dvec = jnp.array([np.cos(ang), np.sin(ang)])
    t = jr.kink_radius(mlp, x0, dvec)
    radii.append(t)
    end = x0 + min(t, 3.0) * dvec
    ax.plot([x0[0], end[0]], [x0[1], end[1]], "k-", lw=1)
ax.plot(*x0, "ko")
ax.set_title(f"{ids.max() + 1} linear regions in the slice; segments = kink_radius")
plt.show()

# %% [markdown]
# The checker agrees: along each direction it finds `linear` with a radius within the grid's
# factor 2 of `kink_radius`, and the segment endpoint is exactly where the pattern changes.

# %%
for ang, t in list(zip(np.linspace(0, 2 * np.pi, 12, endpoint=False), radii))[:4]:
    dvec = jnp.array([np.cos(ang), np.sin(ang)])
    rep = jr.check_linearization(mlp, x0, dvec)
    print(f"angle {ang:.2f}: kink_radius {t:.4f}, checker {rep.verdict} radius {rep.radius:.4f}")
    assert rep.verdict == "linear" and t / 2 <= rep.radius <= 2 * t
