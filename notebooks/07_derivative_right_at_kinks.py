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
# # A derivative that is right at kinks
#
# The seed's answer ends: *"from the pure mathematical point of view it's not plausible to
# use ReLU with backpropagation."* There is a sound answer. Nesterov's lexicographic
# differentiation (2005) and Khan & Barton's LD-derivatives (2013, 2015) give, for
# compositions of smooth and piecewise-smooth operations, a derivative that equals the true
# derivative wherever one exists and is an element of the Clarke generalized Jacobian
# everywhere else. `jaxrelu.ld_grad`, `ld_jacobian`, `ld_jvp` and `directional_derivative`
# compute it for any JAX program, one rule per primitive of its jaxpr.
#
# This notebook compares three answers at the points where they can differ: JAX's AD, the
# lexicographic derivative, and the one-sided slopes measured from values of $f$ by the
# checker.

# %%
import time

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import jaxrelu as jr

# %% [markdown]
# ## The literature's examples
#
# Kakade & Lee (2018): $f(x) = \mathrm{relu}(x) - \mathrm{relu}(-x) = x$. Bolte & Pauwels
# (2020): $g(x) = \mathrm{relu}(x) - \mathrm{relu}(-x) - x = 0$, whose AD derivative at 0
# is $-1$: a spurious slope for the zero function. And two ways of writing $x$ with
# `maximum`/`minimum`, and a guarded $\sin$.

# %%
cases = {
    "relu(x) - relu(-x)   (= x)": lambda x: jax.nn.relu(x) - jax.nn.relu(-x),
    "relu(x) - relu(-x) - x   (= 0)": lambda x: jax.nn.relu(x) - jax.nn.relu(-x) - x,
    "max(min(x, 0), x)   (= x)": lambda x: jnp.maximum(jnp.minimum(x, 0.0), x),
    "where(x == 0, 0, sin x)   (= sin x)": lambda x: jnp.where(x == 0, 0.0, jnp.sin(x)),
    "relu(x)   (kink)": jax.nn.relu,
    "|x|   (kink)": jnp.abs,
}
x0 = jnp.array(0.0)
rows = []
for name, f in cases.items():
    rep = jr.check_linearization(f, x0, jnp.array(1.0))
    rows.append(
        (
            name,
            float(jax.grad(f)(x0)),
            float(jr.ld_grad(f)(x0)),
            rep.slope_minus,
            rep.slope_plus,
            rep.verdict,
        )
    )
head = f"{'function':38s} {'jax.grad':>8s} {'ld_grad':>8s} {'left':>6s} {'right':>6s}  verdict"
print(head)
for r in rows:
    print(f"{r[0]:38s} {r[1]:8.3g} {r[2]:8.3g} {r[3]:6.3g} {r[4]:6.3g}  {r[5]}")

# %% [markdown]
# Where $f$ is differentiable (the first four rows: one-sided slopes equal), the
# lexicographic derivative is the derivative and AD is not. Where $f$ has a kink (the last
# two rows), the lexicographic derivative is one of the one-sided slopes: a limiting
# derivative, inside the Clarke interval $[\min, \max]$ of the slopes.

# %%
for _name, ad, ld, left, right, verdict in rows:
    if verdict == "kink":
        assert min(left, right) <= ld <= max(left, right)
    else:
        assert ld == left == right != ad

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
xs = jnp.linspace(-1, 1, 201)
for ax, name, where in zip(axes, list(cases)[:2], ("upper left", "lower left")):
    f = cases[name]
    ax.plot(xs, jax.vmap(f)(xs), color="k", lw=1.2, label="f")
    ad, ld = float(jax.grad(f)(0.0)), float(jr.ld_grad(f)(x0))
    ax.plot(xs, ad * xs, "--", label=f"tangent from jax.grad (slope {ad:g})")
    ax.plot(xs, ld * xs, ":", lw=2, label=f"tangent from ld_grad (slope {ld:g})")
    ax.set_title(name)
    ax.set_xlabel("x")
    ax.legend(fontsize=7, loc=where)
axes[0].set_ylabel("value")
plt.show()

# %% [markdown]
# ## A ReLU network at a planted tie
#
# A 2-layer network whose biases are set so that three first-layer units are exactly at
# 0 at the input $x_0$. AD applies `relu'(0) = 0` to all three; the lexicographic
# Jacobian with directions $M = I$ gives the Jacobian of the linear piece entered along
# $x_0 + \varepsilon e_1 + \varepsilon^2 e_2 + \dots$, and agrees with the ordinary Jacobian
# evaluated at that perturbed point. Integer weights keep every value exact.

# %%
rng = np.random.default_rng(0)
w1 = jnp.asarray(rng.integers(-3, 4, (4, 8)), jnp.float64)
w2 = jnp.asarray(rng.integers(-3, 4, (8, 2)), jnp.float64)
x = jnp.asarray(rng.integers(-2, 3, 4), jnp.float64)
b1 = -(x @ w1)  # every first-layer unit exactly at its kink
b1 = b1.at[3:].add(1.0)  # ... but the last five: three ties remain
net = lambda v: jax.nn.relu(v @ w1 + b1) @ w2
print("tied units:", jr.count_ties(net, x))
J_ad = jax.jacfwd(net)(x)
J_ld = jr.ld_jacobian(net, x)
eps = 2.0**-12
J_limit = jax.jacfwd(net)(x + eps * jnp.eye(4)[0] + eps**2 * jnp.eye(4)[1] + eps**3 * jnp.eye(4)[2])
print("AD:\n", J_ad)
print("lexicographic:\n", J_ld)
assert np.array_equal(np.asarray(J_ld), np.asarray(J_limit))
print("equal to the Jacobian at x + e e1 + e^2 e2 + e^3 e3:", True)

# %% [markdown]
# `certified_grad` chooses for you: `jax.grad`'s own result where no nonsmooth site is
# tied (certified as the gradient), the lexicographic gradient with the tied sites where
# some are.

# %%
loss = lambda v: jnp.sum(net(v) ** 2)
g, cert = jr.certified_grad(loss)(x)
print(cert.method, [(s.primitive, s.activation, s.ties) for s in cert.sites])
g_away, cert_away = jr.certified_grad(loss)(x + jnp.array([0.1, 0.03, -0.07, 0.02]))
print(cert_away.method, cert_away.reason)
assert cert.method == "lexicographic" and cert_away.method == "ad"

# %% [markdown]
# ## What it costs
#
# Away from ties `ld_jacobian` *is* `jax.jacfwd` (a forward pass finds no tie, then JAX's
# own derivative runs). At a point where every unit is tied, the lexicographic rules run at
# every ReLU. Timings below on this machine, compilation excluded. Calls this small are
# dominated by the fixed cost of an end-to-end call (tracing lookup, validation, the
# transfer); `benchmarks/run.py` measures at realistic sizes.


# %%
def mlp(seed, bias):
    ks = jax.random.split(jax.random.PRNGKey(seed), 3)
    ws = [
        jax.random.normal(k, (a, b)) / jnp.sqrt(a) for k, a, b in zip(ks, (16, 64, 64), (64, 64, 2))
    ]

    def f(v):
        for w in ws[:-1]:
            v = jax.nn.relu(v @ w + bias)
        return v @ ws[-1]

    return f


def best_of(fn, n=20):
    fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return min(times)


points = jax.random.normal(jax.random.PRNGKey(1), (4, 16))
generic, tied = mlp(0, 0.05), mlp(0, 0.0)
zero = jnp.zeros((4, 16))
jac_g, jac_t = jax.jit(jax.jacfwd(generic)), jax.jit(jax.jacfwd(tied))
timing = {
    "jax.jacfwd, generic points": best_of(lambda: jac_g(points)),
    "ld_jacobian, generic points": best_of(lambda: jr.ld_jacobian(generic, points)),
    "jax.jacfwd, every unit tied": best_of(lambda: jac_t(zero)),
    "ld_jacobian, every unit tied": best_of(lambda: jr.ld_jacobian(tied, zero)),
}
fig, ax = plt.subplots(figsize=(6, 2.6), layout="constrained")
ax.barh(list(timing), [1e3 * t for t in timing.values()], color=["C0", "C1", "C0", "C1"])
ax.set_xlabel("milliseconds per call (4 points x 16 inputs: 64 directions)")
ax.set_title("cost of the lexicographic Jacobian")
plt.show()
