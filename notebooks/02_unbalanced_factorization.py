# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 — Unbalanced matrix factorization: GD vs Adam vs the scale-invariant fix
#
# Talk, Ex 2 (*"Our Hypothesis"*) and *"Ingredient 1"*: $L(A, B) = \tfrac12\|AB^\top - Y\|_F^2$,
# $A(0) = (\alpha, 0)^\top$, $B(0) = (\alpha^{-1}, 0)^\top$, $Y = 0.5\cdot\mathbf 1\mathbf 1^\top$.
#
# * The model $AB^\top$ is 2-homogeneous, and the init is **unbalanced**: the gradient in $B$ is
#   $\alpha$ times larger in scale than the one in $A$, so any single LR that keeps GD stable
#   ($\eta \lesssim 1/\alpha^2$) moves $A$ by a negligible amount. Best-tuned GD stalls at
#   the *B-only optimum* 0.25; Adam (per-coordinate step sizes) solves it.
# * The normalized factorization $L = \tfrac12\|AB^\top/\|AB^\top\|_F - Y\|_F^2$ is 0-homogeneous
#   in $A$ and in $B$; with GD+WD the time to solve grows only **logarithmically** in $\alpha$
#   (talk, "Convergence Results for GD + WD": $T_0 \lesssim \tfrac{1}{2\eta\lambda}|\ln(\|x_0\|^2/\eta)|$).

# %%
import jax
import matplotlib.pyplot as plt
import numpy as np
import optax

from scaleinv import theory
from toyproblems import problems as P
from toyproblems.experiments import best_lr_curve, loglog_slope, normalized_mf_steps, notebook_env

jax.config.update("jax_enable_x64", True)  # this kernel runs only float64 toy problems
QUICK, FIG_DIR, save = notebook_env()
print("quick mode:", QUICK)

# %% [markdown]
# ## 1. $\alpha = 100$: best-of-grid GD vs Adam, and the normalized model with GD+WD

# %%
ALPHA, EPS = 100.0, 1e-3
lrs = np.logspace(-7, 0, 15 if QUICK else 29)
T = 5000 if QUICK else 20000
prob = P.mf()
gd = best_lr_curve(optax.sgd, prob, ALPHA, lrs, T, EPS)
adam = best_lr_curve(optax.adam, prob, ALPHA, lrs, T, EPS)
ETA, WD = 0.1, 0.1
nmf_curves, _ = normalized_mf_steps([ALPHA], ETA, WD, T, EPS)
nmf_curve = nmf_curves[0]
nmf_steps = float(np.argmax(nmf_curve < EPS)) if (nmf_curve < EPS).any() else np.inf
t0_100 = max(float(theory.t0_bound(ETA, WD, ALPHA**2)), float(theory.t0_bound(ETA, WD, ALPHA**-2.0)))
plateau = prob.meta["b_only_optimum"]
print(f"GD   (best of {len(lrs)} LRs, lr={gd['lr']:.1g}): final loss {gd['final']:.4f}  (B-only optimum {plateau})")
print(f"Adam (best of {len(lrs)} LRs, lr={adam['lr']:.1g}): final loss {adam['final']:.2e}, < {EPS} at step {adam['steps']:.0f}")
print(f"normalized MF, GD+WD (eta={ETA}, lambda={WD}): < {EPS} at step {nmf_steps:.0f}; T0 = {t0_100:.0f}")

# %%
fig, ax = plt.subplots(figsize=(6.2, 4.2))
t = np.arange(1, T + 1)
ax.plot(t, gd["curve"], label=f"GD, best LR {gd['lr']:.0e}")
ax.plot(t, np.maximum(adam["curve"], 1e-14), label=f"Adam, best LR {adam['lr']:.0e}")
ax.plot(t, np.maximum(nmf_curve, 1e-14), label=f"normalized MF, GD+WD (eta={ETA}, lambda={WD})")
ax.axhline(plateau, color="gray", ls=":", label="B-only optimum 0.25 (theory)")
ax.axvline(t0_100, color="C2", ls="--", lw=0.8, label="T0 bound for GD+WD")
ax.set_xscale("log"); ax.set_yscale("log"); ax.set_ylim(1e-14, 2)  # floor: values below 1e-14 are float64 round-off (~1e-33)
ax.set_xlabel("step"); ax.set_ylabel("loss  1/2 ||M - Y||_F^2")
ax.set_title("Ex 2, alpha = 100")
ax.legend(fontsize=7)
save(fig, "02_alpha100_curves")
plt.show()

# %% [markdown]
# ## 2. Steps to loss $< 10^{-3}$ against the imbalance $\alpha$ (log axes)
#
# GD and Adam: best LR of the grid per $\alpha$. GD cannot be run far (its step count grows
# polynomially); the normalized model is run over four decades of $\alpha$, with the $T_0$
# bound (for the slower of the two groups, $\|A_0\|^2 = \alpha^2$, $\|B_0\|^2 = \alpha^{-2}$) beside it.

# %%
alphas_small = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
T2 = 20000 if QUICK else 100000
gd_steps = np.array([best_lr_curve(optax.sgd, prob, a, lrs, T2, EPS)["steps"] for a in alphas_small])
adam_steps = np.array([best_lr_curve(optax.adam, prob, a, lrs, T2, EPS)["steps"] for a in alphas_small])
alphas_wide = np.logspace(0, 4, 5 if QUICK else 9)
_, nmf_steps_wide = normalized_mf_steps(alphas_wide, ETA, WD, 3000, EPS)
t0 = np.maximum(theory.t0_bound(ETA, WD, alphas_wide**2), theory.t0_bound(ETA, WD, alphas_wide**-2.0))
fin = np.isfinite(gd_steps)
e_gd = loglog_slope(alphas_small[fin], gd_steps[fin])
e_adam = loglog_slope(alphas_small, adam_steps)
big = alphas_wide >= 10
slope_wd = float(np.polyfit(np.log(alphas_wide[big] ** 2), nmf_steps_wide[big], 1)[0])
print("GD steps  ", gd_steps.tolist(), f"-> exponent {e_gd:.2f}")
print("Adam steps", adam_steps.tolist(), f"-> exponent {e_adam:.2f}")
print("GD+WD normalized steps", nmf_steps_wide.tolist(), "T0", np.round(t0).tolist())
print(f"GD+WD: d steps / d ln(alpha^2) = {slope_wd:.1f}; T0 slope 1/(2 eta lambda) = {theory.t0_slope(ETA, WD):.1f}")

# %%
fig, ax = plt.subplots(figsize=(6.2, 4.2))
ax.plot(alphas_small, gd_steps, "o-", label=f"GD (best LR), fitted exponent {e_gd:.2f}")
ax.plot(alphas_small, adam_steps, "s-", label=f"Adam (best LR), fitted exponent {e_adam:.2f}")
ax.plot(alphas_wide, nmf_steps_wide, "^", label="normalized MF, GD+WD: measured")
ax.plot(alphas_wide, t0, "--", color="C2", label="T0 = |ln(||x0||^2/eta)| / (2 eta lambda) (theory)")
ax.set_xscale("log"); ax.set_yscale("log")
ax.set_xlabel("imbalance alpha  (A0 = alpha e1, B0 = e1/alpha)"); ax.set_ylabel(f"steps to loss < {EPS}")
ax.set_title("Steps to solve vs imbalance")
ax.legend(fontsize=7)
save(fig, "02_steps_vs_alpha")
plt.show()

# %% [markdown]
# ## Checks

# %%
assert gd["final"] >= 0.5 * plateau, f"best GD reached {gd['final']} (expected to stall near {plateau})"
assert adam["final"] < EPS, adam["final"]
assert nmf_steps <= 1.5 * t0_100, (nmf_steps, t0_100)
assert np.all(nmf_steps_wide <= 1.5 * t0), (nmf_steps_wide, t0)       # T0 holds up to a constant
assert e_gd >= 1.5 and e_adam <= 1.1, (e_gd, e_adam)                    # GD polynomial, Adam ~linear
assert abs(slope_wd / theory.t0_slope(ETA, WD) - 1) < 0.25, slope_wd     # log dependence, T0's slope
print("all checks passed")
