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
# # 05 — Relative global clipping removes the spikes of heavy-tailed gradient noise
#
# Talk, *"Ingredient 3: Global Relative Clipping"*; paper Sec. 5.
#
# With heavy-tailed gradient noise, one huge stochastic gradient blows the norm up
# (it is orthogonal to $x$ on a scale-invariant loss: $\|x_{t+1}\|^2 = (1-\eta\lambda)^2\|x_t\|^2
# + \eta^2\|g_t\|^2$), the effective LR $\eta/\|x\|^2$ collapses and training stalls until WD has
# shrunk the norm back. Relative global clipping caps the gradient at
# $\|g\| \le \sqrt{2C\lambda/\eta}\,\|x\|$ (`scaleinv.optim.sgd_wd_rgc`), so the squared norm
# can grow by at most $(1-\eta\lambda)^2 + 2C\eta\lambda$ per step
# (`theory.max_sq_norm_growth_with_clip`). At the constant-$\sigma$ equilibrium
# $\|g\|/\|x\| = \sqrt{\lambda(2-\eta\lambda)/\eta}$, so for $C \ge 1$ it never fires there: it
# only cuts the tail. The fraction of clipped steps is predicted by a mean-field balance
# $v = \mathbb E[\min(f^2, Cv)]$, rate $= P(f^2 > Cv)$ (`scaleinv.theory.predicted_clip_rate`).
#
# Noise model (part 1): each stochastic loss is multiplied by $f_\gamma$, with probability 1% a
# Pareto(2.5) spike of at least 10x, normalised to $\mathbb E f^2 = 1$
# (`toyproblems.experiments.heavy_tailed`, `toyproblems.problems.noise_factor_sampler`).

# %%
import jax
import matplotlib.pyplot as plt
import numpy as np

from scaleinv import theory
from toyproblems import problems as P
from toyproblems.experiments import clip_rate_vs_C, heavy_tailed, norm_trajectories, notebook_env

jax.config.update("jax_enable_x64", True)  # this kernel runs only float64 toy problems
QUICK, FIG_DIR, save = notebook_env()
print("quick mode:", QUICK)
NOISE = dict(heavy_tail=2.5, spike_prob=0.01, spike_scale=10.0)

# %% [markdown]
# ## 1. A real scale-invariant loss with heavy-tailed noise: loss and norm, clipping off / on
#
# Normalized linear regression, SGD with 8 samples per step, $\eta = 0.1$, $\lambda = 0.05$.
# Here the per-batch gradient norm on the sphere is *not* constant (it varies with the sampled
# rows), so clipping also trims ordinary large batches and fires more often than on the
# constant-$\sigma$ loss of part 2.

# %%
ETA, WD, C = 0.1, 0.05, 2.0
T = 8000 if QUICK else 30000
lin = P.normalized_linreg(dim=16, n=64, noise=0.3, batch=8, data_seed=0)
hlin = heavy_tailed(lin, **NOISE)
scales = np.array([1.0])
plain = norm_trajectories(hlin, scales, ETA, WD, T, seed=0, eval_fn=lin.meta["full_loss"])
clipd = norm_trajectories(hlin, scales, ETA, WD, T, seed=0, C=C, eval_fn=lin.meta["full_loss"])


loss_plain, loss_clip = np.asarray(plain.loss[0]), np.asarray(clipd.loss[0])  # full-batch loss
sq_plain, sq_clip = np.asarray(plain.sq_norm[0]), np.asarray(clipd.sq_norm[0])
burn = T // 10
L_min = float(min(loss_plain.min(), loss_clip.min()))
excess = lambda L: L[burn:] - L_min  # noqa: E731
spike = lambda s: float(np.max(s[burn:]) / np.median(s[burn:]))  # noqa: E731
growth = lambda s: s[1:] / s[:-1]  # noqa: E731
bound = theory.max_sq_norm_growth_with_clip(ETA, WD, C)
print(f"norm spike max/median after burn-in: no clip {spike(sq_plain):.2f}, clip {spike(sq_clip):.2f}")
print(f"max one-step ||x||^2 growth: no clip {growth(sq_plain).max():.3f}, clip {growth(sq_clip).max():.4f} (bound {bound:.4f})")
print(f"mean excess full loss after burn-in: no clip {excess(loss_plain).mean():.2e}, clip {excess(loss_clip).mean():.2e}")
print(f"fraction of steps clipped: {np.asarray(clipd.clipped[0])[burn:].mean():.4f}")

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
t = np.arange(T)
smooth = lambda y, w=50: np.convolve(y, np.ones(w) / w, mode="same")  # noqa: E731
for y, name in ((loss_plain, "SGD + WD"), (loss_clip, f"SGD + WD + relative global clipping (C={C:g})")):
    line, = ax1.plot(t, y - L_min, lw=0.4, alpha=0.3)
    ax1.plot(t[25:-25], smooth(y - L_min)[25:-25], lw=1.3, color=line.get_color(), label=name + " (50-step mean)")
ax1.set_yscale("log"); ax1.set_xlabel("step"); ax1.set_ylabel("full-batch loss minus best seen")
ax1.set_title("heavy-tailed noise: loss spikes"); ax1.legend(fontsize=7)
ax2.plot(t, sq_plain, lw=0.7, label="SGD + WD")
ax2.plot(t, sq_clip, lw=0.7, label=f"SGD + WD + clipping (C={C:g})")
ax2.set_yscale("log"); ax2.set_xlabel("step"); ax2.set_ylabel("squared parameter norm ||x_t||^2")
ax2.set_title("norm spikes"); ax2.legend(fontsize=7)
save(fig, "05_spikes")
plt.show()

# %% [markdown]
# ## 2. Fraction of clipped steps against $C$ (constant-$\sigma$ loss, Pareto noise)
#
# Here $\|\nabla L_\gamma(\bar x)\| = \sigma f_\gamma$ exactly, which is what the mean-field
# prediction assumes, with $f$ a Pareto(2.5) factor on *every* step (normalised to
# $\mathbb E f^2 = 1$), so the rate depends on $C$. Started at the equilibrium norm; the first
# 10% of steps are discarded.

# %%
cprob = P.constant_sigma(dim=64, sigma=1.0, heavy_tail=2.5)
ETA2, WD2 = 0.1, 0.01
T2 = 20000 if QUICK else 60000
Cs = np.array([1.5, 2.0, 4.0, 8.0, 16.0])
eq = float(theory.equilibrium_sq_norm(ETA2, WD2, 1.0))
rates, tr_c = clip_rate_vs_C(cprob, Cs, ETA2, WD2, T2, x0_scale=np.sqrt(eq), seed=0, burn_in=T2 // 10)
pred = np.array([theory.predicted_clip_rate(cprob.meta["factor_np"], c, 0)[0] for c in Cs])
# spike probability of the noise itself: P(f^2 > C) with E f^2 = 1 (clipping at the unclipped equilibrium)
f2 = cprob.meta["factor_np"](np.random.default_rng(1), 2_000_000) ** 2
naive = np.array([np.mean(f2 > c) for c in Cs])
for c, r, p in zip(Cs, rates, pred):
    print(f"C = {c:4.1f}: clipped {r:.4f} of steps, mean-field prediction {p:.4f}")

# %%
fig, ax = plt.subplots(figsize=(6.2, 4.2))
ax.plot(Cs, rates, "o", label="measured fraction of clipped steps")
Cd = np.linspace(Cs[0], Cs[-1], 30)
ax.plot(Cd, [theory.predicted_clip_rate(cprob.meta["factor_np"], c, 0, n=400_000)[0] for c in Cd], "-",
        label="mean-field prediction P(f^2 > C v), v = E min(f^2, C v)")
ax.plot(Cs, naive, ":", label="P(f^2 > C) (no feedback of clipping on the norm)")
ax.axhline(0.01, color="gray", ls="--", lw=0.8, label="talk: clipping on ~1% of steps")
ax.set_xscale("log"); ax.set_yscale("log")
ax.set_xticks(Cs, [f"{c:g}" for c in Cs]); ax.xaxis.set_minor_formatter(plt.NullFormatter())
ax.set_xlabel("clipping constant C"); ax.set_ylabel("fraction of steps clipped")
ax.set_title(f"relative global clipping rate (eta={ETA2}, lambda={WD2})")
ax.legend(fontsize=7)
save(fig, "05_clip_rate")
plt.show()

# %% [markdown]
# ## Checks

# %%
assert growth(sq_clip).max() <= bound * (1 + 1e-12), (growth(sq_clip).max(), bound)   # hard cap
assert growth(sq_plain).max() > 2 * bound                                              # unclipped spikes exceed it
assert spike(sq_clip) - 1 <= 0.5 * (spike(sq_plain) - 1), (spike(sq_clip), spike(sq_plain))
assert excess(loss_clip).mean() < excess(loss_plain).mean(), "clipping did not lower the loss"
assert np.all(np.abs(rates - pred) < 0.3 * pred + 0.002), (rates, pred)                # mean-field rate
assert np.all(np.abs(rates[1:] / rates[:-1]) < 1)                                     # fewer clips as C grows
print("all checks passed")
