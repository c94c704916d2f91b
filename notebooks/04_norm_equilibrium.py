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
# # 04 — SGD+WD drives the parameter norm to an equilibrium, from any init scale
#
# Talk, *"Convergence Results for GD + WD / SGD + WD"* and *"Ingredient 3"*.
#
# On a scale-invariant loss with $\|\nabla L_\gamma(\bar x)\| = \sigma$ for every $x, \gamma$
# (`toyproblems.problems.constant_sigma`), the gradient is orthogonal to $x$, so SGD+WD moves the
# squared norm by the exact map
# $$\|x_{t+1}\|^2 = (1-\eta\lambda)^2\|x_t\|^2 + \eta^2\sigma^2/\|x_t\|^2$$
# (`theory.norm_sq_update_orthogonal`): gradient noise pushes the norm up, WD pulls it down.
# Its fixed point is $\|x^*\|^2 = \sqrt{\eta/(\lambda(2-\eta\lambda))}\,\sigma$
# (`theory.equilibrium_sq_norm`). **The talk prints $\sqrt{2\eta/(\lambda(2-\eta\lambda))}\,\sigma$,
# a factor $\sqrt2$ too large** (`theory.equilibrium_sq_norm_as_stated`); both are drawn.
#
# The time to reach the equilibrium grows only like $|\ln\|x_0\|^2|$: the $T_0$ bound has slope
# $\pm 1/(2\eta\lambda)$ in $\ln\|x_0\|^2$. Without WD the norm only grows
# ($\|x_t\|^4 \approx \|x_0\|^4 + 2\eta^2\sigma^2 t$): no equilibrium, and the init scale is never forgotten.

# %%
import jax
import matplotlib.pyplot as plt
import numpy as np

from scaleinv import theory
from toyproblems import problems as P
from toyproblems.experiments import norm_trajectories, notebook_env, time_to_equilibrium

jax.config.update("jax_enable_x64", True)  # this kernel runs only float64 toy problems
QUICK, FIG_DIR, save = notebook_env()
print("quick mode:", QUICK)

ETA, WD, SIGMA = 0.1, 0.05, 1.0
prob = P.constant_sigma(dim=32, sigma=SIGMA)
scales = np.logspace(-4, 4, 9 if QUICK else 17)   # ||x0|| over 8 decades
T = 6000 if QUICK else 12000
eq = float(theory.equilibrium_sq_norm(ETA, WD, SIGMA))
eq_stated = float(theory.equilibrium_sq_norm_as_stated(ETA, WD, SIGMA))
print(f"derived equilibrium ||x*||^2 = {eq:.5f}; as stated in the talk = {eq_stated:.5f} (ratio {eq_stated / eq:.5f})")

# %% [markdown]
# ## 1. Norm trajectories with and without WD

# %%
tr_wd = norm_trajectories(prob, scales, ETA, WD, T, seed=0)
tr_no = norm_trajectories(prob, scales, ETA, 0.0, T, seed=0)
sq_wd, sq_no = np.asarray(tr_wd.sq_norm), np.asarray(tr_no.sq_norm)


def recursion(s0, weight_decay, steps):
    """Iterate the exact one-step norm map (theory) from ||x0||^2 = s0."""
    out = np.empty((len(s0), steps)); s = np.asarray(s0, float).copy()
    for t in range(steps):
        out[:, t] = s
        s = theory.norm_sq_update_orthogonal(s, ETA, weight_decay, SIGMA)
    return out


rec_wd, rec_no = recursion(scales**2, WD, T), recursion(scales**2, 0.0, T)
dev_wd = float(np.max(np.abs(sq_wd / rec_wd - 1)))
dev_no = float(np.max(np.abs(sq_no / rec_no - 1)))
tail = slice(-T // 10, None)
tail_mean = sq_wd[:, tail].mean(1)
print(f"max |measured/recursion - 1|: with WD {dev_wd:.1e}, without WD {dev_no:.1e}")
print(f"tail-mean ||x||^2 / derived equilibrium: {np.round(tail_mean / eq, 6).tolist()}")
print(f"tail-mean ||x||^2 / talk's formula: {np.round(tail_mean / eq_stated, 5).tolist()}")
print(f"final ||x||^2 without WD spans {sq_no[:, -1].min():.3g} .. {sq_no[:, -1].max():.3g}")

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
t = np.arange(1, T + 1)
cmap = plt.get_cmap("viridis")
for i, s in enumerate(scales):
    ax1.plot(t, sq_wd[i], color=cmap(i / (len(scales) - 1)), lw=1)
    ax2.plot(t, sq_no[i], color=cmap(i / (len(scales) - 1)), lw=1, label=f"||x0|| = {s:.0e}" if i % 2 == 0 else None)
    ax2.plot(t, rec_no[i], "k:", lw=0.7)
ax1.axhspan(eq / 2, 2 * eq, color="green", alpha=0.15, label="band [x*^2/2, 2 x*^2]")
ax1.axhline(eq, color="k", ls="-", lw=0.8, label="derived sqrt(eta/(lambda(2-eta lambda))) sigma")
ax1.axhline(eq_stated, color="r", ls="--", lw=0.8, label="talk: sqrt(2 eta/(lambda(2-eta lambda))) sigma")
for ax in (ax1, ax2):
    ax.set_xscale("log"); ax.set_yscale("log"); ax.set_xlabel("step t")
ax1.set_ylabel("squared parameter norm ||x_t||^2")
ax1.set_title(f"SGD + WD (eta={ETA}, lambda={WD}, sigma={SIGMA})"); ax1.legend(fontsize=7, loc="upper right")
ax2.plot([], [], "k:", label="exact norm recursion (theory)")
ax2.set_title("SGD without WD: no equilibrium"); ax2.legend(fontsize=6, loc="upper right")
save(fig, "04_norm_trajectories")
plt.show()

# %% [markdown]
# ## 2. Time to equilibrium against $\ln\|x_0\|^2$
#
# Steps until $\|x_t\|^2 \in [x^{*2}/2, 2x^{*2}]$. Large init: WD shrinks the norm by
# $(1-\eta\lambda)^2$ per step. Tiny init: the first step throws the norm up to
# $\approx\eta^2\sigma^2/\|x_0\|^2$, then WD brings it down. Both sides are linear in
# $\ln\|x_0\|^2$ with slope $\pm 1/(2\eta\lambda)$ (the $T_0$ bound; the exact decay rate gives
# $1/(-2\ln(1-\eta\lambda))$).

# %%
steps, slope_big, slope_small = time_to_equilibrium(sq_wd, scales, eq, ETA, SIGMA)   # the C6 claim's measure
pred_slope = theory.t0_slope(ETA, WD)
exact_slope = 1.0 / (-2.0 * np.log(1 - ETA * WD))
exact_steps = np.array([theory.steps_to_equilibrium(s**2, ETA, WD, SIGMA) for s in scales])
print("steps to band:", steps.tolist())
print(f"fitted slope, large init: {slope_big:.2f}; small init: {slope_small:.2f}; "
      f"T0 slope +-{pred_slope:.2f} (exact decay {exact_slope:.2f})")

# %%
fig, ax = plt.subplots(figsize=(6.2, 4.2))
ax.plot(scales**2, steps, "o", label="measured: steps into the band")
ax.plot(scales**2, exact_steps, "-", lw=1, label="exact norm recursion (theory)")
dense = np.logspace(np.log10(scales[0] ** 2), np.log10(scales[-1] ** 2), 200)
ax.plot(dense, theory.t0_bound(ETA, WD, dense), "--", label="T0 = |ln(||x0||^2/eta)| / (2 eta lambda)")
ax.set_xscale("log")
ax.set_xlabel("initial squared norm ||x0||^2 (log scale)"); ax.set_ylabel("steps to equilibrium band")
ax.set_title(f"fitted slopes {slope_small:.1f} / {slope_big:.1f} vs theory -+{pred_slope:.0f} per unit ln||x0||^2", fontsize=9)
ax.legend(fontsize=7)
save(fig, "04_time_to_equilibrium")
plt.show()

# %% [markdown]
# ## Checks

# %%
assert dev_wd < 1e-8 and dev_no < 1e-8, (dev_wd, dev_no)               # exact norm map
assert np.all(np.abs(tail_mean / eq - 1) < 0.01), tail_mean / eq        # derived equilibrium, every init
ratio_stated = tail_mean / eq_stated
assert np.all(np.abs(ratio_stated - 2**-0.5) < 0.01), ratio_stated      # talk's formula off by sqrt(2)
assert np.all(np.isfinite(steps)), steps                                # every init reached the band
assert abs(slope_big / pred_slope - 1) < 0.05, slope_big                # T0 slope, large init
assert abs(slope_small / -pred_slope - 1) < 0.05, slope_small           # T0 slope, small init
assert sq_no[:, -1].max() / sq_no[:, -1].min() > 1e3                    # no WD: init scale not forgotten
print("all checks passed")
