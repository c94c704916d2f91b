"""Claims of Defazio (2025), *Why Gradients Rapidly Increase Near the End of Training*, on the toys.

Every claim has the signature ``claim_x(seed, quick, out_dir) -> list[Row]``, runs in float64
(``jax.enable_x64`` inside), saves ONE figure ``out_dir/<prefix>.png`` and returns rows with a
stated two-sided tolerance. Predictions come from :mod:`scaleinv.theory.defazio2025`; nothing is
fitted to the data.

Toy: the constant-sigma loss (:func:`toyproblems.problems.constant_sigma`): ||g|| = sigma/||x||
exactly, so the measured ratio ||g_t|| / ||x_t|| = sigma / ||x_t||^2 is the norm seen through the
gradient. Runs start at the equilibrium norm of eta_max and follow a linear or cosine decay to 0
over T = K / (eta_max lambda) steps, K the schedule length in relaxation times, with the ordinary
weight decay (SGD: x <- x - eta_t (g + lambda x); AdamW: optax.adamw) or the corrected one
lambda_t = lambda eta_t / eta_max: the library's :func:`scaleinv.corrected_wd.sgdc` / :func:`~scaleinv.corrected_wd.adamc`
(SGDC, AdamC), called, not rebuilt here (issue 27).

Longer than 400 lines on purpose (as :mod:`toyproblems.claims_rotational`): the four claims
(S1..S4) share one cached simulation of both optimizers over the schedule grid
(:func:`simulate_schedules`), and read it through its private grid and predictions (``_Ks``,
``_eta_t``, ``_predictions``); moving the simulation out would make those helpers a cross-module
API with one caller.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Dict, List

import jax
import jax.numpy as jnp
import numpy as np

from scaleinv import registry, theory
from scaleinv.theory import defazio2025 as TS
from scaleinv.diagnostics import tree_norm
from scaleinv.report import Row, budget, close, verdict
from toyproblems import problems as P
from toyproblems.plotting import new_figure, save_figure
from toyproblems.ids import claim_id
from toyproblems.run import run

__all__ = ["SCHEDULE_CLAIMS", "simulate_schedules"]

SRC = "Defazio 2025 (arXiv 2506.02285)"
KINDS = ("linear", "cosine")
SGD_HP = dict(eta=0.1, dim=4)                   # SGD: the norm map is dimension-free
# AdamW: beta1 = 0.5 keeps eta lambda << 1 - beta1 (at beta1 = 0.9 and eta lambda = 0.01 the stationary
# norm is 8 % below the small-eta-lambda form eta C/(2 lambda); see the N group)
ADAM_HP = dict(eta=0.01, b1=0.5, b2=0.99)
ADIABATIC = {"sgd": 0.05, "adamw": 0.02}   # "slow schedule": adiabaticity eps_t below this
LAG = 0.1                     # lag onset: ratio more than 10 % below its quasi-static target
# Error budgets (issue 27), per mode, measured by tools/seed_spread.py at seeds 0-4 (docs/results/verify/
# seed_spread.json: verify --quick; seed_spread_full_SM.json: full mode): (approx, noise, tolerance) = (seed mean of
# the checked statistic: the form's systematic error, not derived for the mean field with Adam's v lag; 2 x its
# seed-to-seed sd; the tolerance, in [budget, 3 budget]). Before: 15 % / 0.08 for every AdamW onset / slope row;
# S2.7 / S2.8 (linear decay) have quick-mode budgets 0.170 / 0.133 above that (seed 3 failed both); the full-mode
# slopes (4 schedule lengths instead of 2) are 10x less noisy, so their tolerances shrink (0.08 -> 0.04 / 0.05).
BUDGET_BASIS = {"quick": "verify --quick at seeds 0-4 (tools/seed_spread.py): approx = seed mean of the statistic, "
                         "noise = 2 sd",
                "full": "verify (full mode) at seeds 0-4 (tools/seed_spread.py): approx = seed mean of the statistic, "
                        "noise = 2 sd"}
S2_BUDGETS = {("adamw", "linear"): {"onset": {"quick": (0.037, 0.029, 0.10), "full": (0.041, 0.036, 0.10)},
                                    "slope": {"quick": (0.025, 0.038, 0.10), "full": (0.006, 0.012, 0.03)},
                                    "blowup": {"quick": (0.005, 0.003, 0.02), "full": (0.009, 0.007, 0.03)}},
              ("adamw", "cosine"): {"onset": {"quick": (0.019, 0.034, 0.08), "full": (0.030, 0.031, 0.08)},
                                    "slope": {"quick": (0.021, 0.031, 0.08), "full": (0.005, 0.007, 0.03)},
                                    "blowup": {"quick": (0.006, 0.004, 0.02), "full": (0.007, 0.005, 0.03)}}}
# After the corrected AdamW forms (issue 27 item 1: target and mean field with momentum + finite beta2) the AdamW S2
# residuals shrank (seed means quick / full: onset 0.121 / 0.129 -> 0.037 / 0.041 (linear), 0.070 / 0.075 -> 0.019 /
# 0.030 (cosine); blow-up 0.015 -> 0.005-0.009), so the tolerances shrink with them: onset 0.18 -> 0.10 (linear),
# 0.15 -> 0.08 (cosine); slope quick 0.14 -> 0.10 (linear), full 0.04 -> 0.03 / 0.05 -> 0.03; blow-up 0.06 -> 0.02
# (quick) / 0.03 (full), budgeted for the first time.
# SGD rows of S2 (and S1.2) are DETERMINISTIC (constant sigma: ||g|| = sigma/||x|| exactly, the measured ratio is the
# exact norm recursion): they test the norm ODE (and the first-order formula) against the recursion, no noise; their
# budget is the derived residual of the form (approx, noise = 0). S2.1 / S2.4 judge the onset against the norm ODE
# (the exact form, 0.6 % / 0.5 % off), the first-order formula's bias (8.1 % / 4.5 %) is stated in the note.
SGD_S2_BUDGETS = {"linear": {"onset": (0.0065, 0.0, 0.015), "slope": {"quick": (0.0026, 0.0, 0.006), "full": (0.0018, 0.0, 0.005)},
                             "blowup": (0.00014, 0.0, 0.0003)},
                  "cosine": {"onset": (0.0047, 0.0, 0.012), "slope": {"quick": (0.0092, 0.0, 0.02), "full": (0.0046, 0.0, 0.012)},
                             "blowup": (0.00011, 0.0, 0.0003)}}
SGD_BASIS = ("deterministic toy (measured = the exact norm recursion, same at every seed): approx = the form's residual "
             "against the recursion (quick and full mode), noise = 0")
S1_2_BUDGET = (0.0025, 0.0, 0.006)     # the ODE vs the recursion: O(eta lambda)/4 = 0.25 % (exact fixed point sqrt(1 - eta lambda/2))


# S1.3 / S1.4 / S3.3 / S3.4 (AdamW / AdamC, issue 27 item "tolerances just above biases"): the targets are the corrected
# forms (TS.steady_grad_ratio_adamw_corrected, TS.adamw_norm_mean_field(beta1=...)), and each row checks the BIAS
# (signed mean over its steps of measured/prediction - 1, worst config) against a budgeted tolerance, besides the
# max excursion (random-walk fluctuation of ||x||^2, unchanged tolerances 8 % / 7 %). (approx, noise, tolerance) of
# the bias: S1.3 approx = seed mean of the bias (first-order lag at eps <= 2 %, mean 0.5-1 %, + Adam's v lag, not
# split), S1.4 approx = seed mean (the corrected mean field's own residual), S3.3 / S3.4 approx = seed mean (1.05 %,
# of which the derived drift of the corrected mean field under AdamC, eta_t lambda_t -> 0, explains <= 0.8 %);
# noise = 2 sd; the larger of quick and full mode at seeds 0-4 (numbers in the commit message).
BIAS_BUDGETS = {"S1.3": (0.022, 0.004, 0.035), "S1.4": (0.006, 0.002, 0.015),
                "S3.3": (0.0105, 0.006, 0.025), "S3.4": (0.0105, 0.006, 0.025)}
BIAS_BASIS = ("verify --quick and full mode at seeds 0-4: approx = {how}; noise = 2 sd of the bias over seeds (the larger "
              "mode); the max-excursion check keeps its own tolerance (extra.budget_max)")
# max excursion (the statistic of the rows before issue 27): approx = seed mean of the max over steps, noise = 2 sd
# (full mode, the larger)
MAX_BUDGETS = {"S1.3": (0.051, 0.008, 0.08), "S1.4": (0.041, 0.016, 0.07),
               "S3.3": (0.040, 0.010, 0.07), "S3.4": (0.041, 0.011, 0.07)}


def _bias_checks(rid: str, worst_bias, worst_max, name: str, how: str):
    """(checks, extra) of an S1 / S3 AdamW row: the budgeted bias check and the max-excursion check."""
    (_, _, bm), (mm, mp) = worst_bias, worst_max
    a, n, tol = BIAS_BUDGETS[rid]
    ma, mn, mtol = MAX_BUDGETS[rid]
    checks = [close(name + ": bias (mean over steps, worst config)", 1.0 + bm, 1.0, rtol=tol),
              close(name + " (worst step over configs)", mm, mp, rtol=mtol)]
    extra = {"budget": budget(a, n, tol, BIAS_BASIS.format(how=how)),
             "budget_max": budget(ma, mn, mtol, "seed mean of the max over steps + 2 sd (quick / full, the larger)"),
             "bias": round(float(bm), 5)}
    return checks, extra


def _bias(measured, predicted):
    """signed mean over steps of measured/predicted - 1."""
    return float(np.mean(np.asarray(measured) / np.asarray(predicted) - 1.0))


def _worst_bias(biases):
    """(|bias|, 0, bias) of the config with the largest |bias|."""
    b = max(biases, key=abs)
    return abs(b), 0.0, b


# S4.2: 8 % before, below its quick-mode budget 0.083 (seed 4: 7.98 %)
S4_SGDC_BUDGET = {"quick": (0.059, 0.024, 0.09), "full": (0.030, 0.014, 0.09)}


def _budget(table: dict, quick: bool) -> dict:
    """The row's ``extra["budget"]`` for this mode (scaleinv.report.budget)."""
    mode = "quick" if quick else "full"
    return budget(*table[mode], BUDGET_BASIS[mode])
_CACHE: Dict = {}


def _Ks(quick: bool, name: str = "sgd"):
    """Schedule lengths K = eta_max lambda T: quick mode stops at 30 (T = 3000 steps; the slopes of S2 are
    then between K = 10 and 30, against the formula's on the same K)."""
    if quick:
        return (10.0, 30.0)
    return (10.0, 30.0, 100.0, 300.0)


def _el(quick: bool) -> float:
    """eta_max * lambda of the constant-sigma runs (T = K / eta_max lambda steps)."""
    return 0.01


def _hp(name: str, quick: bool) -> dict:
    hp = dict(SGD_HP if name == "sgd" else ADAM_HP)
    hp["wd"] = _el(quick) / hp["eta"]
    if name == "adamw":
        hp["dim"] = 256
    return hp


def _eta_t(kind_id, eta_max, T, t):
    """Schedule in JAX with traced parameters: kind_id 0 = linear, 1 = cosine (decay to 0 at T)."""
    a = jnp.clip(t / T, 0.0, 1.0)
    return eta_max * jnp.where(kind_id == 0, 1.0 - a, 0.5 * (1.0 + jnp.cos(jnp.pi * a)))


def _configs(quick: bool, name: str):
    """Rows (kind_id, K, corrected): every K with the ordinary weight decay, the corrected one at the
    largest K (quick) / the smallest and largest K (full)."""
    Ks = _Ks(quick, name)
    corr = Ks[-1:] if quick else (Ks[0], Ks[-1])
    return np.array([(k, K, 0) for k in (0, 1) for K in Ks] + [(k, K, 1) for k in (0, 1) for K in corr], dtype=float)


# (toy optimizer, corrected?) -> optimizer registry name (scaleinv.registry builds every transform)
REGISTRY_NAME = {("sgd", False): "sgd-wd", ("sgd", True): "sgdc", ("adamw", False): "adamw", ("adamw", True): "adamc"}


def _registry_opt(name: str, lr, wd, eta_max, corrected, b1=None, b2=None):
    """SGD + WD / AdamW or, ``corrected``, the library's schedule-corrected SGDC / AdamC
    (:mod:`scaleinv.corrected_wd`), all from the optimizer registry (the S3 rows test the
    shipped transforms)."""
    hp = {"peak_lr": eta_max, "b1": b1, "b2": b2, "eps": 1e-12}
    return registry.make_from(REGISTRY_NAME[(name, bool(corrected))], lr, wd, hp)


def _make_opt(name: str, hp: dict, kind_id, T, corrected: bool):
    """The ordinary optimizer or, ``corrected``, the schedule-corrected one (:func:`_registry_opt`)."""
    eta_max, wd = hp["eta"], hp["wd"]
    lr = lambda t: _eta_t(kind_id, eta_max, T, t)  # noqa: E731
    return _registry_opt(name, lr, wd, eta_max, corrected, hp.get("b1"), hp.get("b2"))


def simulate_schedules(seed: int, quick: bool) -> dict:
    """Per-step ||g_t||/||x_t|| and ||x_t||^2 for SGD(C) and AdamW(C) over the config grid on the
    constant-sigma toy (one jitted toyproblems.run sweep per optimizer); cached per (seed, quick)."""
    key = (seed, quick)
    if key in _CACHE:
        return _CACHE[key]
    EL = _el(quick)
    res = {}
    with jax.enable_x64(True):
        for i, name in enumerate(("sgd", "adamw")):
            cfg = _configs(quick, name)
            Tmax = int(max(_Ks(quick, name)) / EL)
            hp = _hp(name, quick)
            prob = P.constant_sigma(hp["dim"], 1.0)
            # start at the registry's stationary norm: SGD + WD the exact fixed point, AdamW the corrected form
            # (momentum + finite beta2, N1 / N3), not eta d/(lambda (2 - eta lambda))
            reg = REGISTRY_NAME[(name, False)]
            sq0 = float(registry.predict(reg, hp["eta"], hp["wd"], sigma=1.0, dim=hp["dim"],
                                         **{k: hp[k] for k in registry.get(reg).prediction_hp})["sq_norm"])

            def one(c, k, corrected, hp=hp, name=name, prob=prob, sq0=sq0, EL=EL, Tmax=Tmax):
                T = c[1] / EL
                opt = _make_opt(name, hp, c[0], T, corrected)
                k0, k1 = jax.random.split(k)
                x0 = prob.init(jnp.sqrt(sq0), k0)

                def record(st):     # ||g_t|| / ||x_t||, ||x_t||^2
                    nx = tree_norm(st.x)
                    return tree_norm(st.grad) / nx, nx**2

                return run(prob.loss, opt, x0, Tmax, k1, record=record).extra

            keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), 100 + i), len(cfg))
            ratio, sq = np.zeros((len(cfg), Tmax)), np.zeros((len(cfg), Tmax))
            for corrected in (False, True):         # one program each: ordinary WD, the library's SGDC / AdamC
                sel = np.where((cfg[:, 2] > 0) == corrected)[0]
                f = jax.jit(jax.vmap(functools.partial(one, corrected=corrected)))
                ratio[sel], sq[sel] = (np.asarray(a) for a in f(jnp.asarray(cfg[sel]), keys[sel]))
            res[name] = dict(hp=hp, cfg=cfg, ratio=ratio, sq=sq, sq0=sq0, el=EL)
    _CACHE[key] = res
    return res


def _predictions(name: str, r: dict, i: int):
    """For config i: t, eta_t, lambda_t, quasi-static target (Defazio / derived), ODE ratio, eps_t
    (cached in the simulation record)."""
    cache = r.setdefault("_pred", {})
    if i not in cache:
        cache[i] = _predict(name, r, i)
    return cache[i]


def _predict(name: str, r: dict, i: int):
    hp, (kind_id, K, corr) = r["hp"], r["cfg"][i]
    kind, T = KINDS[int(kind_id)], int(round(K / r["el"]))
    t = np.arange(T)
    eta = TS.lr_schedule(kind, t, hp["eta"], T)
    wd = TS.corrected_weight_decay(eta, hp["wd"], hp["eta"]) if corr else np.full(T, hp["wd"])
    if name == "sgd":
        target = TS.steady_grad_ratio_sgd(eta, wd)
        y0 = r["sq0"] ** 2
    else:
        # corrected quasi-static target (finite eta lambda + momentum, N1; finite beta2, N3); the leading-order
        # 2 lambda sigma/(eta_t C) is kept for the notes (it is 1.8 % below at eta lambda = 0.01)
        target = TS.steady_grad_ratio_adamw_corrected(eta, wd, 1.0, hp["dim"], hp["b1"], hp["b2"])
        lead = TS.steady_grad_ratio_adamw(eta, wd, 1.0, hp["dim"])
        y0 = r["sq0"]
    y = TS.norm_ode_solution(name, eta, wd, y0, sigma=1.0, dim=hp["dim"])
    ode = TS.grad_ratio_from_norm_ode(name, y)
    # AdamW: mean field with the lag of Adam's v (the ODE assumes v in steady state) and the corrected source
    # (momentum + finite beta2, TS.adamw_source_factor); SGD: the ODE
    mf = ode if name == "sgd" else 1.0 / TS.adamw_norm_mean_field(eta, wd, y0, hp["dim"], 1.0, hp["b2"], beta1=hp["b1"])
    dwd = TS.corrected_weight_decay(TS.lr_schedule_slope(kind, t, hp["eta"], T), hp["wd"], hp["eta"]) if corr else 0.0
    eps = TS.adiabaticity(name, eta, TS.lr_schedule_slope(kind, t, hp["eta"], T), wd, dwd)
    return dict(kind=kind, K=K, corrected=bool(corr), T=T, t=t, eta=eta, wd=wd, target=target, ode=ode, mf=mf, eps=eps,
                lead=target if name == "sgd" else lead,
                ratio=r["ratio"][i, :T], sq=r["sq"][i, :T])


def _worst(measured, predicted):
    """(max |measured/predicted - 1|, predicted, measured) at the worst step."""
    e = np.abs(np.asarray(measured) / np.asarray(predicted) - 1)
    k = int(np.argmax(e))
    return float(e[k]), float(np.asarray(predicted)[k]), float(np.asarray(measured)[k])


def _pm(worst):
    """predicted / measured cells of a row from the worst (err, predicted, measured) over configs."""
    w = max(worst, key=lambda v: v[0])
    return round(w[1], 6), round(w[2], 6)


def _worst_close(name, worst, rtol):
    """Machine-readable check of a max-over-steps row: the worst step (all others are closer)."""
    w = max(worst, key=lambda v: v[0])
    return verdict([close(name + " (worst step over configs)", w[2], w[1], rtol=rtol)])


LABEL = {"sgd": "SGD+WD", "adamw": "AdamW"}
CLABEL = {"sgd": "SGDC", "adamw": "AdamC"}


# ============================================================== S1: quasi-static tracking + the norm ODE
@claim_id("S1")
def claim_schedule_tracking(seed: int, quick: bool, out_dir: Path) -> List[Row]:
    """Under a decaying schedule the ratio ||g||/||x|| follows its quasi-static target while the
    schedule is slow (eps_t <= 5 %): sqrt(2 lambda/eta_t) for SGD (Defazio), 2 lambda sigma/(eta_t C)
    for AdamW (derived); the linear norm ODE predicts it at EVERY step, lag included."""
    sim = simulate_schedules(seed, quick)
    rows = []
    fig, axes = new_figure(ncols=2)
    # tolerances: first-order lag at eps = 5 % is (1.05)^(-1/2) -> 2.4 % (SGD), at eps = 2 % (1.02)^(-1) -> 2 %
    # (AdamW), plus O(eta lambda) <= 1 % for the leading-order targets; AdamW adds the fluctuation of ||x||^2 of
    # its random walk (~4 % at C = 128, ~3 % at C = 256, the S3 rows measure it on a constant target).
    tol_qs = {"sgd": 0.035, "adamw": 0.08}
    tol_ode = {"sgd": S1_2_BUDGET[2], "adamw": 0.07}    # SGD: S1_2_BUDGET (deterministic, was 1 %); AdamW: max over 10^4 steps of a ~1.5 %-RMS fluctuation (see S3)
    for j, name in enumerate(("sgd", "adamw")):
        r = sim[name]
        qs_err, ode_err, cf_err, n_slow, qs_w, ode_w, qs_b, ode_b, lead_b = [], [], [], [], [], [], [], [], []
        for i in range(len(r["cfg"])):
            p = _predictions(name, r, i)
            if p["corrected"]:
                continue
            slow = p["eps"] <= ADIABATIC[name]
            if slow.sum() >= 0.1 * p["T"]:          # schedules never slow (AdamW, linear, K = 10) are left out
                qs_w.append(_worst(p["ratio"][slow], p["target"][slow]))
                qs_err.append(qs_w[-1][0])
                qs_b.append(_bias(p["ratio"][slow], p["target"][slow]))
                lead_b.append(_bias(p["ratio"][slow], p["lead"][slow]))
            ode_w.append(_worst(p["ratio"], p["mf"]))
            ode_b.append(_bias(p["ratio"], p["mf"]))
            ode_err.append(ode_w[-1][0])
            cf_err.append(np.max(np.abs(p["ratio"] / p["ode"] - 1)))
            n_slow.append(slow.mean())
            if p["K"] == 30.0:
                ax = axes[j]
                c = "C0" if p["kind"] == "linear" else "C1"
                ax.plot(p["t"] / p["T"], p["ratio"] / p["ratio"][0], color=c, lw=1.5, label=f"{p['kind']}: measured")
                ax.plot(p["t"] / p["T"], p["target"] / p["target"][0], color=c, ls=":", lw=1,
                        label="quasi-static " + ("sqrt(2 lambda/eta_t)" if name == "sgd" else "2 lambda sigma/(eta_t C)"))
                ax.plot(p["t"] / p["T"], p["mf"] / p["ratio"][0], color="k", ls="--", lw=0.8,
                        label="norm ODE" + (" + v lag" if name == "adamw" else "") if p["kind"] == "linear" else None)
        qs_err, ode_err = np.array(qs_err), np.array(ode_err)
        form = ("sqrt(2 lambda/eta_t) (Defazio)" if name == "sgd" else
                "sigma/||x||^2_eq(eta_t, lambda) (derived: 2 lambda sigma/(eta_t C) corrected for finite eta lambda + "
                "momentum (N1) and beta2 (N3), TS.steady_grad_ratio_adamw_corrected)")
        rid = f"S1.{len(rows) + 1}"
        if name == "sgd":
            qs_kw = dict(tolerance=f"max over steps and configs |measured/target - 1| <= {tol_qs[name]:.0%}",
                         status=_worst_close("ratio vs quasi-static target", qs_w, tol_qs[name]), extra={})
        else:
            ch, ex = _bias_checks(rid, _worst_bias(qs_b), max(qs_w, key=lambda v: v[0])[1:][::-1], "ratio vs corrected "
                                  "quasi-static target", "seed mean of the bias (first-order lag + Adam's v lag)")
            qs_kw = dict(tolerance=f"bias (mean over slow steps of measured/target - 1, worst config) within "
                                   f"{BIAS_BUDGETS[rid][2]:.1%}; max over steps and configs <= {tol_qs[name]:.0%}",
                         status=verdict(ch), extra=ex)
        rows.append(Row(
            rid, SRC,
            f"{LABEL[name]}, linear + cosine decay, K = eta_max lambda T in {list(_Ks(quick, name))}: ||g||/||x|| = {form} "
            f"wherever the schedule is slow (adiabaticity eps_t <= {ADIABATIC[name]:.0%})"
            + ("; fails if the target is off by > ~2 % (bias) or an excursion exceeds the max tolerance"
               if name == "adamw" else ""),
            *_pm(qs_w), qs_kw["tolerance"], qs_kw["status"],
            note=f"slow part of each run: {np.round(n_slow, 2).tolist()} of the steps; per config max dev "
                 f"{np.round(qs_err, 4).tolist()}; tolerance = first-order lag at eps = {ADIABATIC[name]:.0%} + O(eta lambda)"
                 + (f" + the random-walk fluctuation of ||x||^2 (S3); per config bias {np.round(qs_b, 4).tolist()} "
                    f"(against the leading-order 2 lambda sigma/(eta_t C): {np.round(lead_b, 4).tolist()})"
                    if name == "adamw" else ""),
            extra=qs_kw["extra"]))
        if name == "sgd":
            stmt = ("SGD+WD: the linear norm ODE y' = -4 lambda eta_t y + 2 sigma^2 eta_t^2 (y = ||x||^4, closed form "
                    "TS.norm_ode_solution) predicts ||g||/||x|| at every step, end-of-training lag included; deterministic "
                    "(constant-sigma toy: the measurement is the exact norm recursion), so this tests the ODE against the "
                    f"recursion; fails if they differ by > {S1_2_BUDGET[2]:.1%} at some step")
            note = "per config " + str(np.round(ode_err, 4).tolist())
        else:
            stmt = ("AdamW: the norm ODE y' = -2 lambda eta_t y + C eta_t^2 (y = ||x||^2) with Adam's v EMA in mean field "
                    "and the corrected source (momentum + beta2, TS.adamw_norm_mean_field(beta1=...)) predicts ||g||/||x|| "
                    "at every step, lag included; fails if the prediction is biased by > ~1.5 % or an excursion exceeds "
                    "the max tolerance")
            note = (f"per config {np.round(ode_err, 4).tolist()}, bias {np.round(ode_b, 4).tolist()}; the closed-form ODE alone (v in steady state) is off "
                    f"by up to {np.round(cf_err, 3).tolist()}: v (beta2 = {r['hp']['b2']}) lags the gradient scale when "
                    "||x|| changes within ~1/(1 - beta2) steps, which makes the norm larger and the ratio smaller")
        rid = f"S1.{len(rows) + 1}"
        if name == "sgd":
            ode_kw = dict(tolerance=f"max over steps and configs |measured/prediction - 1| <= {S1_2_BUDGET[2]:.1%}",
                          status=_worst_close("ratio vs norm ODE / mean field", ode_w, S1_2_BUDGET[2]),
                          extra={"budget": budget(*S1_2_BUDGET, SGD_BASIS)})
        else:
            ch, ex = _bias_checks(rid, _worst_bias(ode_b), max(ode_w, key=lambda v: v[0])[1:][::-1],
                                  "ratio vs corrected mean field", "seed mean of the bias (the mean field's residual)")
            ode_kw = dict(tolerance=f"bias (mean over steps of measured/prediction - 1, worst config) within "
                                    f"{BIAS_BUDGETS[rid][2]:.1%}; max over steps and configs <= {tol_ode[name]:.0%}",
                          status=verdict(ch), extra=ex)
        rows.append(Row(
            rid, SRC + "; norm ODE derived here", stmt,
            *_pm(ode_w), ode_kw["tolerance"], ode_kw["status"], note=note, extra=ode_kw["extra"]))
        axes[j].set(yscale="log", xlabel="t / T", ylabel="(||g||/||x||)_t / (||g||/||x||)_0",
                    title=f"S1: {LABEL[name]}, K = 30", ylim=(0.8, 100))
        axes[j].legend(fontsize=6)
    save_figure(fig, Path(out_dir) / "S1.png")
    return rows


# ============================================================== S2: lag onset vs K
def _onset(ratio, target, T):
    """Final fraction 1 - t/T of training from the first step where ratio < target / (1 + LAG)."""
    below = ratio < target / (1.0 + LAG)
    return 1.0 - np.argmax(below) / T if below.any() else 0.0


@claim_id("S2")
def claim_schedule_lag(seed: int, quick: bool, out_dir: Path) -> List[Row]:
    """The ratio lags behind its quasi-static target for the final fraction a of training where the
    schedule is no longer slow; a shrinks with the schedule length K = eta_max lambda T as
    K^(-1/2) (linear decay) and ~K^(-1/3) (cosine). Checked against the first-order adiabatic formula
    and the norm ODE; the end-of-training blow-up factor of the ratio against the norm ODE."""
    sim = simulate_schedules(seed, quick)
    rows = []
    fig, (ax1, ax2) = new_figure(ncols=2)
    for name, mk in (("sgd", "o"), ("adamw", "s")):
        r = sim[name]
        for kind in KINDS:
            Ks, meas, ode_on, first, blow, blow_ode, blow_qs = [], [], [], [], [], [], []
            for i in range(len(r["cfg"])):
                p = _predictions(name, r, i)
                if p["corrected"] or p["kind"] != kind:
                    continue
                Ks.append(p["K"])
                meas.append(_onset(p["ratio"], p["target"], p["T"]))
                ode_on.append(_onset(p["mf"], p["target"], p["T"]))
                first.append(TS.lag_onset_fraction(kind, p["K"], name, LAG))
                blow.append(p["ratio"].max() / p["ratio"][0])
                blow_ode.append(p["mf"].max() / p["mf"][0])
                blow_qs.append(p["target"][-1] / p["target"][0])
            Ks, meas, ode_on, first = map(np.asarray, (Ks, meas, ode_on, first))
            blow, blow_ode = np.asarray(blow), np.asarray(blow_ode)
            e_first = np.abs(meas / first - 1)
            e_ode = np.abs(meas / ode_on - 1)
            slope = float(np.polyfit(np.log(Ks), np.log(meas), 1)[0])
            slope_first = float(np.polyfit(np.log(Ks), np.log(first), 1)[0])
            slope_ode = float(np.polyfit(np.log(Ks), np.log(ode_on), 1)[0])
            mode = "quick" if quick else "full"
            if name == "sgd":     # deterministic: verdict against the norm ODE (exact form); first-order formula's bias in the note
                pred, _, spred, how = ode_on, e_ode, slope_first, "norm ODE onset (TS.norm_ode_solution)"
                ob = SGD_S2_BUDGETS[kind]
                tol_on, tol_s, tol_b = ob["onset"][2], ob["slope"][mode][2], ob["blowup"][2]
                b_on, b_s, b_b = (budget(*ob["onset"], SGD_BASIS), budget(*ob["slope"][mode], SGD_BASIS),
                                  budget(*ob["blowup"], SGD_BASIS))
                det = ("deterministic (constant-sigma toy: the measurement is the exact norm recursion, no noise), so this "
                       "tests the ODE against the recursion; ")
                other = (f"first-order formula (TS.lag_onset_fraction) {np.round(first, 4).tolist()}: systematically "
                         f"{e_first.max():.1%} off (its known bias: first order in eps at the onset eps = "
                         f"{(1 + LAG) ** 2 - 1:.0%}, not a noise)")
                fails_on = f"fails if the ODE's onset and the recursion's differ by > {tol_on:.1%}"
                slope_how = "first-order formula (TS.lag_onset_fraction)"
            else:                 # Adam's v lag is not in the first-order formula: verdict against the mean field
                pred, _, spred, how = ode_on, e_ode, slope_ode, "corrected mean field with Adam's v lag"
                bt = S2_BUDGETS[(name, kind)]
                tol_on, tol_s, tol_b = bt["onset"][mode][2], bt["slope"][mode][2], bt["blowup"][mode][2]
                b_on, b_s, b_b = _budget(bt["onset"], quick), _budget(bt["slope"], quick), _budget(bt["blowup"], quick)
                det = ""
                other = (f"first-order formula (no v lag) {np.round(first, 4).tolist()} (max rel. err "
                         f"{e_first.max():.2%}, slope {slope_first:.3f}): v lag adds to the lag")
                fails_on = f"fails if the onset is > {tol_on:.0%} off at some K"
                slope_how = how
            rows.append(Row(
                f"S2.{len(rows) + 1}", SRC + "; adiabatic lag derived here",
                f"{LABEL[name]}, {kind} decay: final fraction of training with ratio > {LAG:.0%} below its quasi-static "
                f"target, K = {Ks.tolist()}: {how}; {det}{fails_on}",
                [round(float(v), 4) for v in pred], [round(float(v), 4) for v in meas],
                f"max rel. err <= {tol_on:.1%}" + ("" if name == "sgd" else
                                                   " (judgment: the onset is a threshold crossing of a noisy ratio)"),
                verdict([close("lag onset fraction", meas.tolist(), pred.tolist(), rtol=tol_on)]),
                note=f"{other}; log-log slope in K measured {slope:.3f} (asymptotic {TS.lag_onset_exponent(kind):.3f})",
                extra={"K": Ks.tolist(), "measured": meas.tolist(), "first_order": first.tolist(),
                       "ode_or_mean_field": ode_on.tolist(), "budget": b_on}))
            rows.append(Row(
                f"S2.{len(rows) + 1}", SRC + "; derived here",
                f"{LABEL[name]}, {kind} decay: d ln(lag fraction)/d ln K over the same K ({slope_how}); {det}"
                f"fails if the slope is > {tol_s} off",
                round(spred, 4), round(slope, 4), f"abs. err <= {tol_s}",
                verdict([close("log-log slope", slope, spred, atol=tol_s)]),
                note=f"large-K asymptote of the first-order formula {TS.lag_onset_exponent(kind):.4f} "
                     "(eta ~ a^p near the end -> -1/(p+1))",
                extra={"budget": b_s}))
            rows.append(Row(
                f"S2.{len(rows) + 1}", SRC + "; norm ODE derived here",
                f"{LABEL[name]}, {kind} decay: end-of-training blow-up max_t ratio_t / ratio_0 (norm "
                + ("ODE)" if name == "sgd" else "ODE + v lag, corrected mean field)") + f"; {det}fails if the blow-up is "
                f"> {tol_b:.2%} off",
                [round(float(v), 3) for v in blow_ode], [round(float(v), 3) for v in blow],
                f"max rel. err <= {tol_b:.2%}", verdict([close("blow-up factor", blow.tolist(), blow_ode.tolist(), rtol=tol_b)]),
                note=f"the quasi-static target at the last step would be {np.round(blow_qs, 1).tolist()} x: "
                     "the lag caps the blow-up, and longer schedules (larger K) blow up more",
                extra={"budget": b_b}))
            c = {"sgd": "C0", "adamw": "C3"}[name]
            ls = "-" if kind == "linear" else "--"
            ax1.plot(Ks, meas, marker=mk, color=c, ls="none", label=f"{LABEL[name]} {kind}: measured")
            Kf = np.logspace(np.log10(Ks[0]), np.log10(Ks[-1]), 30)
            ax1.plot(Kf, TS.lag_onset_fraction(kind, Kf, name, LAG), color=c, ls=ls, lw=1,
                     label=f"{LABEL[name]} {kind}: first order")
            ax2.plot(Ks, blow, marker=mk, color=c, ls="none", label=f"{LABEL[name]} {kind}: measured")
            ax2.plot(Ks, blow_ode, color=c, ls=ls, lw=1, label=f"{LABEL[name]} {kind}: norm ODE")
    ax1.set(xscale="log", yscale="log", xlabel="K = eta_max lambda T",
            ylabel=f"final fraction of training lagging > {LAG:.0%}", title="S2: lag onset vs schedule length")
    ax2.set(xscale="log", yscale="log", xlabel="K = eta_max lambda T", ylabel="max_t ratio_t / ratio_0",
            title="S2: end-of-training gradient-norm blow-up")
    ax1.legend(fontsize=6)
    ax2.legend(fontsize=6)
    save_figure(fig, Path(out_dir) / "S2.png")
    return rows


# ============================================================== S3: corrected weight decay
@claim_id("S3")
def claim_corrected_wd(seed: int, quick: bool, out_dir: Path) -> List[Row]:
    """With lambda_t = lambda eta_t/eta_max (SGDC, AdamC) the ratio ||g||/||x|| and the norm stay
    at their initial (equilibrium) value for the whole run, for every schedule and K; the ordinary
    weight decay blows them up (S2)."""
    sim = simulate_schedules(seed, quick)
    rows = []
    fig, ax = new_figure()
    # SGDC: the exact discrete fixed point moves by sqrt((2 - eta_t lambda_t)/(2 - eta_max lambda)) <= 0.25 %;
    # AdamC: ||x||^2 of the random walk fluctuates (RMS ~1.5 % at C = 256, correlation time 1/(2 eta lambda)),
    # so its max over 10^4 steps reaches ~5 %: tolerance 7 % (the RMS is reported in the note)
    tol = {"sgd": 0.01, "adamw": 0.07}
    for name in ("sgd", "adamw"):
        r = sim[name]
        dev, dev_sq, base, rms, w_r, w_s, b_r, b_s, drift = [], [], [], [], [], [], [], [], []
        for i in range(len(r["cfg"])):
            p = _predictions(name, r, i)
            if p["corrected"]:
                w_r.append(_worst(p["ratio"], np.full(p["T"], p["target"][0])))
                w_s.append(_worst(p["sq"], np.full(p["T"], p["sq"][0])))
                dev.append(w_r[-1][0])
                dev_sq.append(w_s[-1][0])
                b_r.append(_bias(p["ratio"], np.full(p["T"], p["target"][0])))
                b_s.append(_bias(p["sq"], np.full(p["T"], p["sq"][0])))
                drift.append(float(np.max(np.abs(p["mf"] / p["mf"][0] - 1))))
                rms.append(np.sqrt(np.mean((p["ratio"] / p["target"][0] - 1) ** 2)))
                ax.plot(p["t"] / p["T"], p["ratio"] / p["target"][0], lw=1, color="C2" if name == "sgd" else "C4",
                        label=f"{CLABEL[name]}" if len(dev) == 1 else None)
            else:
                base.append(p["ratio"].max() / p["ratio"][0])
                if p["K"] == _Ks(quick, name)[-1]:
                    ax.plot(p["t"] / p["T"], p["ratio"] / p["target"][0], lw=1, ls="--",
                            color="C0" if name == "sgd" else "C3", label=f"{LABEL[name]} {p['kind']}, K={p['K']:g}")
        dev, dev_sq = np.array(dev), np.array(dev_sq)

        def _kw(rid, w, b, what, tol_text):
            if name == "sgd":
                return dict(tolerance=tol_text, status=_worst_close(what, w, tol[name]), extra={})
            ch, ex = _bias_checks(rid, _worst_bias(b), max(w, key=lambda v: v[0])[1:][::-1], what,
                                  "seed mean of the bias, of which the derived drift of the corrected mean field under "
                                  f"AdamC explains up to {max(drift):.4f}")
            return dict(tolerance=f"bias (mean over steps, worst config) within {BIAS_BUDGETS[rid][2]:.1%}; {tol_text}",
                        status=verdict(ch), extra=ex)

        rid = f"S3.{len(rows) + 1}"
        kw = _kw(rid, w_r, b_r, "ratio vs its eta_max value", f"max_t |ratio_t/target - 1| <= {tol[name]:.0%}")
        rows.append(Row(
            rid, SRC,
            f"{CLABEL[name]} (lambda_t = lambda eta_t/eta_max), linear + cosine, K in {list(_Ks(quick, name))}: "
            f"||g||/||x|| stays at "
            + ("sqrt(2 lambda/eta_max) all run" if name == "sgd" else
               "sigma/||x||^2_eq(eta_max, lambda) all run (corrected form: finite eta lambda + momentum + beta2, "
               "TS.steady_grad_ratio_adamw_corrected); fails if the ratio drifts or is biased by > ~2.5 %"),
            *_pm(w_r), kw["tolerance"], kw["status"],
            note=f"per config {np.round(dev, 4).tolist()} (RMS {np.round(rms, 4).tolist()})"
                 + (f", bias {np.round(b_r, 4).tolist()}" if name == "adamw" else "")
                 + f"; the ordinary weight decay reaches {np.round(base, 2).tolist()} x its initial ratio on the same runs",
            extra=kw["extra"]))
        rid = f"S3.{len(rows) + 1}"
        kw = _kw(rid, w_s, b_s, "||x||^2 vs its initial value", f"max_t | ||x_t||^2/||x_0||^2 - 1 | <= {tol[name]:.0%}")
        rows.append(Row(
            rid, SRC,
            f"{CLABEL[name]}: the weight norm ||x||^2 stays constant (constant sigma)"
            + ("; start at the corrected equilibrium norm (TS.steady_sq_norm_adamw_corrected); fails if it drifts by "
               "> ~2.5 % on average" if name == "adamw" else ""),
            *_pm(w_s), kw["tolerance"], kw["status"],
            note=(f"bias per config {np.round(b_s, 4).tolist()}" if name == "adamw" else ""), extra=kw["extra"]))
    ax.axhline(1.0, color="k", lw=0.8, label="equilibrium of eta_max (theory)")
    ax.set(yscale="log", xlabel="t / T", ylabel="||g||/||x|| / steady value at eta_max",
           title="S3: corrected weight decay keeps the ratio constant")
    ax.legend(fontsize=7)
    save_figure(fig, Path(out_dir) / "S3.png")
    return rows


# ============================================================== S4: a real loss (noisy normalized linreg)
@claim_id("S4")
def claim_schedule_real_loss(seed: int, quick: bool, out_dir: Path) -> List[Row]:
    """Noisy normalized linear regression (batch 1, label noise: the gradient noise has a floor and
    its size sigma_t changes as the loss trains), cosine decay, SGD vs SGDC: the ratio
    sqrt(E||g||^2 / E||x||^2) (window means over seeds) follows sqrt(lambda (2 - eta_t lambda)/eta_t)
    where the schedule is slow (SGD) and stays at its eta_max value (SGDC). This needs only
    <x, g> = 0 and a (quasi-)stationary E||x||^2, not a constant sigma.

    Normalized MF is NOT used here: its target is exactly representable, so the minibatch noise
    vanishes at the optimum and there is no noise-driven equilibrium (it is the GD + WD regime)."""
    dim, n, noise, batch = 16, 64, 0.5, 1
    eta_max, wd = 0.5, 0.02
    T = 4000 if quick else 20000
    win = 200 if quick else 500
    seeds = 4
    prob = P.normalized_linreg(dim=dim, n=n, noise=noise, batch=batch, data_seed=seed)

    def one(key, corr: bool):
        lr = lambda t: _eta_t(1, eta_max, T, t)  # noqa: E731
        # SGDC: the library's transform (scaleinv.corrected_wd.sgdc)
        opt = _registry_opt("sgd", lr, wd, eta_max, corr)
        x0 = prob.init(float(theory.equilibrium_sq_norm(eta_max, wd, 0.5)) ** 0.5, jax.random.fold_in(key, 1))

        return run(prob.loss, opt, x0, T, key, record=lambda st: jnp.stack([jnp.sum(st.grad**2), jnp.sum(st.x**2)])).extra

    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.PRNGKey(seed), 2 * seeds)       # SGD+WD: the first half, SGDC: the rest
        out = np.concatenate([np.asarray(jax.jit(jax.vmap(functools.partial(one, corr=c)))(keys[j * seeds:(j + 1) * seeds]))
                              for j, c in enumerate((False, True))])
    nw = T // win
    w = out[:, : nw * win].reshape(2, seeds, nw, win, 2).mean((1, 3))      # (variant, window, quantity)
    ratio = np.sqrt(w[..., 0] / w[..., 1])
    tc = (np.arange(nw) + 0.5) * win
    eta_c = TS.lr_schedule("cosine", tc, eta_max, T)
    target = np.asarray(theory.equilibrium_grad_ratio(eta_c, wd))
    eps = TS.adiabaticity("sgd", eta_c, TS.lr_schedule_slope("cosine", tc, eta_max, T), wd)
    burn = tc > 2.0 / (eta_max * wd)                       # past the initial transient
    slow = burn & (eps <= ADIABATIC["sgd"])
    err = np.abs(ratio[0][slow] / target[slow] - 1)
    k = int(np.argmax(err))
    target_c = float(theory.equilibrium_grad_ratio(eta_max, wd))
    err_c = np.abs(ratio[1][burn] / target_c - 1)
    tol = 0.08
    tol_c = S4_SGDC_BUDGET["quick" if quick else "full"][2]
    rows = [
        Row("S4.1", SRC, f"noisy normalized linreg (d={dim}, batch {batch}, label noise {noise}), SGD+WD, cosine decay "
                         f"(T={T}, K={eta_max * wd * T:g}): sqrt(E||g||^2/E||x||^2) follows sqrt(lambda(2-eta_t lambda)/eta_t) "
                         "while eps_t <= 5 %",
            round(float(target[slow][k]), 5), round(float(ratio[0][slow][k]), 5),
            f"max |measured/target - 1| over {win}-step windows x {seeds} seeds <= {tol:.0%}",
            verdict([close("window ratio vs target", ratio[0][slow].tolist(), target[slow].tolist(), rtol=tol)]),
            note=f"{int(slow.sum())} of {nw} windows slow and past 2/(eta lambda); the target grows "
                 f"{target[slow][-1] / target[slow][0]:.2f} x over them; last window: measured / target "
                 f"{ratio[0][-1] / target[-1]:.3f} (lag)"),
        Row("S4.2", SRC, "noisy normalized linreg, SGDC (lambda_t = lambda eta_t/eta_max), same schedule: the ratio stays at "
                         "sqrt(lambda(2-eta_max lambda)/eta_max) for the whole run (after 2/(eta lambda))",
            round(target_c, 5), [round(float(v), 5) for v in (ratio[1][burn].min(), ratio[1][burn].max())],
            f"every window: |ratio/target - 1| <= {tol_c:.0%}",
            verdict([close("window ratio vs eta_max target", ratio[1][burn].tolist(), target_c, rtol=tol_c)]),
            note=f"max dev {err_c.max():.2%}; SGD+WD on the same schedule ends at {ratio[0][-1] / target_c:.2f} x",
            extra={"budget": _budget(S4_SGDC_BUDGET, quick)}),
    ]
    fig, ax = new_figure()
    ax.plot(tc / T, ratio[0], "o-", color="C0", ms=3, lw=1, label="SGD+WD (measured)")
    ax.plot(tc / T, ratio[1], "s-", color="C2", ms=3, lw=1, label="SGDC (measured)")
    ax.plot(tc / T, target, "k:", lw=1, label="sqrt(lambda(2-eta_t lambda)/eta_t)")
    ax.axhline(target_c, color="gray", lw=0.8, label="SGDC target")
    ax.set(yscale="log", xlabel="t / T", ylabel="sqrt(mean ||g||^2 / mean ||x||^2)",
           title="S4: noisy normalized linreg, cosine decay")
    ax.legend(fontsize=7)
    save_figure(fig, Path(out_dir) / "S4.png")
    return rows


SCHEDULE_CLAIMS = [claim_schedule_tracking, claim_schedule_lag, claim_corrected_wd, claim_schedule_real_loss]
