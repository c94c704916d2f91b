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
# # 01 — Homogeneity: why the learning rate of GD depends on the initialization
#
# Talk (Li et al., ICML 2022), slides *"Our Hypothesis: k-homogeneity in Architecture"* and
# *"Ingredient 1"*.
#
# * $f$ is **$k$-homogeneous** iff $f(cx) = c^k f(x)$ for all $c > 0$ ($x$ = parameters).
# * Then $\nabla^l f$ is $(k-l)$-homogeneous, and **Euler's identity** holds:
#   $\langle x, \nabla f(x)\rangle = k\, f(x)$.
# * So the Hessian of a $k$-homogeneous model is $(k-2)$-homogeneous: for $k \ge 3$ it grows
#   without bound along rays, the smoothness is unbounded, and the descent-lemma step size
#   $2/\text{smoothness}$ shrinks as the init grows. **The stable LR depends on the init.**
# * Ex 1: $L(x_1..x_{2k}) = \tilde L(x_1\cdots x_{2k})$ with $\tilde L$ a 1-D logistic loss.
#   With $\eta^* = 2X(0)^{1/k-1}/|\tilde L'(X(0))|$ (equal $x_i(0)$, $X(0) \ge X^*$), GD fails to
#   converge for $\eta \ge \eta^*$ and diverges for $\eta > \eta^*$ (strict: the talk's "diverges if
#   $\eta \ge$" is wrong at the boundary). At $\eta = \eta^*$ exactly the iterates 2-cycle,
#   $x(t) = (-1)^t x(0)$, and the loss stays at $\tilde L(X(0))$; the cycle is repelling (a
#   deviation grows by $4k(1 + X\tilde L''/\tilde L') - 3 \ge 5$ per step), so it is numerically
#   unstable: in float64 rounding alone leaves it within ~20 steps (`scaleinv verify` row
#   `C2.at_threshold`).
#
# Everything below calls `scaleinv` / `toyproblems`; this notebook only plots and checks.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from scaleinv import theory
from scaleinv.homogeneity import estimate_degree, euler_residual, gradient_homogeneity_residual, scale_params
from toyproblems import problems as P
from toyproblems.experiments import (ex1_critical_lr, ex1_divergence_map, hessian_max_eig_on_ray, loglog_slope,
                                     notebook_env)

jax.config.update("jax_enable_x64", True)  # this kernel runs only float64 toy problems
QUICK, FIG_DIR, save = notebook_env()
print("quick mode:", QUICK)

# %% [markdown]
# ## 1. Measuring the degree $k$, and Euler's identity
#
# `estimate_degree` fits $\log\|f(cx)\|$ against $\log c$ over six decades and accepts the
# degree only if $f(cx) = c^k f(x)$ holds to $10^{-9}$ (float64). The Ex 1 loss
# $\tilde L(X)$ is *not* homogeneous and must be reported so.

# %%
key = jax.random.PRNGKey(0)
k1, k2, k3 = jax.random.split(key, 3)
mf, nmf = P.mf(d=3, r=2), P.normalized_mf(d=3, r=2)
AB = {"A": jax.random.normal(k1, (3, 2)), "B": jax.random.normal(k2, (3, 2))}
x6 = 1.0 + 0.5 * jax.random.uniform(k3, (6,))
cases = [  # (name, function, point, mask, true degree)
    ("model x1...x6 (Ex 1, k=3)", P.ex1(3).meta["model"], x6, None, 6),
    ("model A B^T in (A, B)", mf.meta["model"], AB, None, 2),
    ("model A B^T in A only", mf.meta["model"], AB, {"A": True, "B": False}, 1),
    ("normalized MF loss in (A, B)", nmf.loss, AB, None, 0),
    ("Ex 1 loss L~(x1...x6)", P.ex1(3).loss, x6, None, None),
]
scales = np.logspace(-3, 3, 13)
results = []
for name, fn, x, mask, k_true in cases:
    r = estimate_degree(fn, x, mask=mask, scales=scales, rtol=1e-9)
    euler = euler_residual(fn, x, k_true, mask) if (k_true is not None and jnp.ndim(fn(x)) == 0) else np.nan
    grad_res = gradient_homogeneity_residual(fn, x, k_true, mask) if (k_true is not None and jnp.ndim(fn(x)) == 0) else np.nan
    results.append((name, k_true, r, euler, grad_res))
    print(f"{name:32s} true k={k_true!s:5s} fit k={r.degree:9.5f} homogeneous={r.homogeneous!s:5s} "
          f"residual={r.residual:.1e} Euler residual={euler:.1e} grad (k-1)-homog. residual={grad_res:.1e}")

# %%
def tree_l2(y):
    return float(np.sqrt(sum(np.sum(np.square(np.asarray(v))) for v in jax.tree.leaves(y))))


fig, ax = plt.subplots(figsize=(6, 4.2))
for (name, fn, x, mask, _), (_, k_true, r, *_) in zip(cases, results):
    ratio = [tree_l2(fn(scale_params(x, c, mask))) / tree_l2(fn(x)) for c in scales]
    what = f"fit k = {r.degree:.3f}" if r.homogeneous else f"NOT homogeneous (residual {r.residual:.0e})"
    line, = ax.plot(scales, ratio, "o", ms=4, label=f"{name}: {what}")
    if k_true is not None:
        ax.plot(scales, scales ** float(k_true), "-", lw=0.8, color=line.get_color())
ax.set_xscale("log"); ax.set_yscale("log")
ax.set_xlabel("scale c (dimensionless)"); ax.set_ylabel("||f(c x)|| / ||f(x)||")
ax.set_title("Homogeneity degree: measured (dots) vs c^k (lines)")
ax.legend(fontsize=7)
save(fig, "01_degrees")
plt.show()

# %% [markdown]
# ## 2. $k \ge 3$ means unbounded smoothness
#
# Take Ex 1 with model degree $K = 2k$ and all $x_i = c$, so $X = c^{K}$. The Hessian of
# $L = \tilde L(X)$ is exactly
# $H = \tilde L'(X)\,\tfrac{X}{c^2}(J - I) + \tilde L''(X)\,\tfrac{X^2}{c^2} J$, with eigenvalues
# $\tfrac{X}{c^2}\big((K-1)\tilde L'(X) + K X \tilde L''(X)\big)$ (on the all-ones vector) and
# $-\tilde L'(X) X/c^2$. Since $\tilde L'(X) \to 1/4$, $\lambda_{\max} \sim \tfrac{K-1}{4} c^{K-2}$:
# bounded for $K = 2$, unbounded for $K \ge 3$.

# %%
cs = np.logspace(0.1, 1.5 if QUICK else 2.0, 12)
smooth = {}
for k in (1, 2, 3):
    K = 2 * k
    prob = P.ex1(k)
    meas = hessian_max_eig_on_ray(lambda x: prob.loss(x), jnp.ones(K), cs)
    X = cs ** K
    d1 = np.asarray(P.ex1_tilde_grad(jnp.asarray(X)))
    d2 = np.asarray(jax.vmap(jax.grad(jax.grad(P.ex1_tilde_loss)))(jnp.asarray(X)))
    pred = np.maximum(np.abs(X / cs**2 * ((K - 1) * d1 + K * X * d2)), np.abs(d1 * X / cs**2))
    smooth[K] = (meas, pred, loglog_slope(cs[-5:], meas[-5:]))
    print(f"K = {K}: lambda_max slope at large c = {smooth[K][2]:.4f} (theory {K - 2}); "
          f"max |measured/exact - 1| = {np.max(np.abs(meas / pred - 1)):.1e}")

fig, ax = plt.subplots(figsize=(6, 4.2))
for K, (meas, pred, slope) in smooth.items():
    line, = ax.plot(cs, meas, "o", ms=4, label=f"K = {K}: measured, slope {slope:.2f}")
    ax.plot(cs, pred, "-", color=line.get_color(), lw=1, label=f"K = {K}: exact formula (slope -> {K - 2})")
ax.set_xscale("log"); ax.set_yscale("log")
ax.xaxis.set_minor_formatter(plt.NullFormatter())
ax.set_xlabel("init scale c  (x_i = c, X = c^K)"); ax.set_ylabel("smoothness lambda_max(Hessian L)")
ax.set_title("Ex 1: smoothness along a ray grows like c^(K-2)")
ax.legend(fontsize=7)
save(fig, "01_smoothness")
plt.show()

# %% [markdown]
# ## 3. Sweep of LR against init scale on Ex 1: divergence above the predicted threshold
#
# For $k = 2$ (model degree 4) run GD from every $(X(0), \eta)$ of a grid and mark the runs
# that diverge. The talk's threshold $2X(0)^{1/k-1}/|\tilde L'(X(0))|$ is drawn on top; the
# dots are the smallest diverging LR found by grid bisection for $k = 1, 2, 3$.

# %%
xs = P.ex1_x_star()
steps = 400 if QUICK else 1000
X0_map = xs * np.logspace(np.log10(1.5), 3 if QUICK else 4, 18 if QUICK else 36)
lr_map = np.logspace(-3, 1.5, 20 if QUICK else 40)
div = ex1_divergence_map(2, X0_map, lr_map, steps)

X0s = xs * np.logspace(np.log10(1.5), 3 if QUICK else 4, 6 if QUICK else 10)
crit = {}
for k in (1, 2, 3):
    pred, measured = ex1_critical_lr(k, X0s, rounds=3, pts=24 if QUICK else 32, steps=steps)
    crit[k] = (pred, measured)
    big = X0s >= 10 * xs
    print(f"k = {k}: measured/predicted critical LR for X0 >= 10 X*: "
          f"{np.round(measured[big] / pred[big], 4).tolist()}")

# %%
fig, ax = plt.subplots(figsize=(6.5, 4.5))
ax.pcolormesh(X0_map, lr_map, np.ma.masked_where(~div.T, div.T.astype(float)), cmap="Reds", vmin=0, vmax=3,
              shading="nearest")
ax.plot([], [], "s", color="#fcbba1", label="k = 2: GD diverged (grid)")
for k, (pred, measured) in crit.items():
    line, = ax.plot(X0s, pred, "-", label=f"k = {k}: theory 2 X0^(1/k-1)/|L~'(X0)|")
    ax.plot(X0s, measured, "o", color=line.get_color(), label=f"k = {k}: measured critical LR")
ax.axvline(xs, color="gray", ls=":", label="X* = ln 3")
ax.set_xscale("log"); ax.set_yscale("log")
ax.set_xlabel("X(0) = x_1(0) ... x_2k(0)"); ax.set_ylabel("learning rate eta")
ax.set_title("Ex 1: GD diverges above the predicted threshold")
ax.set_ylim(lr_map[0], lr_map[-1])
ax.legend(fontsize=7, loc="lower left")
save(fig, "01_ex1_threshold")
plt.show()

# %% [markdown]
# ## Checks (fail the notebook if the figure disagrees with theory)

# %%
# 1. degrees recovered to 1e-6, Euler's identity to 1e-9, non-homogeneous loss detected
for name, k_true, r, euler, grad_res in results:
    if k_true is None:
        assert not r.homogeneous and r.residual > 1e-2, (name, r)
    else:
        assert r.homogeneous and abs(r.degree - k_true) < 1e-6, (name, r)
        if np.isfinite(euler):
            assert euler < 1e-9 and grad_res < 1e-9, (name, euler, grad_res)
# 2. smoothness slope K - 2 at large c (unbounded for K >= 3), exact Hessian formula to 1e-8
for K, (meas, pred, slope) in smooth.items():
    assert abs(slope - (K - 2)) < 0.02, (K, slope)
    assert np.max(np.abs(meas / pred - 1)) < 1e-8, K
# 3. every grid run at LR >= 1.001 x threshold diverged (k = 2 map)
pred_map = np.asarray(theory.ex1_divergence_lr(X0_map, np.asarray(P.ex1_tilde_grad(jnp.asarray(X0_map))), 2))
above = lr_map[None, :] >= 1.001 * pred_map[:, None]
assert above.any() and div[above].all(), "a run above the threshold did not diverge"
# 4. measured critical LR within 1% of the formula for X0 >= 10 X*, slope 1/k - 1
for k, (pred, measured) in crit.items():
    big = X0s >= 10 * xs
    assert np.all(np.abs(measured[big] / pred[big] - 1) < 0.01), (k, measured[big] / pred[big])
    slope = loglog_slope(X0s[-4:], measured[-4:])
    assert abs(slope - (1 / k - 1)) < 0.02, (k, slope)
print("all checks passed")
