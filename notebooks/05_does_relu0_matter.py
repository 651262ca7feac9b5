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
# # Does ReLU'(0) matter in training?
#
# Two experiments from Bertoin et al. (2021), small enough to run here:
# 1. **Lockstep trajectories**: two SGD runs from one initialisation on the same minibatches,
#    ReLU'(0) = 0 and = 1, trained side by side in one jitted program. The L1 distance
#    between their weights stays exactly 0 until a minibatch puts some pre-activation exactly at 0.
# 2. **Accuracy by ReLU'(0)**, with and without batch norm, SGD vs Adam.

# %%
import jax

jax.config.update("jax_enable_x64", True)
import matplotlib.pyplot as plt
import numpy as np

from jaxrelu import study
from jaxrelu.study.data import load_digits
from jaxrelu.study.engine import TrainConfig, train

digits = load_digits()
curves = {
    dt: study.divergence(dt, steps=40, width=64, data=digits)
    for dt in ("float16", "float32", "float64")
}
for dt, c in curves.items():
    print(
        f"{dt}: first divergence at step {c['first_divergence']}, L1 at the end {c['l1'][-1]:.3g}"
    )
assert curves["float64"]["first_divergence"] is None
assert curves["float16"]["first_divergence"] is not None

fig, ax = plt.subplots(figsize=(5, 3.5))
for dt, c in curves.items():
    l1 = np.array(c["l1"])
    ax.semilogy(np.arange(1, len(l1) + 1), np.where(l1 > 0, l1, np.nan), label=dt)
ax.set_xlabel("SGD step")
ax.set_ylabel("L1 distance (0 not drawn)")
ax.legend()
plt.show()

# %% [markdown]
# At 64 (and usually 32) bits the curve is absent: the runs stay bitwise identical, exactly as
# the exact-arithmetic theory says. At 16 bits they part at the first step with an exact zero.
#
# ## Accuracy by ReLU'(0), batch norm and optimizer

# %%
results = {}
for bn in (False, True):
    for opt, lr in (("sgd", 0.1), ("adam", 3e-3)):
        cfg = TrainConfig(
            width=64,
            epochs=3,
            dtype="float16",
            mixed=(opt == "adam"),
            batchnorm=bn,
            optimizer=opt,
            learning_rate=lr,
            kink_grads=(0.0, 0.5, 1.0),
        )
        hist = train(cfg, digits, progress=False)
        results[(bn, opt)] = hist
        print(
            f"BN {bn!s:5s} {opt:4s} accuracy by ReLU'(0) {hist.kink_grads.tolist()}: "
            f"{np.round(hist.final_accuracy, 3).tolist()}  zero hits {hist.zero_hits.sum()}  "
            f"bifurcation steps {hist.bifurcation.sum(axis=0).tolist()}"
        )
assert all(h.final_accuracy.max() > 0.4 for h in results.values())  # chance: 0.1

fig, ax = plt.subplots(figsize=(6, 3.5))
labels = [f"{'BN' if bn else 'no BN'}\n{opt}" for bn, opt in results]
for j, s in enumerate((0.0, 0.5, 1.0)):
    ax.bar(
        np.arange(len(results)) + 0.25 * j,
        [h.final_accuracy[j] for h in results.values()],
        0.25,
        label=f"ReLU'(0)={s:g}",
    )
ax.set_xticks(np.arange(len(results)) + 0.25)
ax.set_xticklabels(labels)
ax.set_ylim(0.0, 1.0)
ax.set_ylabel("test accuracy (float16 compute)")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Adam runs use mixed precision here (float32 master weights): pure float16 Adam divides by
# an epsilon that rounds to 0. On this small problem the differences are small; the paper's
# large effects (ResNet18 stuck at 10% with ReLU'(0) ≥ 0.3 without batch norm) need deep
# networks and long training. `jaxrelu reproduce` runs the full comparison with several seeds.
