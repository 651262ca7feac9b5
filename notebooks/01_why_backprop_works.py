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
# # Why backpropagation works through ReLU
#
# The classic answer: backprop only needs the **linearization property**
# $f(x) \approx f(x_0) + f'(x_0)(x - x_0)$, and ReLU has it everywhere except near 0.
# Here we measure it. `check_linearization` evaluates the Taylor remainder
# $r(h) = |f(x_0 + h d) - f(x_0) - h\,J(x_0) d|$ over a halving grid of steps $h$, estimates
# the roundoff floor, and fits the order $p$ of $r \sim h^p$: 2 where $f$ is smooth, 1 at a kink.

# %%
import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import jaxrelu as jr

# %% [markdown]
# ## A smooth function: order 2, down to the roundoff floor

# %%
f = lambda x: jnp.sum(jnp.sin(x) * x**2)
smooth64 = jr.check_linearization(f, jnp.array([0.3, -1.2, 2.0]))
smooth32 = jr.check_linearization(f, jnp.array([0.3, -1.2, 2.0], jnp.float32))
print(smooth64.verdict, round(smooth64.order, 2), "|", smooth32.verdict, round(smooth32.order, 2))
assert smooth64.verdict == smooth32.verdict == "smooth"
assert abs(smooth64.order - 2) < 0.2

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
smooth32.plot(axes[0]).set_title("float32: the floor stops the h² decay near h ~ 1e-3")
smooth64.plot(axes[1]).set_title("float64: h² down to h ~ 1e-8")
plt.tight_layout()
plt.show()

# %% [markdown]
# The remainder falls like $h^2$ until it meets the roundoff floor: about $\sqrt{\varepsilon}$
# in step size (float32 ~3e-4, float64 ~1e-8). Below it, the remainder is noise, and the
# checker ignores it.
#
# ## ReLU at 0 and near 0

# %%
at0 = {
    s: jr.check_linearization(lambda x, s=s: jr.relu(x, s), jnp.array(0.0), jnp.array(1.0))
    for s in (0.0, 0.5, 1.0)
}
near = jr.check_linearization(jr.relu, jnp.array(1e-3), jnp.array(-1.0))
for s, rep in at0.items():
    print(
        f"ReLU'(0)={s}: {rep.verdict}, order {rep.order:.2f}, one-sided slopes "
        f"{rep.slope_minus:g} / {rep.slope_plus:g}, AD slope {rep.ad_slope:g}, "
        f"in hull {rep.ad_in_hull}"
    )
print(f"near 0 (x0 = 1e-3, moving toward 0): {near.verdict}, radius {near.radius:.3g}")
assert all(r.verdict == "kink" and r.ad_in_hull for r in at0.values())
assert near.verdict == "linear" and 5e-4 <= near.radius <= 2e-3

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
at0[0.0].plot(axes[0]).set_title("relu at 0: order 1 on the + side")
near.plot(axes[1]).set_title("relu at 1e-3 toward 0: exact until the kink")
plt.tight_layout()
plt.show()

# %% [markdown]
# At the kink the remainder shrinks only like $h$: whatever value AD picks for ReLU'(0), one side
# is off by a constant slope. A step away, the remainder is *exactly* zero up to the kink
# (`radius` ≈ 1e-3): the linearization is perfect there, which is why ReLU networks train.
#
# ## The seed's property literally: the worst remainder on shrinking balls

# %%
radii = 2.0 ** -np.arange(1, 16)
net_w = jax.random.normal(jax.random.PRNGKey(0), (4, 16))
g = lambda x: jnp.sum(jr.relu(x @ net_w + 0.1))
x_in = jax.random.normal(jax.random.PRNGKey(1), (4,))
ball_smooth = jr.neighbourhood_error(lambda x: jnp.sum(jnp.tanh(x @ net_w)), x_in, radii)
ball_relu = jr.neighbourhood_error(g, x_in, radii)
ball_kink = jr.neighbourhood_error(lambda x: jnp.sum(jr.relu(x)), jnp.zeros(4), radii)
print(
    "orders: tanh net",
    round(ball_smooth.order, 2),
    "| relu net at a generic point",
    ball_relu.order,
    "| relu at 0",
    round(ball_kink.order, 2),
)
assert abs(ball_kink.order - 1) < 0.1 and abs(ball_smooth.order - 2) < 0.2

fig, ax = plt.subplots(figsize=(5, 3.6))
for res, lab in (
    (ball_smooth, "tanh net"),
    (ball_relu, "relu net, generic x0"),
    (ball_kink, "relu at 0"),
):
    ax.loglog(res.radii, np.maximum(res.error, 1e-300), "o-", ms=3, label=lab)
ax.set_xlabel("radius r")
ax.set_ylabel("max remainder on the sphere")
ax.set_ylim(1e-18, 10)
ax.legend()
plt.show()

# %% [markdown]
# The ReLU network's worst remainder is exactly 0 on small balls (the plot drops off the
# bottom) and appears abruptly once a ball reaches a kink. At 0 it is linear in $r$. So the
# seed's answer is right where it says: the property fails only in a neighbourhood of the kink.
