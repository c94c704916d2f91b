"""Claims of Kosson et al. (ICML 2024), "Rotational Equilibrium", on scale-invariant toys.

Every claim has the signature ``claim_x(seed, quick, out_dir) -> list[Row]``, runs in float64
(``jax.enable_x64`` inside), saves ONE figure ``out_dir/<row-id prefix>.png`` and returns rows with
a stated tolerance. Predictions come from :mod:`scaleinv.theory`; nothing is fitted to the data.

Toy: the constant-sigma loss of :func:`toyproblems.problems.constant_sigma` (dimension ``dim``,
L_gamma(x) = arccos(<xi_gamma, x/||x||>), gradient sigma * unit(P_x-perp xi)/||x||): a
scale-invariant weight with independent isotropic random gradients -- exactly the random-walk
model of the paper. sigma is applied as a gradient scale (``optax.scale(sigma)`` in front of the
optimizer). Each configuration starts from ||x(0)|| = 3 x the predicted equilibrium norm.

Measured quantity: the paper's expected angular update is RMS-type,
eta_r = sqrt(E||Delta x_perp||^2 / E||x||^2), so we compare it with the RMS of the per-step angle
angle(x_t, x_{t+1}) over the last 40 % of the run (the mean is reported too; in dimension
dim >= 256 they differ by < 0.1 %), and the equilibrium norm with the RMS of ||x_t|| there.

Longer than 400 lines on purpose: the five claims of the paper (R1..R5) share one cached
simulation of every optimizer family (``_simulate_all``) and its grids, which belong next to them.

Naming: the dimension is ``dim`` in code and d in the row texts and formulas (the paper writes
C; here ``C`` is only the clipping constant, docs/CONVENTIONS.md).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import jax
import jax.numpy as jnp
import numpy as np
import optax

from scaleinv import registry, theory
from scaleinv.diagnostics import angular_update
from scaleinv.report import Row, budget, close, verdict, within
from scaleinv.rotational import rotational_adamw, rotational_lion, rotational_sgdm
from toyproblems import problems as P
from toyproblems.plotting import new_figure, plain_log_ticks, save_figure
from toyproblems.ids import claim_id
from toyproblems.run import oracle_loss, run

__all__ = ["ROTATIONAL_CLAIMS", "OPTIMIZERS", "simulate_equilibrium"]

SRC = "Kosson et al. 2024 (arXiv 2305.17212)"
OPTIMIZERS = ("sgd", "sgdm", "adamw", "lion", "adam_l2")
LABELS = {"sgd": "SGD+WD", "sgdm": "SGDM (L2 in momentum)", "adamw": "AdamW", "lion": "Lion",
          "adam_l2": "Adam+L2"}
START_FACTOR = 3.0       # ||x(0)|| / predicted equilibrium norm
# R3.1 (deterministic, issue 27): (approx, noise, tolerance) per mode; approx = 1 step of the shortest approach
# (quick 214 steps, full 1287) + O(eta lambda) (<= 0.3 %); before: the recursion itself, 5 %
R3_1_BUDGET = {"quick": (0.0050, 0.0, 0.012), "full": (0.0012, 0.0, 0.003)}
WINDOW = 0.4             # measure over the last 40 % of the steps
ANGLE_TOL = 0.05         # relative, dimension >= 256
NORM_TOL = 0.05
# Lion rows with the weighted arcsine form (issue 27; kosson2024.equilibrium_*_lion_weighted): (approx, noise, tolerance)
# per mode, approx = seed mean of the max rel. err over the grid, noise = 2 sd (tools/seed_spread.py, seeds 0-4).
# Before (unweighted arcsine form, alpha^k = 1): full mode R1.4 3.7 %, R2.4 4.5 % against 5 %.
# R1.5's erratum check is R1.4's comparison (the measurement matches the corrected form), so it has R1.4's budget.
LION_BUDGETS = {"R1.4": {"quick": (0.0175, 0.0074, 0.05), "full": (0.0102, 0.0012, 0.03)},
                "R2.4": {"quick": (0.0118, 0.0070, 0.05), "full": (0.0056, 0.0038, 0.025)}}
LION_BASIS = "{mode} mode at seeds 0-4 (tools/seed_spread.py): approx = seed mean of the max rel. err, noise = 2 sd"


def _sgd_norm_budget(r: dict):
    """R2.1's budget (issue 27). On the constant-sigma toy the gradient is orthogonal to x with norm sigma/||x||, so
    SGD + WD's norm follows :func:`scaleinv.theory.norm_sq_update_orthogonal` exactly: the row is deterministic
    (noise 0) and the only approximation in comparing the window RMS with the exact fixed point is the residual of
    the approach from ||x(0)|| = 3 ||x*||, computed here from that recursion (plus float64 rounding, 1e-12). The
    measurement is the shipped transform (registry "sgd-wd") on jax.grad of the toy, not this recursion."""
    w0 = int((1 - WINDOW) * r["steps"])
    worst = 0.0
    for (eta, wd, _, sigma, _), pn in zip(r["cfg"], r["pred_norm"]):
        s, acc = (START_FACTOR * pn) ** 2, []
        for t in range(r["steps"]):
            if t >= w0:
                acc.append(s)
            s = theory.norm_sq_update_orthogonal(s, eta, wd, sigma)
        worst = max(worst, abs(np.sqrt(np.mean(acc)) / pn - 1.0))
    approx = worst + 1e-12
    return 3 * approx, budget(approx, 0.0, 3 * approx,
                              "deterministic (orthogonal constant-sigma gradient): approx = the approach residual of the "
                              "exact norm recursion over the window from 3 ||x*||, noise 0")


def _lion_budget(rid: str, quick: bool):
    mode = "quick" if quick else "full"
    a, n, tol = LION_BUDGETS[rid][mode]
    return tol, budget(a, n, tol, LION_BASIS.format(mode=mode))
_CACHE: Dict = {}


def _setup(quick: bool):
    """Dimension, steps and the (eta, lambda) grid per optimizer family (eta*lambda spans 4x).

    The grids respect the model's slow-weight assumption eta*lambda << 1 - beta for the momentum
    EMAs (beta1; Lion's beta2, 0.9 in quick mode): the optimizer's direction state must track the
    slowly rotating weight. Adam's second-moment EMA (beta2 = 0.99) is stationary at equilibrium,
    so its lag does not change the equilibrium, only the approach time (modelled in R3). For SGDM
    (L2 through the momentum) eta*lambda < (1 - alpha)^2 / (2 (1 + alpha)), below which the
    radial (norm) dynamics is not under-damped (alpha <= 0.8 here).
    """
    if quick:
        dim, steps = 256, 4000
        sgd_el = [(0.15, 0.01), (0.3, 0.01), (0.3, 0.02)]         # eta*lambda = 1.5e-3 .. 6e-3
        adam_el = [(0.015, 0.1), (0.03, 0.1), (0.03, 0.2)]
        lion_el = [(0.0015, 1.0), (0.003, 1.0), (0.003, 2.0)]
        lion_b2 = 0.9
    else:
        dim, steps = 1024, 24000
        sgd_el = [(0.025, 0.01), (0.05, 0.01), (0.05, 0.02)]        # 2.5e-4 .. 1e-3
        adam_el = [(0.0025, 0.1), (0.005, 0.1), (0.005, 0.2)]
        lion_el = [(0.00025, 1.0), (0.0005, 1.0), (0.0005, 2.0)]
        lion_b2 = 0.99
    grids = {
        "sgd": [(e, w, 0.0, s, 0.0) for (e, w) in sgd_el for s in (1.0, 4.0)],
        "sgdm": [(e, w, b, 1.0, 0.0) for (e, w) in sgd_el for b in (0.5, 0.8)],
        "adamw": [(e, w, b, 1.0, 0.99) for (e, w) in adam_el for b in (0.5, 0.9)],
        "lion": [(e, w, b, 1.0, lion_b2) for (e, w) in lion_el for b in (0.5, 0.9)],
        "adam_l2": [(e, w, 0.9, s, 0.99) for (e, w) in adam_el for s in (1.0, 8.0)],
    }
    return dim, steps, grids


# toy optimizer key -> optimizer registry name (scaleinv.registry builds every transform)
REGISTRY_NAME = {"sgd": "sgd-wd", "sgdm": "sgdm", "adamw": "adamw", "lion": "lion", "adam_l2": "adam-l2"}


def _make_opt(name: str):
    if name not in REGISTRY_NAME:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
    reg = REGISTRY_NAME[name]

    def make(eta, weight_decay, beta, sigma, beta2):
        hp = {"momentum": beta, "b1": beta, "b2": beta2, "eps": 1e-12}
        return optax.chain(optax.scale(sigma), registry.make_from(reg, eta, weight_decay, hp))
    return make


def predict(name: str, eta, weight_decay, beta, sigma, beta2, dim):
    """(angle, norm) predictions for one configuration: the optimizer registry's
    (:func:`scaleinv.registry.predict`, the project's best form: SGD + WD the exact fixed point, Lion the
    arcsine law with the alpha^k weighting of the lag correlations, issue 27). The alternative Lion forms
    that R1 / R2 report beside it are :func:`lion_alternative`."""
    if name not in REGISTRY_NAME:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
    reg = REGISTRY_NAME[name]
    hp = {k: v for k, v in {"momentum": beta, "b1": beta, "b2": beta2}.items() if k in registry.get(reg).prediction_hp}
    p = registry.predict(reg, eta, weight_decay, sigma=sigma, dim=dim, **hp)
    return p["angle"], float(np.sqrt(p["sq_norm"]))


def lion_alternative(form: str, eta, weight_decay, beta, sigma, beta2, dim):
    """(angle, norm) of Lion by the forms the registry's does not use: ``kosson`` (the paper's linearised
    sign) or ``arcsin`` (the arcsine law with alpha^k = 1)."""
    T = theory
    if form == "kosson":
        return T.equilibrium_angle_lion(eta, weight_decay, beta, beta2), T.equilibrium_norm_lion(eta, weight_decay, beta, beta2, dim)
    if form == "arcsin":
        return (T.equilibrium_angle_lion_arcsin(eta, weight_decay, beta, beta2),
                T.equilibrium_norm_lion_arcsin(eta, weight_decay, beta, beta2, dim))
    raise ValueError(f"form must be 'kosson' or 'arcsin', got {form!r}")


def _simulate_all(seed: int, quick: bool) -> dict:
    """Run every optimizer family on the constant-sigma toy over its grid as ONE toyproblems.run run (params: family ->
    (configs, dim), each configuration its own optimizer and key; one compilation); cached per (seed, quick)."""
    key = (seed, quick)
    if key in _CACHE:
        return _CACHE[key]
    dim, steps, grids = _setup(quick)
    prob = P.constant_sigma(dim, 1.0)
    cfgs = {n: np.array(grids[n], dtype=float) for n in OPTIMIZERS}
    preds = {n: np.array([predict(n, *c, dim) for c in cfgs[n]], dtype=float) for n in OPTIMIZERS}

    makes = {n: _make_opt(n) for n in OPTIMIZERS}
    grad = jax.grad(prob.loss)

    @jax.jit
    def go(x0s, keys, hps):
        # ONE run of every family (params: family -> (configs, dim)); each configuration's optimizer and key
        def field(xs, _, t):
            return {n: jax.vmap(lambda x, k: grad(x, jax.random.fold_in(k, t)))(xs[n], keys[n]) for n in OPTIMIZERS}

        def init(xs):
            return {n: jax.vmap(lambda x, h: makes[n](*h).init(x))(xs[n], hps[n]) for n in OPTIMIZERS}

        def update(g, s, xs):
            out = {n: jax.vmap(lambda gg, ss, x, h: makes[n](*h).update(gg, ss, x))(g[n], s[n], xs[n], hps[n])
                   for n in OPTIMIZERS}
            return {n: out[n][0] for n in OPTIMIZERS}, {n: out[n][1] for n in OPTIMIZERS}

        def record(st):             # angle(x_t, x_{t+1}) and ||x_t|| per configuration
            return {n: (jax.vmap(angular_update)(st.x[n], st.x_new[n]), jax.vmap(jnp.linalg.norm)(st.x[n]))
                    for n in OPTIMIZERS}

        return run(oracle_loss(field), optax.GradientTransformation(init, update), x0s, steps, jax.random.PRNGKey(0),
                   record=record, loss_takes_step=True).extra

    with jax.enable_x64(True):
        k0, k1 = jax.random.split(jax.random.PRNGKey(seed))
        x0s, keys = {}, {}
        for i, n in enumerate(OPTIMIZERS):
            ka, kb = jax.random.split(jax.random.fold_in(k0, i))
            x0s[n] = jax.vmap(lambda k, s: prob.init(s, k))(jax.random.split(ka, len(cfgs[n])),
                                                            jnp.asarray(START_FACTOR * preds[n][:, 1]))
            keys[n] = jax.random.split(jax.random.fold_in(k1, i), len(cfgs[n]))
        traces = go(x0s, keys, {n: jnp.asarray(cfgs[n]) for n in OPTIMIZERS})
        traces = jax.tree.map(np.asarray, traces)
    w = slice(int((1 - WINDOW) * steps), None)
    res = {}
    for n in OPTIMIZERS:
        angle, norm = traces[n][0].T, traces[n][1].T      # (configs, steps)
        res[n] = dict(name=n, dim=dim, steps=steps, cfg=cfgs[n], pred_angle=preds[n][:, 0], pred_norm=preds[n][:, 1],
                      angle=angle, norm=norm,
                      rms_angle=np.sqrt(np.mean(angle[:, w] ** 2, axis=1)), mean_angle=np.mean(angle[:, w], axis=1),
                      eq_norm=np.sqrt(np.mean(norm[:, w] ** 2, axis=1)))
    _CACHE[key] = res
    return res


def simulate_equilibrium(name: str, seed: int, quick: bool) -> dict:
    """Per-step angle and norm of ``name`` on the constant-sigma toy over its grid, with the
    predictions and the equilibrium-window statistics (rms_angle, mean_angle, eq_norm)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
    return _simulate_all(seed, quick)[name]


def _rel(a, b):
    return np.asarray(a) / np.asarray(b) - 1.0


def _cfg_str(name, c):
    eta, wd, beta, sigma, beta2 = c
    s = f"eta={eta:g}, lambda={wd:g}"
    if name in ("sgdm",):
        s += f", alpha={beta:g}"
    if name in ("adamw", "lion", "adam_l2"):
        s += f", beta1={beta:g}"
    if name == "lion":
        s += f", beta2={beta2:g}"
    if name in ("sgd", "adam_l2"):
        s += f", sigma={sigma:g}"
    return s


# ============================================================== R1: equilibrium angular update
@claim_id("R1")
def claim_equilibrium_angle(seed: int, quick: bool, out_dir: Path) -> List[Row]:
    """The RMS angular update per step settles at the optimizer's closed form over the grid."""
    rows = []
    fig, ax = new_figure()
    forms = {"sgd": "sqrt(2 eta lambda)", "sgdm": "sqrt(2 eta lambda/(1+alpha))",
             "adamw": "sqrt(2 eta lambda (1-beta1)/(1+beta1))",
             "lion": "sqrt((1 - alpha^2) / K_eff(alpha)), arcsine-law K_eff with the alpha^k = (1 - eta lambda)^k "
                     "weighting of the lag correlations (derived here, theory.equilibrium_angle_lion_weighted)",
             "adam_l2": "sqrt((1-b1)/(1+b1)) (2 lambda)^(1/3) eta^(2/3) d^(1/3) sigma^(-1/3) (derived here)"}
    markers = dict(zip(OPTIMIZERS, "osD^v"))
    allv = []
    for name in OPTIMIZERS:
        r = simulate_equilibrium(name, seed, quick)
        err = _rel(r["rms_angle"], r["pred_angle"])
        worst = int(np.argmax(np.abs(err)))
        tol_a, bud = _lion_budget("R1.4", quick) if name == "lion" else (ANGLE_TOL, None)
        rows.append(Row(
            f"R1.{len(rows) + 1}", SRC,
            f"{LABELS[name]}: equilibrium RMS angle per step = {forms[name]} (d={r['dim']}, {len(err)} configs)"
            + (f"; fails if a config is more than {tol_a:.0%} off" if name == "lion" else ""),
            round(float(r["pred_angle"][worst]), 6), round(float(r["rms_angle"][worst]), 6),
            f"max rel. err over grid <= {tol_a:.0%}",
            verdict([close("RMS angle", r["rms_angle"].tolist(), r["pred_angle"].tolist(), rtol=tol_a)]),
            note=f"worst config {_cfg_str(name, r['cfg'][worst])}; max |rel err| {np.max(np.abs(err)):.2%}; "
                 f"mean-angle max |rel err| {np.max(np.abs(_rel(r['mean_angle'], r['pred_angle']))):.2%}",
            extra={"configs": r["cfg"].tolist(), "predicted": r["pred_angle"].tolist(),
                   "measured_rms": r["rms_angle"].tolist(), "measured_mean": r["mean_angle"].tolist(),
                   **({"budget": bud} if bud else {})}))
        ax.scatter(r["pred_angle"], r["rms_angle"], marker=markers[name], label=LABELS[name], alpha=0.8)
        allv += list(r["pred_angle"]) + list(r["rms_angle"])
        if name == "lion":
            kos = np.array([lion_alternative("kosson", *c, r["dim"])[0] for c in r["cfg"]])
            unw = np.array([lion_alternative("arcsin", *c, r["dim"])[0] for c in r["cfg"]])
            e2 = _rel(r["rms_angle"], kos)
            w2 = int(np.argmax(np.abs(e2)))
            rows.append(Row(
                f"R1.{len(rows) + 1}", SRC + ", REQ lion_etar_func",
                "Lion, paper's closed form sqrt(pi/2) sqrt(2 eta lambda) sqrt((1-b1)^2 + b1^2 (1-b2)/(1+b2)) "
                "(linearised sign)", round(float(kos[w2]), 6), round(float(r["rms_angle"][w2]), 6),
                f"max rel. err over grid <= {ANGLE_TOL:.0%}; erratum only if the discrepancy has its derived size: the "
                f"measurement matches the weighted arcsine-law form (R1.4) within R1.4's budgeted {tol_a:.0%} in every "
                "config; fails if it matches neither",
                verdict([close("RMS angle vs linearised form", r["rms_angle"].tolist(), kos.tolist(), rtol=ANGLE_TOL)],
                        erratum=[close("RMS angle vs weighted arcsine-law form", r["rms_angle"].tolist(),
                                       r["pred_angle"].tolist(), rtol=tol_a)]),
                note=f"worst {_cfg_str(name, r['cfg'][w2])}: {e2[w2]:+.2%}. The linearisation drops the "
                     "uncorrelated part of sign(c) and the arcsine nonlinearity; the corrected form "
                     "(theory.equilibrium_angle_lion_weighted, row above: arcsine law + the alpha^k weighting) is "
                     f"checked instead (max |rel err| {np.max(np.abs(_rel(r['rms_angle'], r['pred_angle']))):.2%}; "
                     f"without the weighting {np.max(np.abs(_rel(r['rms_angle'], unw))):.2%}). "
                     "It agrees with the paper's form at the default betas (0.9, 0.99).",
                extra={"predicted_kosson": kos.tolist(), "predicted_arcsin_unweighted": unw.tolist(),
                       "measured_rms": r["rms_angle"].tolist(), "budget": bud}))
    lo, hi = min(allv) / 1.3, max(allv) * 1.3
    ax.plot([lo, hi], [lo, hi], "k-", lw=1, label="theory (measured = predicted)")
    ax.fill_between([lo, hi], [lo * (1 - ANGLE_TOL), hi * (1 - ANGLE_TOL)],
                    [lo * (1 + ANGLE_TOL), hi * (1 + ANGLE_TOL)], color="gray", alpha=0.2, label=f"±{ANGLE_TOL:.0%}")
    ax.set(xscale="log", yscale="log", xlabel="predicted equilibrium angle per step (rad)",
           ylabel="measured RMS angle(x_t, x_t+1) (rad)", title="R1: rotational equilibrium, angle")
    plain_log_ticks(ax)
    ax.legend(fontsize=7)
    save_figure(fig, Path(out_dir) / "R1.png")
    return rows


# ============================================================== R2: equilibrium norm
@claim_id("R2")
def claim_equilibrium_norm(seed: int, quick: bool, out_dir: Path) -> List[Row]:
    """The weight norm settles at the optimizer's closed-form equilibrium norm."""
    rows = []
    fig, ax = new_figure()
    forms = {"sgd": "(sigma^2 eta/(lambda (2 - eta lambda)))^(1/4) (the exact fixed point; leading order (eta sigma^2/(2 lambda))^(1/4))", "sgdm": "(eta sigma^2/(2 lambda (1-alpha)))^(1/4)",
             "adamw": "sqrt(eta d/(2 lambda)) (gradient-independent)",
             "lion": "sqrt(eta^2 d K_eff(alpha)/(1 - alpha^2)), K_eff(alpha) the arcsine-law lag sum weighted by "
                     "alpha^k = (1 - eta lambda)^k (derived here, theory.equilibrium_norm_lion_weighted)",
             "adam_l2": "(eta sigma sqrt(d)/(2 lambda))^(1/3)"}
    allv = []
    for name, m in zip(OPTIMIZERS, "osD^v"):
        r = simulate_equilibrium(name, seed, quick)
        err = _rel(r["eq_norm"], r["pred_norm"])
        worst = int(np.argmax(np.abs(err)))
        tol_n, bud = (_lion_budget("R2.4", quick) if name == "lion" else _sgd_norm_budget(r) if name == "sgd"
                      else (NORM_TOL, None))
        rows.append(Row(
            f"R2.{len(rows) + 1}", SRC, f"{LABELS[name]}: equilibrium norm = {forms[name]} (d={r['dim']})"
            + (f"; fails if a config is more than {tol_n:.1%} off" if name == "lion" else
               f"; deterministic on this toy, fails if a config is more than {tol_n:.1e} off" if name == "sgd" else ""),
            round(float(r["pred_norm"][worst]), 5), round(float(r["eq_norm"][worst]), 5),
            f"max rel. err over grid <= {tol_n:.1%}" if name == "lion" else
            f"max rel. err over grid <= {tol_n:.1e}" if name == "sgd" else f"max rel. err over grid <= {NORM_TOL:.0%}",
            verdict([close("equilibrium norm", r["eq_norm"].tolist(), r["pred_norm"].tolist(), rtol=tol_n)]),
            note=f"worst config {_cfg_str(name, r['cfg'][worst])}; max |rel err| " + (f"{np.max(np.abs(err)):.2e}" if name == "sgd" else f"{np.max(np.abs(err)):.2%}")
                 + (f"; the unweighted arcsine form sqrt(eta d K_eff/(2 lambda)) is off by up to "
                    f"{np.max(np.abs(_rel(r['eq_norm'], [lion_alternative('arcsin', *c, r['dim'])[1] for c in r['cfg']]))):.2%}"
                    if name == "lion" else ""),
            extra={"configs": r["cfg"].tolist(), "predicted": r["pred_norm"].tolist(),
                   "measured": r["eq_norm"].tolist(), **({"budget": bud} if bud else {})}))
        ax.scatter(r["pred_norm"], r["eq_norm"], marker=m, label=LABELS[name], alpha=0.8)
        allv += list(r["pred_norm"]) + list(r["eq_norm"])
    lo, hi = min(allv) / 1.3, max(allv) * 1.3
    ax.plot([lo, hi], [lo, hi], "k-", lw=1, label="theory (measured = predicted)")
    ax.set(xscale="log", yscale="log", xlabel="predicted equilibrium norm ||x*||",
           ylabel="measured RMS ||x_t|| at equilibrium", title="R2: rotational equilibrium, norm")
    ax.legend(fontsize=7)
    save_figure(fig, Path(out_dir) / "R2.png")
    return rows


# ============================================================== R3: time to equilibrium
def _time_to_band(norm, eq, band=0.1):
    """First step after which ||x_t|| stays within ``band`` (relative) of the equilibrium norm."""
    outside = np.abs(norm / eq[:, None] - 1.0) > band
    last_out = np.where(outside.any(1), outside.shape[1] - 1 - np.argmax(outside[:, ::-1], axis=1), -1)
    return last_out + 1


@claim_id("R3")
def claim_equilibrium_time(seed: int, quick: bool, out_dir: Path) -> List[Row]:
    """Starting at 3x the equilibrium norm, the time to reach equilibrium scales as 1/(eta lambda):
    SGD and AdamW against the norm recursion of :func:`scaleinv.theory.equilibrium_approach_steps`
    (exact for SGD, mean field for AdamW, which includes the lag of Adam's v), SGDM and Lion by the
    log-log slope of T_eq against eta*lambda (= -1) at fixed betas."""
    rows = []
    fig, ax = new_figure()
    colors = {"sgd": "C0", "sgdm": "C1", "adamw": "C2", "lion": "C3"}
    for name in ("sgd", "sgdm", "adamw", "lion"):
        r = simulate_equilibrium(name, seed, quick)
        eta, wd, beta = r["cfg"][:, 0], r["cfg"][:, 1], r["cfg"][:, 2]
        T_eq = _time_to_band(r["norm"], r["eq_norm"])
        el = eta * wd
        if name in ("sgd", "adamw"):
            T_rec = np.array([theory.equilibrium_approach_steps(name, c[0], c[1], start=START_FACTOR, band=0.1,
                                                                beta2=c[4], sigma=c[3], dim=r["dim"])
                              for c in r["cfg"]], dtype=float)
            extra = {}
            if name == "sgd":
                # issue 27: the toy follows the norm recursion exactly (constant sigma, deterministic), so predicting with
                # the same recursion could not fail; the prediction is the closed form of the linear norm ODE instead
                T_pred = np.array([theory.equilibrium_approach_steps_sgd_ode(c[0], c[1], start=START_FACTOR, band=0.1)
                                   for c in r["cfg"]], dtype=float)
                mode = "quick" if quick else "full"
                a_, n_, tol = R3_1_BUDGET[mode]
                extra["budget"] = budget(a_, n_, tol, "deterministic toy (noise 0): approx = one step of the shortest "
                                                      "approach (integer first step in the band) + O(eta lambda) of the ODE")
                form = ("linear norm ODE closed form ln((3^4 - 1)/(1.1^4 - 1))/(4 eta lambda) "
                        "(theory.equilibrium_approach_steps_sgd_ode); deterministic (the measurement is the exact norm "
                        f"recursion), so this tests the ODE against it; fails if more than {tol:.1%} off")
            else:
                T_pred, tol = T_rec, 0.15
                form = "norm recursion (mean field incl. Adam's v lag)"
            err = T_eq / T_pred - 1
            w = int(np.argmax(np.abs(err)))
            rows.append(Row(
                f"R3.{len(rows) + 1}", SRC,
                f"{LABELS[name]}: steps until ||x|| stays within 10% of equilibrium (from 3x) = {form}",
                int(round(T_pred[w])), int(T_eq[w]), f"max rel. err over grid <= {tol:.1%}" if name == "sgd" else
                f"max rel. err over grid <= {tol:.0%}",
                verdict([close("steps to equilibrium", T_eq.tolist(), T_pred.tolist(), rtol=tol)]),
                note="T_eq * eta * lambda measured " + ", ".join(f"{v:.2f}" for v in T_eq * el)
                     + "; predicted " + ", ".join(f"{v:.2f}" for v in T_pred * el)
                     + ("; the exact recursion (theory.equilibrium_approach_steps) gives " + ", ".join(f"{v:.0f}" for v in T_rec)
                        if name == "sgd" else ""),
                extra={"T_eq": T_eq.tolist(), "T_pred": T_pred.tolist(), "eta_lambda": el.tolist(), **extra}))
        else:
            slopes = [float(np.polyfit(np.log(el[beta == b]), np.log(T_eq[beta == b]), 1)[0]) for b in np.unique(beta)]
            worst = max(slopes, key=lambda v: abs(v + 1))
            rows.append(Row(
                f"R3.{len(rows) + 1}", SRC,
                f"{LABELS[name]}: steps to reach equilibrium (from 3x) ~ 1/(eta lambda): log-log slope at fixed "
                + ("alpha" if name == "sgdm" else "betas"), -1.0, round(worst, 3), "|slope + 1| <= 0.15",
                verdict([close("log-log slope", slopes, -1.0, atol=0.15)]),
                note="T_eq * eta * lambda = " + ", ".join(f"{v:.2f}" for v in T_eq * el)
                     + (" (L2 through momentum decays at eta lambda/(1-alpha): T ~ (1-alpha)/(eta lambda))"
                        if name == "sgdm" else ""),
                extra={"T_eq": T_eq.tolist(), "eta_lambda": el.tolist(), "slopes": slopes}))
        t = np.arange(r["norm"].shape[1])
        for i in range(len(el)):
            ax.plot(t * el[i], r["norm"][i] / r["eq_norm"][i], lw=0.8, alpha=0.7, color=colors[name],
                    label=LABELS[name] if i == 0 else None)
    ax.axhline(1.0, color="k", lw=1, label="equilibrium (theory)")
    ax.axhspan(0.9, 1.1, color="gray", alpha=0.2, label="±10% band")
    ax.set(yscale="log", xlabel="eta * lambda * t", ylabel="||x_t|| / equilibrium norm",
           title="R3: approach to equilibrium vs eta*lambda*t", xlim=(0, 6))
    ax.legend(fontsize=7)
    save_figure(fig, Path(out_dir) / "R3.png")
    return rows


# ============================================================== R4: rotational wrapper
def _rows_loss(prob):
    def loss(W, key):
        keys = jax.random.split(key, W.shape[0])
        return jnp.sum(jax.vmap(prob.loss)(W, keys))
    return loss


def run_neurons(opts: dict, W0, steps: int, key, loss):
    """Scan every optimizer of ``opts`` (name -> optax) on the same (neurons, fan) weight with the
    same gradient noise (toyproblems.run, one key), in ONE jitted program; returns {name: (angles, norms)} with per-step,
    per-neuron arrays of shape (steps, neurons)."""
    from scaleinv.angular import neuron_angles, neuron_norms

    def record(st):
        return neuron_angles(st.x, st.x_new), neuron_norms(st.x_new)

    @jax.jit
    def go(W0, key):                # the same key: every optimizer sees the same gradient noise
        return {n: run(loss, o, W0, steps, key, record=record).extra for n, o in opts.items()}

    return jax.tree.map(np.asarray, go(W0, key))


@claim_id("R4")
def claim_rotational_wrapper(seed: int, quick: bool, out_dir: Path) -> List[Row]:
    """RV optimizers (scaleinv.rotational, REQ algorithm): every neuron rotates at the equilibrium
    rate eta_r from the start and keeps its norm; the base optimizer, started from the same
    neurons (norms 0.1 .. 10), rotates far from eta_r during its ~1/(eta lambda) transient.

    "From the start" is up to the wrapper's own EMA of ||u||^2 (beta 0.9, memory ~10 steps) and
    the inner optimizer's moment warm-up (~1/(1 - beta1) steps): the early window is steps
    20-99; steps 1-19 are reported in the note."""
    n_neurons, dim = 16, 256
    steps = 300 if quick else 2000
    e0, e1 = 20, 100
    prob = P.constant_sigma(dim, 1.0)
    loss = _rows_loss(prob)
    # the prediction is the closed form written out here from the SAME hyper-parameters the
    # optimizers get (Kosson et al. 2024, eqs. for eta_r), independent of scaleinv.theory, which
    # the wrappers use for their own target: a wrong theory formula makes the wrapper miss it
    hp = {"RV-SGDM": (0.1, 0.01, 0.9, None), "RV-AdamW": (0.01, 0.1, 0.9, None), "RV-Lion": (0.001, 1.0, 0.9, 0.99)}
    closed = {
        "RV-SGDM": lambda e, w, b, _: np.sqrt(2 * e * w / (1 + b)),
        "RV-AdamW": lambda e, w, b, _: np.sqrt(2 * e * w * (1 - b) / (1 + b)),
        "RV-Lion": lambda e, w, b1, b2: np.sqrt(np.pi / 2) * np.sqrt(2 * e * w) * np.sqrt((1 - b1) ** 2 + b1 ** 2 * (1 - b2) / (1 + b2)),
    }
    (es, ws, bs, _), (ea, wa, ba, _), (el, wl, b1l, b2l) = hp["RV-SGDM"], hp["RV-AdamW"], hp["RV-Lion"]
    cases = {
        "RV-SGDM": (rotational_sgdm(es, ws, momentum=bs),
                    optax.chain(optax.add_decayed_weights(ws), optax.sgd(es, momentum=bs)),
                    closed["RV-SGDM"](*hp["RV-SGDM"])),
        "RV-AdamW": (rotational_adamw(ea, wa, b1=ba), optax.adamw(ea, b1=ba, weight_decay=wa),
                     closed["RV-AdamW"](*hp["RV-AdamW"])),
        "RV-Lion": (rotational_lion(el, wl, b1=b1l, b2=b2l),
                    optax.lion(el, b1=b1l, b2=b2l, weight_decay=wl),
                    closed["RV-Lion"](*hp["RV-Lion"])),
    }
    rows = []
    fig, ax = new_figure()
    with jax.enable_x64(True):
        k0, k1 = jax.random.split(jax.random.PRNGKey(seed))
        scales = jnp.logspace(-1, 1, n_neurons)            # neurons far from equilibrium, both sides
        W0 = jax.random.normal(k0, (n_neurons, dim))
        W0 = scales[:, None] * W0 / jnp.linalg.norm(W0, axis=1, keepdims=True)
        opts = {}
        for name, (rv, base, _) in cases.items():
            opts[name], opts[name + "/base"] = rv, base
        res = run_neurons(opts, W0, steps, k1, loss)
        n0 = np.linalg.norm(np.asarray(W0), axis=1)
    for i, (name, (_, _, target)) in enumerate(cases.items()):
        (ang, nrm), (ang_b, _) = res[name], res[name + "/base"]
        target = float(target)
        # step 0 also applies REQ's one-off zero-mean centring, so angles are taken from step 1
        rms_all = np.sqrt(np.mean(ang[e0:] ** 2))
        rms_neuron = np.sqrt(np.mean(ang[e0:] ** 2, axis=0))
        rms_early = np.sqrt(np.mean(ang[e0:e1] ** 2, axis=0))
        rms_first = np.sqrt(np.mean(ang[1:e0] ** 2, axis=0))
        base_early = np.sqrt(np.mean(ang_b[e0:e1] ** 2, axis=0))
        norm_dev = float(np.max(np.abs(nrm / n0[None] - 1.0)))
        err_neuron = float(np.max(np.abs(rms_neuron / target - 1)))
        err_early = float(np.max(np.abs(rms_early / target - 1)))
        rows.append(Row(
            f"R4.{len(rows) + 1}", SRC + ", REQ RotationalWrapper",
            f"{name}: every neuron rotates at eta_r from the start (RMS angle = closed form from the hyper-parameters)",
            round(target, 6), round(float(rms_all), 6),
            f"steps >= {e0}: all 2%, each neuron 5%; each neuron, steps {e0}-{e1 - 1}: 10%",
            verdict([close("RMS angle, all neurons", float(rms_all), target, rtol=0.02),
                     close("RMS angle per neuron", rms_neuron.tolist(), target, rtol=0.05),
                     close("RMS angle per neuron, early window", rms_early.tolist(), target, rtol=0.10)]),
            note=f"per-neuron max |err| {err_neuron:.2%}; steps {e0}-{e1 - 1}: {err_early:.2%}; steps 1-{e0 - 1}: "
                 f"per-neuron RMS / target in [{rms_first.min() / target:.3g}, {rms_first.max() / target:.3g}]; "
                 f"base optimizer, steps {e0}-{e1 - 1}: [{base_early.min() / target:.3g}, "
                 f"{base_early.max() / target:.3g}]",
            extra={"per_neuron_rms": rms_neuron.tolist(), "base_early_ratio": (base_early / target).tolist()}))
        rows.append(Row(
            f"R4.{len(rows) + 1}", SRC + ", REQ RotationalWrapper",
            f"{name}: neuron norms stay at their initial value", 0.0, norm_dev,
            "max |norm/n0 - 1| <= 1e-10", verdict([within("max |norm/n0 - 1|", norm_dev, lo=0.0, hi=1e-10)])))
        t = np.arange(1, steps)
        ax.plot(t, np.sqrt(np.mean(ang[1:] ** 2, axis=1)) / target, color=f"C{i}", lw=1, label=name)
        ax.plot(t, np.sqrt(np.mean(ang_b[1:] ** 2, axis=1)) / target, color=f"C{i}", lw=1, ls="--",
                label=f"{name.replace('RV-', '')} (base)")
    ax.axhline(1.0, color="k", lw=1, label="target eta_r (theory)")
    ax.set(xscale="log", yscale="log", xlabel="step", ylabel="RMS over neurons of angle / eta_r",
           title="R4: rotational wrapper vs base optimizer")
    ax.legend(fontsize=7)
    save_figure(fig, Path(out_dir) / "R4.png")
    return rows


# ============================================================== R5: normalized MF
@claim_id("R5")
def claim_normalized_mf_equilibrium(seed: int, quick: bool, out_dir: Path) -> List[Row]:
    """On normalized MF with minibatch noise, SGD+WD (and SGDM) reach the predicted equilibrium
    angle per scale-invariant group (A and B). For SGD this needs only <x, g> = 0 and a stationary
    norm (E[angle^2] = eta^2 E||g||^2/||x||^2 = 2 eta lambda), not the random-walk model; SGDM
    needs it (successive minibatch gradients are correlated through the slowly moving optimum),
    hence its wider tolerance."""
    d, r, batch = 16, 4, 16
    steps = 2000 if quick else 20000
    prob = P.normalized_mf(d, r, batch=batch)
    configs = [(0.5, 0.02, 0.0), (1.0, 0.01, 0.0), (0.1, 0.04, 0.9)]      # (eta, lambda, alpha); alpha=0: SGD
    if not quick:
        configs += [(0.25, 0.01, 0.0), (0.05, 0.04, 0.5)]
    cfg = np.array(configs, dtype=float)
    rows = []
    fig, ax = new_figure()

    def one(p0, h, key):
        opt = registry.make("sgdm", h[0], h[1], momentum=h[2])   # L2 through the momentum; alpha=0: SGD + WD
        return run(prob.loss, opt, p0, steps, key,
                   record=lambda st: jnp.stack([angular_update(st.x, st.x_new, prob.groups[k]) for k in ("A", "B")])).extra

    with jax.enable_x64(True):
        key = jax.random.PRNGKey(seed)
        p0 = prob.init(1.0, jax.random.fold_in(key, 1))
        ang_all = np.asarray(jax.jit(jax.vmap(one, in_axes=(None, 0, 0)))(
            p0, jnp.asarray(cfg), jax.random.split(jax.random.fold_in(key, 2), len(cfg))))
    for i, (eta, wd, mom) in enumerate(configs):
        name = "sgdm" if mom > 0 else "sgd"
        ang = ang_all[i]
        w = slice(steps // 2, None)
        rms = np.sqrt(np.mean(ang[w] ** 2, axis=0))
        pred = float(predict(name, eta, wd, mom, 1.0, 0.0, d)[0])
        err = np.abs(rms / pred - 1)
        tol = 0.05 if name == "sgd" else 0.10
        rows.append(Row(
            f"R5.{len(rows) + 1}", SRC,
            f"normalized MF (d={d}, r={r}, batch {batch}), {LABELS[name]} eta={eta:g}, lambda={wd:g}"
            + (f", alpha={mom:g}" if name == "sgdm" else "") + ": RMS angle of A and of B = equilibrium",
            round(pred, 5), [round(float(v), 5) for v in rms], f"rel. err <= {tol:.0%} for A and B",
            verdict([close("RMS angle of A and B", rms.tolist(), pred, rtol=tol)]),
            note=f"rel. err A {err[0]:.2%}, B {err[1]:.2%}; last half of {steps} steps"))
        win = 50
        smooth = np.sqrt(np.convolve(ang[:, 0] ** 2, np.ones(win) / win, mode="valid"))
        ax.plot(np.arange(len(smooth)) + win // 2, smooth, color=f"C{i}", lw=1,
                label=f"{name} eta={eta:g} lambda={wd:g} (A, {win}-step RMS)")
        ax.axhline(pred, color=f"C{i}", ls="--", lw=1)
    ax.set(yscale="log", xlabel="step", ylabel="angle per step of A (rad)",
           title="R5: normalized MF, measured (solid) vs theory (dashed)")
    ax.legend(fontsize=7)
    save_figure(fig, Path(out_dir) / "R5.png")
    return rows


ROTATIONAL_CLAIMS = [claim_equilibrium_angle, claim_equilibrium_norm, claim_equilibrium_time,
                     claim_rotational_wrapper, claim_normalized_mf_equilibrium]
