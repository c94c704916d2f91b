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
# # 03 — Effective learning rate, and weight decay = exponentially growing LR
#
# Talk, *"Existing Analysis for SGD on Scale Invariant Loss"* and *"Ingredient 2: SGD + WD"*.
#
# For a scale-invariant loss, $\nabla L(x) = \nabla L(\bar x)/\|x\|$ with $\bar x = x/\|x\|$,
# and $\langle x, \nabla L(x)\rangle = 0$ (Euler, $k=0$). One GD step therefore turns the
# direction by
# $$\tan\angle(x_t, x_{t+1}) = \frac{\eta\|\nabla L(x_t)\|}{(1-\eta\lambda)\|x_t\|}
#   = \frac{\eta}{\|x_t\|^2}\,\frac{\|\nabla L(\bar x_t)\|}{1-\eta\lambda}:$$
# only the **effective LR** $\eta/\|x\|^2$ matters. Rescaling $(\eta, x_0) \to (c^2\eta, c x_0)$
# leaves the directions unchanged (paper, Lemma 2.4).
#
# WD shrinks $\|x\|$ each step, i.e. raises the effective LR: GD+WD is *exactly* plain GD with an
# exponentially growing LR. The talk states $\eta_t = \eta(1-\eta\lambda)^{-2t}$; that is exact
# only from the rescaled start $\sqrt{1-\eta\lambda}\,x_0$. From the **same** $x_0$ the exact
# schedule is $\eta_t = \eta(1-\eta\lambda)^{-2t-1}$, with $x_{GD}(t) = (1-\eta\lambda)^{-t} x_{WD}(t)$
# (`scaleinv.theory.exp_lr_schedule`, `exp_lr_schedule_as_stated`).

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from scaleinv import theory
from scaleinv.optim import sgd_wd
from toyproblems import problems as P
from toyproblems.experiments import first_hit, notebook_env, wd_vs_exp_lr
from toyproblems.run import run, sweep

jax.config.update("jax_enable_x64", True)  # this kernel runs only float64 toy problems
QUICK, FIG_DIR, save = notebook_env()
print("quick mode:", QUICK)

prob = P.normalized_linreg(dim=16, n=64, noise=0.3, data_seed=0)
d0 = prob.init(1.0, jax.random.PRNGKey(0))  # a unit direction
full = prob.meta["full_loss"]

# %% [markdown]
# ## 1. Only $\eta/\|x\|^2$ matters
#
# Full-batch GD (no WD) from $x_0 = c\,d_0$ for $c \in \{0.1, 1, 10\}$: once with the same
# $\eta$ (very different training), once with $\eta = c^2\eta_0$ (identical directions).

# %%
ETA0, T = 0.5, 1000 if QUICK else 3000
cs = np.array([0.1, 1.0, 10.0])
p0 = jnp.asarray(cs)[:, None] * d0[None, :]
same_lr = sweep(lambda lr: optax.sgd(lr), prob.loss, p0, T, jax.random.PRNGKey(0), {"lr": np.full(3, ETA0)})
scaled_lr = sweep(lambda lr: optax.sgd(lr), prob.loss, p0, T, jax.random.PRNGKey(0), {"lr": ETA0 * cs**2})
dirs = lambda x: np.asarray(x) / np.linalg.norm(np.asarray(x), axis=-1, keepdims=True)  # noqa: E731
loss_gap = np.max(np.abs(np.asarray(scaled_lr.loss) - np.asarray(scaled_lr.loss)[1:2]))
final_dir_gap = float(np.max(np.linalg.norm(dirs(scaled_lr.final) - dirs(scaled_lr.final)[1], axis=-1)))
L_opt = float(np.asarray(scaled_lr.loss).min())
hit_same = first_hit(np.asarray(same_lr.loss) < L_opt + 1e-3)
print("same eta: steps to within 1e-3 of the optimum per ||x0||:", hit_same.tolist())
print(f"eta = c^2 eta0: max |loss_c(t) - loss_1(t)| = {loss_gap:.1e}, final direction gap = {final_dir_gap:.1e}")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
t = np.arange(1, T + 1)
for i, c in enumerate(cs):
    ax1.plot(t, np.asarray(same_lr.loss[i]), label=f"||x0|| = {c:g}, eta = {ETA0}")
    ax1.plot(t, np.asarray(scaled_lr.loss[i]), ls="--", lw=2.5 - 0.7 * i, label=f"||x0|| = {c:g}, eta = {ETA0 * c**2:g} (= c^2 eta0)")
ax1.set_xscale("log"); ax1.set_yscale("log")
ax1.set_xlabel("step"); ax1.set_ylabel("full-batch loss"); ax1.set_title("GD on normalized linreg: rescaling (eta, x0)")
ax1.legend(fontsize=7)
for i, c in enumerate(cs):
    ax2.plot(t, ETA0 / np.asarray(same_lr.sq_norm[i]), label=f"||x0|| = {c:g}, eta = {ETA0}")
ax2.set_xscale("log"); ax2.set_yscale("log")
ax2.set_xlabel("step"); ax2.set_ylabel("effective LR  eta / ||x_t||^2"); ax2.set_title("effective LR (no WD)")
ax2.legend(fontsize=7)
save(fig, "03_effective_lr")
plt.show()

# %% [markdown]
# ## 2. The angular update is set by the effective LR (exact identity)
#
# SGD+WD on the noisy normalized regression (batch 1). The trace records the angle
# $\angle(x_t, x_{t+1})$, $\|x_t\|^2$ and $\|g_t\|$; the identity above predicts the angle exactly.

# %%
sprob = P.normalized_linreg(dim=16, n=64, noise=0.5, batch=1, data_seed=0)
ETA, WD, T2 = 0.1, 0.05, 2000 if QUICK else 10000
tr = run(sprob.loss, sgd_wd(ETA, WD), 10.0 * d0, T2, jax.random.PRNGKey(1))
lr_eff = np.asarray(theory.effective_lr(ETA, np.sqrt(np.asarray(tr.sq_norm))))
grad_sphere = np.asarray(tr.grad_norm) * np.sqrt(np.asarray(tr.sq_norm))  # ||grad L(x_bar)||
pred_angle = np.arctan(lr_eff * grad_sphere / (1 - ETA * WD))
angle = np.asarray(tr.angle)
ok = grad_sphere > 1e-8
angle_err = float(np.max(np.abs(angle[ok] / pred_angle[ok] - 1)))
print(f"max relative error of the angle identity over {ok.sum()} steps: {angle_err:.1e}")

fig, ax = plt.subplots(figsize=(5.5, 4.2))
ax.loglog(pred_angle[ok], angle[ok], ".", ms=2, label="measured steps")
lim = np.array([pred_angle[ok].min(), pred_angle[ok].max()])
ax.loglog(lim, lim, "k-", lw=0.8, label="theory: atan(eta ||grad L(x_bar)|| / ((1-eta lambda)||x||^2))")
ax.set_xlabel("predicted angular update (rad)"); ax.set_ylabel("measured angle(x_t, x_t+1) (rad)")
ax.set_title("SGD+WD: angular update vs effective LR")
ax.legend(fontsize=7)
save(fig, "03_angular_update")
plt.show()

# %% [markdown]
# ## 3. WD $\Leftrightarrow$ exponential LR: two overlapping trajectories
#
# GD+WD from $x_0$, and plain GD with (a) the exact schedule $\eta(1-\eta\lambda)^{-2t-1}$ from
# $x_0$, (b) the talk's $\eta(1-\eta\lambda)^{-2t}$ from $x_0$, (c) the talk's schedule from
# $\sqrt{1-\eta\lambda}\,x_0$. Compared after undoing the known rescaling $c_t = (1-\eta\lambda)^{-t}$.

# %%
ETA3, WD3, T3 = 0.2, 0.01, 1000
x0 = prob.init(1.0, jax.random.PRNGKey(0))
tj = wd_vs_exp_lr(prob, x0, ETA3, WD3, T3)
ref = tj["wd"] * tj["c"][:, None]


def rel_gap(x, r):
    return np.linalg.norm(x - r, axis=1) / np.linalg.norm(r, axis=1)


gap_exact = rel_gap(tj["exact"], ref)
gap_stated = rel_gap(tj["stated"], ref)
gap_rescaled = rel_gap(tj["stated_rescaled"], ref * np.sqrt(1 - ETA3 * WD3))
cosang = np.sum(dirs(tj["stated"]) * dirs(ref), axis=1)
angle_stated = np.arccos(np.clip(cosang, -1, 1))
loss_wd = np.asarray(jax.vmap(full)(jnp.asarray(tj["wd"])))
loss_exp = np.asarray(jax.vmap(full)(jnp.asarray(tj["exact"])))
print(f"max rel. gap: exact schedule {gap_exact.max():.1e}, stated (same x0) {gap_stated.max():.1e}, "
      f"stated (rescaled x0) {gap_rescaled.max():.1e}; stated, same x0: max angle {angle_stated.max():.1e} rad")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
t = np.arange(T3)
ax1.plot(t, loss_wd, lw=3, alpha=0.5, label="GD + WD (eta, lambda)")
ax1.plot(t, loss_exp, "k--", lw=1, label="GD, eta_t = eta (1-eta lambda)^(-2t-1)")
ax1.set_yscale("log"); ax1.set_xlabel("step t"); ax1.set_ylabel("full-batch loss")
ax1.set_title(f"overlapping trajectories (eta={ETA3}, lambda={WD3})")
ax1b = ax1.twinx()
ax1b.plot(t, np.linalg.norm(tj["wd"], axis=1), "C1", lw=1, label="||x|| GD+WD")
ax1b.plot(t, np.linalg.norm(tj["exact"], axis=1), "C2", lw=1, label="||x|| GD exp-LR")
ax1b.set_yscale("log"); ax1b.set_ylabel("parameter norm ||x_t||")
h1, l1 = ax1.get_legend_handles_labels(); h2, l2 = ax1b.get_legend_handles_labels()
ax1.legend(h1 + h2, l1 + l2, fontsize=7, loc="center right")
ax2.semilogy(t, np.maximum(gap_exact, 1e-17), label="exact schedule, same x0")
ax2.semilogy(t, np.maximum(gap_stated, 1e-17), label="talk's schedule, same x0")
ax2.semilogy(t, np.maximum(gap_rescaled, 1e-17), ls="--", label="talk's schedule, x0 * sqrt(1-eta lambda)")
ax2.axhline(np.finfo(np.float64).eps, color="gray", ls=":", label="float64 machine epsilon")
ax2.set_xlabel("step t"); ax2.set_ylabel("||x_GD(t) - c_t x_WD(t)|| / ||c_t x_WD(t)||")
ax2.set_title("difference of the two trajectories")
ax2.legend(fontsize=7)
save(fig, "03_wd_vs_exp_lr")
plt.show()

# %% [markdown]
# ## Checks

# %%
assert loss_gap < 1e-12 and final_dir_gap < 1e-10, (loss_gap, final_dir_gap)   # Lemma 2.4 (eta, x0) -> (c^2 eta, c x0)
# same eta: the x10 init (effective LR 100x smaller) needs > 10x the steps to get within 1e-3 of the optimum
assert hit_same[2] > 10 * hit_same[1], hit_same
assert angle_err < 1e-8, angle_err                                               # angle = f(effective LR), exact
assert gap_exact.max() < 1e-10 and gap_rescaled.max() < 1e-10, (gap_exact.max(), gap_rescaled.max())
assert angle_stated.max() > 1e-6, angle_stated.max()  # erratum: talk's schedule from the same x0 is not exact
print("all checks passed")
