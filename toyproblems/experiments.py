"""The public experiments layer, shared by the claims (``claims.py``) and the notebooks
(``notebooks/*.py``).

Each function runs one sweep on a :mod:`toyproblems.problems` problem with the optimizers of
:mod:`scaleinv.optim` and returns NumPy arrays; the callers only compare, plot and assert. Call
them inside ``with jax.enable_x64(True):`` for float64 (the claims and notebooks do). Predictions
stay in :mod:`scaleinv.theory`; nothing here is fitted to a measurement.

* :func:`notebook_env`          -- NOTEBOOK_QUICK / NOTEBOOK_FIG_DIR switches and a PNG saver.
* :func:`first_hit`, :func:`loglog_slope`, :func:`batched` -- small array helpers.
* :func:`ex1_divergence_map`    -- diverged? on a (X(0), LR) grid for GD on Ex 1.
* :func:`ex1_critical_lr`       -- smallest diverging LR for GD on Ex 1 (vmapped grid bisection).
* :func:`hessian_max_eig_on_ray`-- lambda_max(Hessian L)(c x) along a ray (unbounded smoothness).
* :func:`best_lr_curve`         -- best-of-an-LR-grid loss curve and steps-to-eps.
* :func:`normalized_mf_steps`   -- GD+WD on the normalized factorization: steps-to-eps vs alpha.
* :func:`wd_vs_exp_lr`          -- GD+WD vs plain GD with the exponential LR schedules.
* :func:`norm_trajectories`     -- ||x_t||^2 of SGD(+WD) from many init scales.
* :func:`time_to_equilibrium`   -- steps into the equilibrium band and its slopes in ln||x0||^2.
* :func:`sgd_wd_iterates`       -- SGD+WD traces plus every ``stride``-th iterate x_t.
* :func:`heavy_tailed`          -- multiply a stochastic loss by a heavy-tailed factor f_gamma.
* :func:`clip_rate_vs_C`        -- fraction of steps relative global clipping fires, per C.
"""
from __future__ import annotations

import functools
import os
from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from scaleinv.optim import exponential_lr, sgd_wd, sgd_wd_rgc
from scaleinv import theory
from toyproblems import problems as P
from toyproblems.run import run, sweep

__all__ = [
    "notebook_env",
    "first_hit",
    "loglog_slope",
    "batched",
    "ex1_divergence_map",
    "ex1_critical_lr",
    "hessian_max_eig_on_ray",
    "best_lr_curve",
    "normalized_mf_steps",
    "wd_vs_exp_lr",
    "norm_trajectories",
    "time_to_equilibrium",
    "sgd_wd_iterates",
    "heavy_tailed",
    "clip_rate_vs_C",
]


def notebook_env(default_fig_dir: str = "figures"):
    """Notebook switches from the environment: ``(quick, fig_dir, save)``.

    NOTEBOOK_QUICK=1 shrinks the sweeps (CI / tests); NOTEBOOK_FIG_DIR overrides where PNGs go
    (default ``figures`` next to the notebook). ``save(fig, name)`` writes ``fig_dir/name.png``.
    """
    flag = os.environ.get("NOTEBOOK_QUICK", "0").strip()
    if flag not in ("0", "1", ""):
        raise ValueError(f"NOTEBOOK_QUICK must be 0 or 1, got {flag!r}")
    quick = flag == "1"
    fig_dir = Path(os.environ.get("NOTEBOOK_FIG_DIR", default_fig_dir))
    fig_dir.mkdir(parents=True, exist_ok=True)

    def save(fig, name: str) -> Path:
        path = fig_dir / f"{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        return path

    return quick, fig_dir, save


def first_hit(mask) -> np.ndarray:
    """Index of the first True along the last axis (np.inf where never)."""
    mask = np.asarray(mask)
    return np.where(mask.any(-1), mask.argmax(-1), np.inf)


def loglog_slope(x, y) -> float:
    """Least-squares slope of ln y against ln x."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def batched(tree, n):
    """Every leaf of ``tree`` broadcast to a leading batch axis of size ``n`` (for :func:`sweep`)."""
    return jax.tree.map(lambda v: jnp.broadcast_to(v, (n,) + jnp.shape(v)), tree)


# ------------------------------------------------------------------ Ex 1
def ex1_divergence_map(k: int, X0s: Sequence[float], lrs: Sequence[float], steps: int) -> np.ndarray:
    """GD on Ex 1 (2k equal factors, X(0) = x^(2k)) for every (X0, LR): bool array [X0, LR],
    True where |X_T| is not finite or exceeds 10 max(X0, X*) after ``steps`` steps."""
    prob = P.ex1(k)
    X0s, lrs = np.asarray(X0s, float), np.asarray(lrs, float)
    nX, nL = len(X0s), len(lrs)
    x0 = jnp.repeat(jnp.asarray(X0s) ** (1.0 / (2 * k)), nL)[:, None] * jnp.ones((1, 2 * k))
    lr = jnp.tile(jnp.asarray(lrs), nX)
    final = jax.jit(jax.vmap(lambda p, l: run(prob.loss, optax.sgd(l), p, steps,
                                              jax.random.PRNGKey(0)).final))(x0, lr)
    X = np.asarray(jnp.prod(final, axis=-1)).reshape(nX, nL)
    bound = 10 * np.maximum(X0s, P.ex1_x_star())[:, None]
    return ~(np.isfinite(X) & (np.abs(X) < bound))


def ex1_critical_lr(k: int, X0s: Sequence[float], rounds: int, pts: int, steps: int):
    """Smallest diverging LR for GD on Ex 1 from x_i(0) = X0^(1/2k), by vmapped grid bisection.

    Returns ``(pred, crit)``: the talk's threshold 2 X0^(1/k-1)/|L~'(X0)|
    (:func:`scaleinv.theory.ex1_divergence_lr`) and the measured smallest diverging LR per X0.
    Each of ``rounds`` rounds evaluates ``pts`` LRs between the last non-diverging and the first
    diverging grid point (initial bracket [0.05, 1.5] x the prediction); diverged = |X_T| not
    finite or above 10 max(X0, X*) after ``steps`` steps."""
    prob = P.ex1(k)
    xs = P.ex1_x_star()
    X0s = np.asarray(X0s, float)
    pred = np.asarray(theory.ex1_divergence_lr(X0s, np.asarray(P.ex1_tilde_grad(jnp.asarray(X0s))), k))
    lo, hi = 0.05 * pred, 1.5 * pred

    @jax.jit
    def diverged(x0, lr):
        tr = jax.vmap(lambda p, l: run(prob.loss, optax.sgd(l), p, steps, jax.random.PRNGKey(0)))(x0, lr)
        X = jnp.prod(tr.final, axis=-1)
        return ~(jnp.isfinite(X) & (jnp.abs(X) < 10 * jnp.maximum(jnp.repeat(jnp.asarray(X0s), pts), xs)))

    x0 = jnp.repeat(jnp.asarray(X0s) ** (1.0 / (2 * k)), pts)[:, None] * jnp.ones((1, 2 * k))
    for _ in range(rounds):
        grid = lo[:, None] + (hi - lo)[:, None] * np.linspace(0, 1, pts)[None, :]
        d = np.asarray(diverged(x0, jnp.asarray(grid.reshape(-1)))).reshape(len(X0s), pts)
        first = np.where(d.any(1), d.argmax(1), pts - 1)
        hi = grid[np.arange(len(X0s)), first]
        lo = grid[np.arange(len(X0s)), np.maximum(first - 1, 0)]
    return pred, hi


def hessian_max_eig_on_ray(loss_fn: Callable, x, scales: Sequence[float]) -> np.ndarray:
    """lambda_max of the Hessian of ``loss_fn`` (a function of one flat array) at c x, per c."""
    hess = jax.jit(jax.hessian(loss_fn))
    return np.array([float(np.max(np.abs(np.linalg.eigvalsh(np.asarray(hess(c * x))))))
                     for c in scales])


# ------------------------------------------------------------------ Ex 2 / normalized MF
def best_lr_curve(opt_fn: Callable[[float], optax.GradientTransformation], prob: P.Problem, alpha: float,
                  lrs: Sequence[float], steps: int, eps: float) -> Dict[str, object]:
    """Train ``prob`` from ``prob.init(alpha)`` with ``opt_fn(lr)`` for every lr (one vmapped
    call). Returns the curve of the LR with the lowest final loss and the smallest
    steps-to-(loss < eps) over the grid (np.inf if none gets there)."""
    lrs = np.asarray(lrs, float)
    p0 = batched(prob.init(alpha), len(lrs))
    tr = sweep(_by_lr(opt_fn), prob.loss, p0, steps, jax.random.PRNGKey(0), {"lr": jnp.asarray(lrs)})
    L = np.asarray(tr.loss)
    L = np.where(np.isfinite(L), L, np.inf)
    hits = first_hit(L < eps)
    best = int(np.argmin(L[:, -1]))
    return {"curve": L[best], "lr": float(lrs[best]), "final": float(L[best, -1]),
            "steps": float(hits.min()), "lr_fastest": float(lrs[int(np.argmin(hits))])}


@functools.lru_cache(maxsize=None)
def _by_lr(opt_fn):
    """``lambda lr: opt_fn(lr)``, one per ``opt_fn``: the same function on every call, so the
    sweeps of :func:`best_lr_curve` with one optimizer share one compilation."""
    return lambda lr: opt_fn(lr)


def normalized_mf_steps(alphas: Sequence[float], eta: float, weight_decay: float, steps: int, eps: float):
    """GD+WD on the normalized factorization from the unbalanced init alpha: full-loss curves
    [alpha, step] and steps-to-(loss < eps) per alpha."""
    prob = P.normalized_mf()
    p0 = jax.vmap(prob.init)(jnp.asarray(alphas, float))
    tr = sweep(lambda: sgd_wd(eta, weight_decay), prob.loss, p0, steps, jax.random.PRNGKey(0), {},
               eval_fn=prob.meta["full_loss"])
    L = np.asarray(tr.loss)
    return L, first_hit(L < eps)


# ------------------------------------------------------------------ WD <=> exponential LR
def wd_vs_exp_lr(prob: P.Problem, x0, eta: float, weight_decay: float, steps: int) -> Dict[str, np.ndarray]:
    """Full-batch trajectories x_t (t = 0..steps-1) of GD+WD and of plain GD with the
    exponential LR schedules of :func:`scaleinv.optim.exponential_lr`:

    ``wd``: GD+WD from x0; ``exact``: eta(1-eta lambda)^(-2t-1) from x0; ``stated``: the talk's
    eta(1-eta lambda)^(-2t) from x0; ``stated_rescaled``: the talk's schedule from sqrt(1-eta lambda) x0;
    ``c``: the factors c_t = (1-eta lambda)^(-t) with x_exact(t) = c_t x_wd(t).

    eta and lambda are traced arguments of one jitted runner per (loss, steps), so a sweep over
    (eta, lambda) compiles once.
    """
    exponential_lr(eta, weight_decay)   # validates eta, lambda (> 0, eta lambda < 1) before tracing
    wd, exact, stated, rescaled = _wd_vs_exp_lr_runner(prob.loss, int(steps))(
        x0, np.sqrt(1 - eta * weight_decay) * x0, *(jnp.asarray(v, jnp.result_type(x0)) for v in (eta, weight_decay)))
    return {
        "wd": np.asarray(wd),
        "exact": np.asarray(exact),
        "stated": np.asarray(stated),
        "stated_rescaled": np.asarray(rescaled),
        "c": np.asarray(theory.wd_to_exp_lr_rescale(np.arange(steps), eta, weight_decay)),
    }


@functools.lru_cache(maxsize=16)
def _wd_vs_exp_lr_runner(loss_fn, steps: int):
    """The four trajectories of :func:`wd_vs_exp_lr` as one jitted function of (x0, sqrt(1-eta lambda) x0,
    eta, lambda): one compilation per (loss, steps, shapes/dtypes), whatever eta and lambda are."""
    def traj(opt, p):   # x_t, t = 0..steps-1 (full batch: the loss ignores the key)
        return run(loss_fn, opt, p, steps, jax.random.PRNGKey(0), record=lambda st: st.x).extra

    @jax.jit
    def go(x0, x0_rescaled, eta, weight_decay):
        stated = optax.sgd(exponential_lr(eta, weight_decay, as_stated=True))
        return (traj(sgd_wd(eta, weight_decay), x0),
                traj(optax.sgd(exponential_lr(eta, weight_decay)), x0),
                traj(stated, x0),
                traj(stated, x0_rescaled))

    return go


# ------------------------------------------------------------------ norm dynamics
def norm_trajectories(prob: P.Problem, scales: Sequence[float], eta: float, weight_decay: float, steps: int,
                      seed: int = 0, C: float | None = None, eval_fn=None):
    """SGD (lambda = 0) or SGD+WD (lambda > 0; with relative global clipping if ``C``) from
    ``prob.init(scale, key)`` for every scale: the :class:`toyproblems.run.Trace` (arrays
    [scale, step]; ``loss`` is ``eval_fn(x_t)`` if given, e.g. the full-batch loss)."""
    keys = jax.random.split(jax.random.PRNGKey(seed), len(scales))
    p0 = jax.vmap(lambda k, s: prob.init(s, k))(keys, jnp.asarray(scales, float))
    # eta, lambda (and C) are traced per-config hyper-parameters of module-level factories, so
    # calls with other values (a loop over (eta, lambda)) reuse one compiled sweep
    if weight_decay == 0:
        make, hs = _sgd, {"learning_rate": eta}
    elif C is None:
        make, hs = sgd_wd, {"learning_rate": eta, "weight_decay": weight_decay}
    else:
        make, hs = sgd_wd_rgc, {"learning_rate": eta, "weight_decay": weight_decay, "C": C}
    make(**hs)   # validates the values before they are traced
    dtype = jax.tree.leaves(p0)[0].dtype
    hp = {k: jnp.full((len(scales),), v, dtype) for k, v in hs.items()}
    return sweep(make, prob.loss, p0, steps, jax.random.PRNGKey(seed + 1), hp, eval_fn=eval_fn)


def _sgd(learning_rate):
    return optax.sgd(learning_rate)


def time_to_equilibrium(sq_norm, scales: Sequence[float], eq: float, eta: float, sigma: float):
    """Steps until ||x_t||^2 first enters the band [eq/2, 2 eq] (``sq_norm``: [scale, step]),
    and the least-squares slopes of those steps against ln||x0||^2 for the large inits
    (||x0||^2 > 10 eq: WD decays the norm) and the tiny inits (||x0||^2 < eta^2 sigma^2/(10 eq):
    the first step throws the norm up to ~eta^2 sigma^2/||x0||^2). Returns
    ``(steps, slope_large, slope_small)``; the T0 bound predicts +-1/(2 eta lambda)
    (:func:`scaleinv.theory.t0_slope`)."""
    scales, sq = np.asarray(scales, float), np.asarray(sq_norm)
    steps = first_hit((sq >= eq / 2) & (sq <= 2 * eq))
    big = scales**2 > 10 * eq
    small = scales**2 < eta**2 * sigma**2 / (10 * eq)
    s_big = float(np.polyfit(np.log(scales[big] ** 2), steps[big], 1)[0])
    s_small = float(np.polyfit(np.log(scales[small] ** 2), steps[small], 1)[0])
    return steps, s_big, s_small


def sgd_wd_iterates(prob: P.Problem, p0, eta: float, weight_decay: float, steps: int, key: jax.Array, stride: int):
    """SGD+WD from every row of ``p0`` (one vmapped :func:`toyproblems.run.sweep`): the trace
    and the iterates x_t for t = 0, stride, 2 stride, ... (array [config, t // stride, dim]),
    e.g. to measure sigma = ||grad L_gamma|| along the runs. The trace's ``loss`` field holds
    the iterates, not the loss."""
    tr = sweep(lambda: sgd_wd(eta, weight_decay), prob.loss, p0, steps, key, {}, eval_fn=lambda x: x)
    return tr, tr.loss[:, ::stride]


# ------------------------------------------------------------------ heavy-tailed noise / clipping
def heavy_tailed(prob: P.Problem, heavy_tail: float, spike_prob: float = 1.0, spike_scale: float = 1.0
                 ) -> P.Problem:
    """``prob`` with each stochastic loss multiplied by a heavy-tailed factor f_gamma
    (:func:`toyproblems.problems.noise_factor_sampler`, E f^2 = 1): the gradient direction is
    unchanged, its norm gets Pareto spikes. Scale invariance is preserved. The factor's key is
    folded from the step key, so the base problem's sampling is unchanged."""
    sample, sample_np = P.noise_factor_sampler(heavy_tail, spike_prob, spike_scale)

    def loss(x, key):
        return sample(jax.random.fold_in(key, 7919)) * prob.loss(x, key)

    meta = dict(prob.meta, factor_np=sample_np, heavy_tail=heavy_tail)
    return replace(prob, name=prob.name + "_heavy", loss=loss, meta=meta)


def clip_rate_vs_C(prob: P.Problem, Cs: Sequence[float], eta: float, weight_decay: float, steps: int,
                   x0_scale: float, seed: int = 0, burn_in: int = 0):
    """Fraction of steps (after ``burn_in``) on which relative global clipping fires, for
    each C (one vmapped SGD+WD+RGC run per C from the same init; each C draws its own noise),
    plus the traces."""
    Cs = np.asarray(Cs, float)
    x0 = prob.init(x0_scale, jax.random.PRNGKey(seed))
    p0 = batched(x0, len(Cs))
    tr = sweep(lambda C: sgd_wd_rgc(eta, weight_decay, C=C), prob.loss, p0, steps, jax.random.PRNGKey(seed),
               {"C": jnp.asarray(Cs)})
    return np.asarray(tr.clipped)[:, burn_in:].mean(1), tr
