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
# # 08 — Beyond the paper: schedules, AdamW under noise, edge of stability, the memory of weight decay
#
# The four newer-theory groups of `scaleinv verify` (S, N, E, M), each in a quick version: a closed form from
# `scaleinv.theory`, a simulation (here or a public `toyproblems` experiment), a figure and a check.
#
# **1. Learning-rate schedules** (Defazio 2025, *Why gradients rapidly increase near the end of
# training*). For a scale-invariant weight, SGD + WD settles where the gradient noise that pushes the
# norm out balances the decay: $\|g\|/\|x\| = \sqrt{2\lambda/\eta}$ (exactly
# $\sqrt{\lambda(2-\eta\lambda)/\eta}$, `theory.equilibrium_grad_ratio`). Decay $\eta_t$ and the
# target rises: the gradient norm grows towards the end of training. How far the norm can follow is
# set by a linear ODE derived here (`scaleinv.theory.defazio2025`): $y=\|x\|^4$ obeys
# $\dot y = -4\lambda\eta_t y + 2\sigma^2\eta_t^2$, which relaxes at rate $4\lambda\eta_t$ — so the
# ratio tracks its target while the adiabaticity $\epsilon_t = -\dot\eta_t/(4\lambda\eta_t^2)$ is
# small and lags behind when it is not. With $\lambda_t = \lambda\eta_t/\eta_{\max}$ (SGDC /
# AdamC, `scaleinv.corrected_wd`) the target does not move at all.
#
# **2. AdamW under pure noise, exactly** (`scaleinv.theory.adamw_noise`): with $\alpha = 1-\eta\lambda$,
# $E\|W\|^2 = d\,\eta^2\frac{1-\beta_1}{1+\beta_1}\frac{1+\alpha\beta_1}{(1-\alpha^2)(1-\alpha\beta_1)}$,
# which tends to the rotational-equilibrium norm $\eta d/(2\lambda)$ (R2.3) only when
# $\eta\lambda \ll 1-\beta_1$.
#
# **3. Edge of stability** (Lyu, Li, Arora 2022, `scaleinv.theory.lyu2022`): for a scale-invariant loss
# $\nabla^2 L(x) = \nabla^2 L(\bar x)/\|x\|^2$, so GD + WD, whose norm shrinks once the gradient vanishes,
# raises its effective sharpness $\eta\lambda_{\max}$ until it reaches 2, hovers there, and slides along
# the minimiser manifold towards lower sharpness.
#
# **4. The memory of weight decay** (Wang & Aitchison 2024/25, `scaleinv.theory.wang2025`): AdamW's
# weights are an EMA of the updates with timescale $\tau = 1/(\eta\lambda)$, so a gradient seen at step
# $s$ moves $W_{s+L}$ by $\propto(1-\eta\lambda)^L$. Its effect on the *loss* is shorter-lived: on a
# quadratic with curvature $h$ it decays with the slow root of the perturbation's recursion,
# $\approx(1-\eta(\lambda+h))^L$ for SGD + WD (derived here).

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from scaleinv import theory
from scaleinv.corrected_wd import sgdc
from scaleinv.theory import adamw_noise as AN
from scaleinv.theory import defazio2025 as TS
from scaleinv.theory import lyu2022 as LY
from scaleinv.theory import wang2025 as W25
from toyproblems import problems as P
from toyproblems import run as TR
from toyproblems.claims_eos import ETA as EOS_ETA
from toyproblems.claims_eos import WD as EOS_WD
from toyproblems.claims_eos import simulate_eos
from toyproblems.claims_timescale import simulate_loss_influence
from toyproblems.experiments import notebook_env

jax.config.update("jax_enable_x64", True)  # this kernel runs only float64 toy problems
QUICK, FIG_DIR, save = notebook_env()
print("quick mode:", QUICK)

ETA, WD, SIGMA = 0.1, 0.1, 1.0          # eta_max * lambda = 0.01
K = 30 if QUICK else 100                 # schedule length in relaxation times: T = K / (eta lambda)
T = int(K / (ETA * WD))

# %% [markdown]
# ## 1. Cosine decay on the constant-sigma toy: SGD + WD vs SGDC

# %%
prob = P.constant_sigma(dim=8, sigma=SIGMA)


def cosine(t):
    return ETA * 0.5 * (1 + jnp.cos(jnp.pi * jnp.minimum(t / T, 1.0)))


def run(opt, key):
    """||g_t|| / ||x_t|| per step (toyproblems.run with a per-step record)."""
    x0 = prob.init(float(theory.equilibrium_sq_norm(ETA, WD, SIGMA)) ** 0.5, key)   # start at equilibrium
    return np.asarray(jax.jit(lambda: TR.run(prob.loss, opt, x0, T, key,
                                             record=lambda st: jnp.linalg.norm(st.grad) / jnp.linalg.norm(st.x)).extra)())


key = jax.random.PRNGKey(0)
ratio_sgd = run(optax.chain(optax.add_decayed_weights(WD), optax.sgd(cosine)), key)
ratio_sgdc = run(sgdc(cosine, WD), key)

t = np.arange(T)
eta_t = TS.lr_schedule("cosine", t, ETA, T)
target = TS.steady_grad_ratio_sgd(eta_t, WD)                                   # Defazio's sqrt(2 lambda/eta_t)
ode = TS.grad_ratio_from_norm_ode("sgd", TS.norm_ode_solution("sgd", eta_t, WD, ratio_sgd[0] ** -2, SIGMA))
eps = TS.adiabaticity("sgd", eta_t, TS.lr_schedule_slope("cosine", t, ETA, T), WD)
slow = eps <= 0.05
track = float(np.max(np.abs(ratio_sgd[slow] / target[slow] - 1)))
ode_err = float(np.max(np.abs(ratio_sgd / ode - 1)))
flat = float(np.max(np.abs(ratio_sgdc / ratio_sgdc[0] - 1)))
print(f"SGD: max |ratio/sqrt(2 lambda/eta_t) - 1| where eps <= 5% ({slow.mean():.0%} of the run): {track:.3f}")
print(f"SGD: max |ratio/norm ODE - 1| over the whole run (lag included): {ode_err:.4f}")
print(f"blow-up max ratio / initial: SGD {ratio_sgd.max() / ratio_sgd[0]:.2f} (quasi-static target would reach "
      f"{target[-1] / target[0]:.0f}); SGDC {ratio_sgdc.max() / ratio_sgdc[0]:.4f}")

# %%
fig, ax = plt.subplots(figsize=(6.4, 4.2))
ax.plot(t / T, ratio_sgd, color="C0", lw=1.5, label="SGD + WD (measured)")
ax.plot(t / T, target, "C0:", lw=1, label="quasi-static sqrt(2 lambda / eta_t)")
ax.plot(t / T, ode, "k--", lw=0.8, label="norm ODE (closed form)")
ax.plot(t / T, ratio_sgdc, color="C2", lw=1.5, label="SGDC, lambda_t = lambda eta_t / eta_max")
ax.axvspan(np.argmax(~slow) / T if (~slow).any() else 1, 1, color="gray", alpha=0.15, label="eps_t > 5 % (lag)")
ax.set(yscale="log", ylim=(0.5 * ratio_sgd[0], 20 * ratio_sgd[0]), xlabel="t / T",
       ylabel="||g|| / ||x||", title=f"cosine decay, K = eta_max lambda T = {K}")
ax.legend(fontsize=7)
save(fig, "08_schedules")
plt.show()

# %% [markdown]
# ## 2. How long the lag lasts: the last fraction of training lagging > 10 %, vs K
#
# First order in $\epsilon$: linear decay $\epsilon = 1/(4Ka^2)$, cosine $\epsilon \approx 2/(\pi^2Ka^3)$
# with $a = 1 - t/T$: the lagging fraction shrinks like $K^{-1/2}$ and $K^{-1/3}$. The norm ODE
# (no first-order approximation) agrees.

# %%
Ks = np.array([10.0, 30.0, 100.0, 300.0])
onset = {}
for kind in ("linear", "cosine"):
    ode_on = []
    for k in Ks:
        TT = int(k / (ETA * WD))
        e = TS.lr_schedule(kind, np.arange(TT), ETA, TT)
        r = TS.grad_ratio_from_norm_ode("sgd", TS.norm_ode_solution("sgd", e, WD, ETA * SIGMA**2 / (2 * WD)))
        below = r < TS.steady_grad_ratio_sgd(e, WD) / 1.1
        ode_on.append(1 - np.argmax(below) / TT)
    onset[kind] = (np.array(ode_on), TS.lag_onset_fraction(kind, Ks))
    print(kind, "ODE:", np.round(ode_on, 4).tolist(), "first order:", np.round(onset[kind][1], 4).tolist())

fig, ax = plt.subplots(figsize=(6.0, 4.0))
for kind, c in (("linear", "C0"), ("cosine", "C1")):
    ax.plot(Ks, onset[kind][0], "o", color=c, label=f"{kind}: norm ODE")
    ax.plot(Ks, onset[kind][1], "-", color=c, lw=1, label=f"{kind}: first order (slope {TS.lag_onset_exponent(kind):.2f})")
ax.set(xscale="log", yscale="log", xlabel="K = eta_max lambda T", ylabel="fraction of training lagging > 10 %")
ax.legend(fontsize=7)
save(fig, "08_lag_vs_K")
plt.show()

# %% [markdown]
# ## 3. AdamW under pure noise: the exact stationary norm vs R2.3
#
# The model itself, simulated in NumPy: $W \leftarrow \alpha W - \eta m$, $m$ an EMA of unit Gaussian noise.

# %%
rng = np.random.default_rng(0)
d, eta, b1 = 500, 0.01, 0.9
els = np.array([0.02, 0.05, 0.1]) if QUICK else np.array([0.01, 0.02, 0.05, 0.1, 0.2])
meas = []
for el in els:
    W, m, acc = np.zeros(d), np.zeros(d), []
    burn, steps = int(8 / el), int(8 / el) + (1500 if QUICK else 6000)
    for step in range(steps):
        m = b1 * m + (1 - b1) * rng.standard_normal(d)
        W = (1 - el) * W - eta * m
        if step >= burn:
            acc.append(W @ W)
    meas.append(np.mean(acc))
meas = np.array(meas)
exact = AN.adamw_noise_sq_norm(eta, els / eta, b1, d)
r23 = eta * d / (2 * els / eta)
print("eta lambda:", els.tolist())
print("measured / exact:", np.round(meas / exact, 4).tolist())
print("measured / R2.3: ", np.round(meas / r23, 4).tolist())

fig, ax = plt.subplots(figsize=(6.0, 4.0))
el = np.linspace(0.003, 0.22, 100)
for b, ls in ((0.5, "--"), (0.9, "-")):
    ax.plot(el, AN.adamw_noise_sq_norm_ratio_to_r23(eta, el / eta, b), "k", ls=ls, lw=1, label=f"exact / R2.3, beta1 = {b}")
ax.plot(els, meas / r23, "o", color="C3", label="simulated, beta1 = 0.9")
ax.axhline(1, color="gray", lw=0.8)
ax.set(xlabel="eta * lambda", ylabel="E||W||^2 / (eta d / (2 lambda))", title="AdamW stationary norm under pure noise")
ax.legend(fontsize=7)
save(fig, "08_adamw_noise")
plt.show()

# %% [markdown]
# ## 4. Edge of stability: GD + WD on the normalized valley
#
# $L(x) = \tfrac12\bar x_3^2(1 + 3\bar x_1^2)$, $\bar x = x/\|x\|$: its minimisers are the circle $\bar x_3 = 0$,
# along which the sphere sharpness $S = 1 + 3\bar x_1^2$ runs from 4 down to 1. The run is the one of
# `scaleinv verify` row E1 (`toyproblems.claims_eos.simulate_eos`, quick mode). Once on the manifold (step
# $t_c$) only the decay acts and the onset is predicted at $t_c + \ln(2\|x_c\|^2/(\eta S))/(-2\ln(1-\eta\lambda))$.

# %%
eos = simulate_eos(0, True)
wd_run, gd_run = eos["wd"], eos["gd"]
tc = int(np.argmax(wd_run["loss"] < 1e-14))
t_on = int(np.argmax(wd_run["eff_dense"] >= LY.EOS_THRESHOLD))
t_on_pred = tc + float(LY.eos_onset_steps(EOS_ETA, EOS_WD, wd_run["sq"][tc], wd_run["S"][tc]))
hover = float(np.mean(wd_run["eff_dense"][t_on + 300:]))
s_final = float(np.mean(wd_run["S"][-500:]))
gd_eff_max = float(np.max(gd_run["eff_dense"][tc:]))
print(f"onset of eta lambda_max >= 2: step {t_on} (predicted {t_on_pred:.1f}); mean after it {hover:.3f}")
print(f"sphere sharpness S: {wd_run['S'][tc]:.3f} at t_c -> {s_final:.4f} (GD + WD); GD without WD stays at "
      f"{gd_run['S'][-1]:.3f} with eta lambda_max <= {gd_eff_max:.3f}")

fig, (a1, a2) = plt.subplots(1, 2, figsize=(10.5, 4.0))
steps = np.arange(eos["steps"])
a1.plot(steps, wd_run["eff_dense"], lw=0.5, color="C0", label="GD + WD")
a1.plot(steps, gd_run["eff_dense"], lw=1, color="C1", label="GD (no WD)")
a1.axhline(LY.EOS_THRESHOLD, color="k", lw=1, label="2")
a1.axvline(t_on_pred, color="C0", ls=":", lw=1, label="predicted onset")
a1.set(yscale="log", xlabel="step", ylabel="eta lambda_max", title="effective sharpness")
a1.legend(fontsize=7)
a2.plot(steps, wd_run["S"], color="C0", label="GD + WD")
a2.plot(steps, gd_run["S"], color="C1", label="GD (no WD)")
a2.axhline(1.0, color="k", ls=":", lw=1, label="manifold minimum")
a2.set(xlabel="step", ylabel="sphere sharpness S", title="sharpness reduction along the manifold")
a2.legend(fontsize=7)
save(fig, "08_edge_of_stability")
plt.show()

# %% [markdown]
# ## 5. The memory of weight decay: one gradient's effect on the weights and on the loss
#
# A gradient changed by $\delta$ at step $s$ moves $W_{s+L}$ by $-G_L\delta$. On pure noise (M1.1-M1.3)
# $G_L = \eta(1-\eta\lambda)^{L-1}$ for SGD + WD: the weights remember for $\tau$. On a noisy quadratic
# $\tfrac h2\|W-W^*\|^2$ the change feeds back through the curvature, and the expected loss change
# $E\,\Delta L_{s+L} = -G_L\langle\bar g,\delta\rangle + \tfrac h2 G_L^2\|\delta\|^2$ (exact for SGD + WD;
# AdamW to first order, with Adam's gain $\kappa$) decays with the slow root $r_1$ of the recursion:
# memory $1/(-\ln r_1) \approx 1/(\eta(\lambda + h))$, shorter than $\tau$. The runs are those of rows
# M1.5-M1.7 (`toyproblems.claims_timescale.simulate_loss_influence`, quick mode: antithetic noise pairs).

# %%
mem = simulate_loss_influence(0, True)
cfg_m, L_m = mem["cfg"], mem["L"]
err_m = np.abs(mem["dev"]).max(1) / np.abs(mem["pred"]).max(1)
tau_w = float(W25.wd_timescale_exact(cfg_m[0, 2], cfg_m[0, 3]))
tau_loss = np.array([float(W25.loss_memory_time(c[2], c[3], c[4], c[0], c[7])) for c in cfg_m])
for c, e, tl in zip(cfg_m, err_m, tau_loss):
    name = "SGD+WD" if c[0] == 0 else f"AdamW b1={c[0]:g}"
    print(f"{name:12s} h = {c[4]:5.3g}: max |measured - theory| / peak = {e:.1e}; loss memory {tl:6.1f} steps "
          f"(tau = {tau_w:.1f})")

fig, (a1, a2) = plt.subplots(1, 2, figsize=(10.5, 4.0))
a1.plot(L_m, W25.gradient_influence(cfg_m[0, 2], cfg_m[0, 3], L_m) / cfg_m[0, 2], "k--", lw=1,
        label="weights, pure noise: (1 - eta lambda)^(L-1)")
for j, c in enumerate(cfg_m[cfg_m[:, 0] == 0]):
    G = W25.curved_gradient_influence(c[2], c[3], L_m, c[4]) / c[2]
    a1.plot(L_m, G, color=f"C{j}", label=f"weights, h/lambda = {c[4] / c[3]:g}")
a1.set(yscale="log", xlabel="L = t - s", ylabel="G_L / eta", title="SGD + WD: the weights' memory", ylim=(1e-4, 1.5))
a1.legend(fontsize=7)
for j, (c, m_, p_) in enumerate(zip(cfg_m, mem["mean"], mem["pred"])):
    pk = np.abs(p_).max()
    lab = ("SGD+WD" if c[0] == 0 else "AdamW") + f", h = {c[4]:g}"
    a2.plot(L_m, m_ / pk, color=f"C{j}", lw=1.2, label=lab)
    a2.plot(L_m, p_ / pk, "k:", lw=0.8)
a2.axhline(0, color="0.7", lw=0.5)
a2.set(xlabel="L = t - s", ylabel="E Delta L_{s+L} / max |E Delta L|", title="the loss forgets faster (dotted: theory)")
a2.legend(fontsize=6)
save(fig, "08_memory_timescale")
plt.show()

# %% [markdown]
# ## Checks

# %%
assert track < 0.035, track                                  # quasi-static tracking (first-order lag <= 2.4 %)
assert ode_err < 0.01, ode_err                               # the norm ODE, lag included
assert flat < 0.01, flat                                     # SGDC: ratio constant
assert ratio_sgd.max() / ratio_sgd[0] > 2.5                  # SGD + WD: the end-of-training blow-up
for kind in ("linear", "cosine"):
    assert np.all(np.abs(onset[kind][0] / onset[kind][1] - 1) < 0.10), onset[kind]
assert np.all(np.abs(meas / exact - 1) < 0.03), meas / exact  # exact AdamW pure-noise norm
assert meas[-1] / r23[-1] < 0.75                              # ... where R2.3 is far off
assert abs(t_on / t_on_pred - 1) < 0.02, (t_on, t_on_pred)    # edge of stability: predicted onset
assert 1.9 < hover < 2.1, hover                               # ... hovers at 2
assert abs(s_final - 1) < 0.01 and gd_eff_max < 1.0           # sharpness reduced to 1; GD alone stays stable
sgd_m = cfg_m[:, 0] == 0
assert np.all(err_m[sgd_m] < 1e-9), err_m                     # loss influence: exact for SGD + WD
assert np.all(err_m[~sgd_m] < 0.03), err_m                    # ... first order for AdamW
assert np.all(tau_loss < tau_w)                               # the loss forgets faster than the weights
print("all checks passed")
