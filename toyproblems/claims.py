"""One function per claim of the talk: experiment call + verdict + figure.

Every claim function has the signature ``claim_x(seed, quick, out_dir) -> list[Row]``, runs in
float64 (``jax.enable_x64`` inside), saves ONE figure ``out_dir/<id>.png`` and returns report
rows (:class:`scaleinv.report.Row`) with a stated tolerance and status pass / fail / erratum.
Predictions come from :mod:`scaleinv.theory`, the sweeps from :mod:`toyproblems.experiments`
(shared with the notebooks) and :mod:`toyproblems.run`; nothing here is tuned to the measurement.

Longer than 400 lines on purpose: the eight claims of the talk (C1..C8) read as one document in
slide order, each ~50 lines of rows with their tolerances and a figure; a new claim of another
paper goes into its own ``claims_<paper>.py``.
"""
from __future__ import annotations

from pathlib import Path
from typing import List

import jax
import jax.numpy as jnp
import numpy as np
import optax

from scaleinv import theory
from scaleinv.homogeneity import estimate_degree, euler_residual
from scaleinv.optim import exponential_lr, sgd_wd, sgd_wd_rgc
from scaleinv.report import TALK, Row, close, verdict, within
from toyproblems import problems as P
from toyproblems.experiments import (best_lr_curve, ex1_critical_lr, first_hit, loglog_slope, sgd_wd_iterates,
                                     time_to_equilibrium)
from toyproblems.plotting import new_figure, save_figure
from toyproblems.run import run, sweep
from toyproblems.ids import claim_id

__all__ = ["CLAIMS"]


def _src(slide: str) -> str:
    return f"{TALK}, {slide}"


# ============================================================== claim 1: homogeneity degrees
@claim_id("C1")
def claim_homogeneity(seed: int, quick: bool, out_dir: Path) -> List[Row]:
    """Talk, "k-homogeneity" + "Ingredient 1": the estimator recovers the known degrees."""
    rows, key = [], jax.random.PRNGKey(seed)
    src = _src('slides "Our Hypothesis: k-homogeneity" / "Ingredient 1"')
    with jax.enable_x64(True):
        ks = jax.random.split(key, 8)
        cases = []
        for i, k in enumerate((2, 3, 4)):
            prob = P.ex1(k)
            x = 1.0 + 0.5 * jax.random.uniform(ks[i], (2 * k,))
            cases.append((f"Ex1 model X = x_1...x_{2*k} (k={k})", prob.meta["model"], x, None, 2 * k))
        mf = P.mf(d=3, r=2)
        AB = {"A": jax.random.normal(ks[3], (3, 2)), "B": jax.random.normal(ks[4], (3, 2))}
        cases.append(("MF model A B^T, (A,B) jointly", mf.meta["model"], AB, None, 2))
        cases.append(("MF model A B^T, in A only", mf.meta["model"], AB, {"A": True, "B": False}, 1))
        nmf = P.normalized_mf(d=3, r=2)
        for g, m in nmf.groups.items():
            cases.append((f"normalized MF loss, in {g} only", nmf.loss, AB, m, 0))
        cases.append(("normalized MF loss, (A,B) jointly", nmf.loss, AB, None, 0))
        results = []
        for name, fn, x, mask, k_true in cases:
            r = estimate_degree(lambda p: fn(p), x, mask=mask, scales=np.logspace(-3, 3, 13), rtol=1e-9)
            eul = euler_residual(fn, x, k_true, mask) if jnp.ndim(fn(x)) == 0 else float("nan")
            results.append((name, k_true, r))
            rows.append(Row(f"C1.{len(rows)+1}", src, f"degree of {name}", k_true, round(r.degree, 9) + 0.0,
                            "|k_fit - k| < 1e-6 and rel. residual < 1e-9",
                            verdict([close("degree", r.degree, k_true, atol=1e-6),
                                     close("rounded degree", r.rounded, k_true),
                                     within("relative residual", r.residual, hi=1e-9)]),
                            note=f"residual {r.residual:.2e}" + (f", Euler residual {eul:.2e}" if eul == eul else "")))
        # A non-homogeneous function must be reported as such, not given a degree.
        ex1_loss = P.ex1(2).loss
        x = 1.0 + 0.5 * jax.random.uniform(ks[5], (4,))
        r = estimate_degree(lambda p: ex1_loss(p), x, scales=np.logspace(-3, 3, 13), rtol=1e-9)
        rows.append(Row(f"C1.{len(rows)+1}", src, "Ex1 LOSS L~(X) (logistic) is not homogeneous",
                        "not homogeneous", f"residual {r.residual:.3g}", "reported residual > 1e-2",
                        verdict([within("residual", r.residual, lo=1e-2),
                                 close("reported homogeneous", float(r.homogeneous), 0.0)])))
        results.append(("Ex1 loss L~ (not homogeneous)", None, r))

    fig, ax = new_figure()
    for name, k_true, r in results:
        c = np.asarray(r.scales)
        ax.plot(c, c ** r.degree, marker="o", ms=3, label=f"{name}: fit k={r.degree:.3f}")
    ax.set_xscale("log"); ax.set_yscale("log")
    ax.set_xlabel("scale c"); ax.set_ylabel("c^k_fit  (= ||f(c x)|| / ||f(x)|| if homogeneous)")
    ax.set_title("C1: estimated homogeneity degrees")
    ax.legend(fontsize=6)
    save_figure(fig, out_dir / "C1.png")
    return rows


# ============================================================== claim 2: Ex 1 divergence LR
def _ex1_at_threshold_row(src: str) -> Row:
    """GD at LR = eta* exactly (float64), X0 = 10 X*, k = 2, 3, 4: the first step lands on -x(0)
    (2-cycle), and a deviation delta from the cycle grows by the predicted factor
    m = |f'(x0)| = 4k(1 + X0 L~''(X0)/L~'(X0)) - 3 per step (f(x) = x - eta dL/dx_i at equal
    coordinates), i.e. the boundary behaviour is a repelling 2-cycle: numerically unstable."""
    xs = P.ex1_x_star()
    X0 = 10.0 * xs
    d2 = jax.grad(lambda X: P.ex1_tilde_grad(X))
    first, m_pred, m_meas, fates = [], [], [], []
    for k in (2, 3, 4):
        prob = P.ex1(k)
        lp = float(P.ex1_tilde_grad(jnp.asarray(X0)))
        eta = float(theory.ex1_divergence_lr(np.float64(X0), lp, k))
        m_pred.append(4 * k * (1 + X0 * float(d2(jnp.asarray(X0))) / lp) - 3)
        g = jax.jit(jax.grad(prob.loss))
        x = prob.init(X0 ** (1.0 / (2 * k)))
        x1 = x - eta * g(x)
        first.append(float(np.max(np.abs(np.asarray(x1 + x) / np.asarray(x)))))
        steps, delta = 40, 1e-10
        for sign in (+1.0, -1.0):
            xt = x * (1.0 + sign * delta)
            dev = []
            for _ in range(steps):
                xt = xt - eta * g(xt)
                dev.append(abs(float(jnp.abs(xt[0])) / float(x[0]) - 1.0))
                if not np.isfinite(dev[-1]) or dev[-1] > 1e3:
                    break
            dev = np.asarray(dev)
            use = (dev > 1e-9) & (dev < 1e-4)
            t = np.arange(1, len(dev) + 1)[use]
            m_meas.append(float(np.exp(np.polyfit(t, np.log(dev[use]), 1)[0])))
            fates.append("diverges" if (not np.isfinite(dev[-1]) or dev[-1] > 1e3 or float(jnp.abs(xt[0])) > float(x[0]))
                         else "falls inside, bounded")
        # unperturbed: where does rounding alone take the orbit at the exact threshold?
        xt, left = x, None
        for t in range(200):
            xt = xt - eta * g(xt)
            if left is None and abs(float(jnp.abs(xt[0])) / float(x[0]) - 1.0) > 1e-2:
                left = t + 1
            if not np.isfinite(float(xt[0])) or abs(float(xt[0])) > 1e3 * float(x[0]):
                break
        Xf = float(jnp.prod(xt))
        fates.append(f"k={k} unperturbed: leaves the cycle at step {left}, "
                     + ("diverges" if not np.isfinite(Xf) or abs(Xf) > 1e3 * X0 else f"X(200) = {Xf:.4g} (X* = {xs:.4g})"))
    m_pred_2 = [m for m in m_pred for _ in (0, 1)]
    return Row("C2.at_threshold", src,
               "GD at LR = formula exactly (float64, X0 = 10 X*, k = 2,3,4): first step lands on -x(0) (2-cycle); "
               "per-step growth of a 1e-10 deviation from the cycle, [k2+, k2-, k3+, k3-, k4+, k4-]",
               [round(m, 4) for m in m_pred_2], [round(m, 4) for m in m_meas],
               "|x(1)/x(0) + 1| < 1e-9; growth factor rel. error < 0.5%",
               verdict([within("|x(1)/x(0) + 1|", first, hi=1e-9), close("growth factor", m_meas, m_pred_2, rtol=0.005)]),
               note="at the threshold the loss stays at L~(X0) (no convergence) but |x| does not grow: 'fails to "
                    "converge', not 'diverges'. The 2-cycle is repelling (growth factor m > 1 per step), so it is "
                    "numerically unstable: rounding (~1e-16) leaves it after ~ln(1e16)/ln(m) steps; with +delta the "
                    "orbit diverges, with -delta it falls inside the cycle and stays bounded (k=2: " + ", ".join(fates[:2]) + "); "
                    + "; ".join(f for f in fates if "unperturbed" in f))


@claim_id("C2")
def claim_ex1_divergence(seed: int, quick: bool, out_dir: Path) -> List[Row]:
    """Talk, Ex 1: with eta* = 2 X0^(1/k-1)/|L~'(X0)| (X0 >= X*), GD on L~(x_1...x_2k) from equal
    x_i(0) fails to converge for LR >= eta* and diverges for LR > eta* (strict; the talk's
    "diverges if LR >=" is wrong at the boundary, proofs row P2.keeps_diverging). At LR = eta*
    exactly the iterates 2-cycle, x(t) = (-1)^t x(0), and the loss stays at L~(X0); the cycle is
    unstable (a deviation grows by m = 4k(1 + X L~''/L~') - 3 >= 5 per step), so in floating
    point rounding makes the orbit leave it within a few dozen steps, towards divergence or
    back inside (bounded) depending on the sign of the first error (row C2.at_threshold)."""
    src = _src('slide "Our Hypothesis: k-homogeneity in Architecture", Ex 1')
    xs = P.ex1_x_star()
    X0s = xs * np.logspace(np.log10(1.5), 3 if quick else 4, 6 if quick else 10)
    steps = 400 if quick else 1000
    rows, curves = [], {}
    with jax.enable_x64(True):
        above_ok, above_n = 0, 0
        for k in (2, 3, 4):
            pred, crit = ex1_critical_lr(k, X0s, rounds=3, pts=24 if quick else 32, steps=steps)
            curves[k] = (pred, crit)
            # (a) divergence for every LR > formula: test LR = formula * (1 + {1e-3, 0.1, 1, 3})
            prob = P.ex1(k)
            mult = np.array([1.001, 1.1, 2.0, 4.0])
            lr = (pred[:, None] * mult[None, :]).reshape(-1)
            x0 = jnp.repeat(jnp.asarray(X0s) ** (1.0 / (2 * k)), len(mult))[:, None] * jnp.ones((1, 2 * k))
            tr = jax.jit(jax.vmap(lambda p, l: run(prob.loss, optax.sgd(l), p, steps,
                                                   jax.random.PRNGKey(0))))(x0, jnp.asarray(lr))
            X = np.asarray(jnp.prod(tr.final, axis=-1))
            div = ~(np.isfinite(X) & (np.abs(X) < 10 * np.repeat(X0s, len(mult))))
            above_ok += int(div.sum()); above_n += div.size
            # (b) tightness for X0 >= 10 X*; (c) slope d ln eta_crit / d ln X0 -> 1/k - 1
            big = X0s >= 10 * xs
            ratio = crit[big] / pred[big]
            rows.append(Row(f"C2.k{k}.tight", src,
                            f"k={k}: smallest diverging LR / formula, X0 in [10X*, {X0s[-1]:.0f}]",
                            1.0, [round(float(v), 4) for v in ratio], "|ratio - 1| < 1% (grid bisection)",
                            verdict([close("critical LR / formula", ratio.tolist(), 1.0, atol=0.01)])))
            slope = loglog_slope(X0s[-4:], crit[-4:])
            rows.append(Row(f"C2.k{k}.slope", src,
                            f"k={k}: d ln(eta_crit)/d ln X0 at large X0 (unbounded smoothness)",
                            round(1.0 / k - 1.0, 4), round(slope, 4), "abs. error < 0.02",
                            verdict([close("slope", slope, 1.0 / k - 1.0, atol=0.02)]),
                            note="L~'(X) -> 1/4 so eta_div ~ 8 X0^(1/k-1): larger init => smaller stable LR"))
            near = crit[~big] / pred[~big]
            if near.size:
                rows[-1].note += f"; near X* the critical LR is below the formula (ratios {np.round(near, 3).tolist()}): the formula is sufficient, not necessary"
        rows.insert(0, Row("C2.diverge", src, "GD diverges for every LR > formula (strict: at LR = formula it 2-cycles, "
                           "see C2.at_threshold; k=2,3,4; LR = formula x {1.001, 1.1, 2, 4}; all X0)",
                           1.0, above_ok / above_n, "fraction diverged == 1",
                           verdict([within("fraction diverged", above_ok / above_n, lo=1.0, hi=1.0)])))
        rows.insert(1, _ex1_at_threshold_row(src))
        # (d) the 1-D problem itself: eta = 4 < 2/beta = 8 converges from every init
        X0_1d = np.concatenate([-np.logspace(-3, 3, 7), np.logspace(-3, 3, 7)])
        tr = jax.jit(jax.vmap(lambda X: run(lambda v, k=None: P.ex1_tilde_loss(v[0]), optax.sgd(4.0),
                                            jnp.array([X]), 3000, jax.random.PRNGKey(0))))(jnp.asarray(X0_1d))
        conv = np.abs(np.asarray(tr.final[:, 0]) - xs) < 1e-6
        rows.append(Row("C2.1d", src, "GD on L~ itself (bounded smoothness 1/4), LR 4 < 2/beta: converges for all init in +-[1e-3, 1e3]",
                        1.0, float(conv.mean()), "fraction converged == 1 (|X-X*|<1e-6 after 3000 steps)",
                        verdict([within("fraction converged", float(conv.mean()), lo=1.0, hi=1.0)])))

    fig, ax = new_figure()
    for k, (pred, crit) in curves.items():
        line, = ax.plot(X0s, pred, "-", label=f"k={k} formula 2X0^(1/k-1)/|L~'(X0)|")
        ax.plot(X0s, crit, "o", color=line.get_color(), label=f"k={k} measured critical LR")
    ax.set_xscale("log"); ax.set_yscale("log")
    ax.set_xlabel("X(0) = x_1(0)...x_2k(0)"); ax.set_ylabel("learning rate")
    ax.axvline(xs, color="gray", ls=":", label="X* = ln 3")
    ax.set_title("C2: GD divergence threshold on Ex 1 vs init")
    ax.legend(fontsize=7)
    save_figure(fig, out_dir / "C2.png")
    return rows


# ============================================================== claim 3: Ex 2 GD vs Adam
def _best(opt_fn, prob, alpha, lrs, steps, eps):
    """(steps to eps of the fastest LR, final loss, curve and LR of the best final loss)."""
    r = best_lr_curve(opt_fn, prob, alpha, lrs, steps, eps)
    return r["steps"], r["final"], r["curve"], r["lr"]


@claim_id("C3")
def claim_unbalanced_mf(seed: int, quick: bool, out_dir: Path) -> List[Row]:
    """Talk, Ex 2 (alpha = 100): best-tuned GD stalls near the B-only optimum, Adam solves it."""
    src = _src('slides "Our Hypothesis", Ex 2 (GD vs ADAM, alpha = 100)')
    prob = P.mf()
    lrs = np.logspace(-7, 0, 15 if quick else 29)
    T = 5000 if quick else 20000
    eps = 1e-3
    rows = []
    with jax.enable_x64(True):
        gd_hit, gd_final, gd_curve, gd_lr = _best(optax.sgd, prob, 100.0, lrs, T, eps)
        ad_hit, ad_final, ad_curve, ad_lr = _best(optax.adam, prob, 100.0, lrs, T, eps)
        plateau = prob.meta["b_only_optimum"]
        rows.append(Row("C3.gd", src, f"alpha=100: best-tuned GD ({len(lrs)} LRs in [1e-7,1]) loss after {T} steps "
                        "stays near the B-only optimum", plateau, gd_final, ">= 0.5 x 0.25 (far from optimum 0)",
                        verdict([within("best GD final loss", gd_final, lo=0.5 * plateau)]), note=f"best LR {gd_lr:.2g}"))
        rows.append(Row("C3.adam", src, f"alpha=100: Adam (best of the same LR grid) solves it within {T} steps",
                        f"loss < {eps}", ad_final, f"final loss < {eps}", verdict([within("Adam final loss", ad_final, lo=0.0, hi=eps)]),
                        note=f"best LR {ad_lr:.2g}, loss < {eps} at step {ad_hit:.0f}"))
        alphas = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
        T2 = 20000 if quick else 100000
        gd_steps = np.array([_best(optax.sgd, prob, a, lrs, T2, eps)[0] for a in alphas])
        ad_steps = np.array([_best(optax.adam, prob, a, lrs, T2, eps)[0] for a in alphas])
        fin = np.isfinite(gd_steps)
        e_gd = loglog_slope(alphas[fin], gd_steps[fin]) if fin.sum() >= 2 else float("inf")
        e_ad = loglog_slope(alphas, ad_steps)
        rows.append(Row("C3.scaling", src, "steps-to-1e-3 vs alpha (1..16, best LR per alpha): fitted exponent GD vs Adam",
                        "GD polynomial (>= 1.5); Adam <= 1.1 (moves each coordinate ~LR per step)",
                        [round(e_gd, 3), round(e_ad, 3)], "GD exponent >= 1.5 and Adam exponent <= 1.1",
                        verdict([within("GD exponent", e_gd, lo=1.5), within("Adam exponent", e_ad, hi=1.1)]),
                        note=f"GD steps {gd_steps.tolist()}, Adam steps {ad_steps.tolist()}"))

    fig, (ax1, ax2) = new_figure(ncols=2)
    ax1.plot(np.maximum(gd_curve, 1e-32), label=f"GD (best LR {gd_lr:.1g})")
    ax1.plot(np.maximum(ad_curve, 1e-32), label=f"Adam (best LR {ad_lr:.1g})")
    ax1.axhline(plateau, color="gray", ls=":", label="B-only optimum 0.25")
    ax1.set_yscale("log"); ax1.set_xlabel("step"); ax1.set_ylabel("loss 1/2||AB^T - Y||^2")
    ax1.set_title("Ex 2, alpha = 100"); ax1.legend(fontsize=7)
    ax2.plot(alphas, gd_steps, "o-", label=f"GD (exponent {e_gd:.2f})")
    ax2.plot(alphas, ad_steps, "s-", label=f"Adam (exponent {e_ad:.2f})")
    ax2.set_xscale("log"); ax2.set_yscale("log"); ax2.set_xlabel("alpha"); ax2.set_ylabel("steps to loss < 1e-3")
    ax2.legend(fontsize=7)
    save_figure(fig, out_dir / "C3.png")
    return rows


# ============================================================== claim 4: normalized MF + WD
@claim_id("C4")
def claim_normalized_mf(seed: int, quick: bool, out_dir: Path) -> List[Row]:
    """Talk, "Ingredient 1" (normalized MF, alpha = 100): GD+WD / SGD+WD solve it; T0 bound."""
    src = _src('slides "Ingredient 1" (normalized MF) and "Convergence Results for GD + WD"')
    prob = P.normalized_mf()
    full = prob.meta["full_loss"]
    eta, wd, eps = 0.1, 0.1, 1e-3
    T = 3000
    alphas = np.logspace(0, 4, 5 if quick else 9)
    rows = []
    with jax.enable_x64(True):
        p0 = jax.vmap(prob.init)(jnp.asarray(alphas))
        tr = sweep(lambda: sgd_wd(eta, wd), prob.loss, p0, T, jax.random.PRNGKey(seed), {}, eval_fn=full)
        steps = first_hit(np.asarray(tr.loss) < eps)
        # T0 (talk form) for the slowest group: ||A0||^2 = alpha^2, ||B0||^2 = 1/alpha^2
        t0 = np.maximum(theory.t0_bound(eta, wd, alphas**2), theory.t0_bound(eta, wd, alphas**-2.0))
        ratio = steps / t0
        i100 = int(np.argmin(np.abs(alphas - 100)))
        rows.append(Row("C4.gdwd", src, f"alpha=100: GD+WD (eta={eta}, lambda={wd}) reaches loss < {eps}",
                        f"within T0 = {t0[i100]:.0f}", float(steps[i100]), "steps <= 1.5 T0 (T0 stated up to a constant)",
                        verdict([within("steps / T0", float(steps[i100] / t0[i100]), lo=0.0, hi=1.5)])))
        rows.append(Row("C4.t0", src, "steps-to-1e-3 / T0 over alpha in [1, 1e4] (T0=(1/2 eta lambda)|ln(||x0||^2/eta)|)",
                        "<= 1.5", [round(float(r), 3) for r in ratio], "max ratio <= 1.5 (all solved)",
                        verdict([within("steps / T0", ratio.tolist(), lo=0.0, hi=1.5)])))
        # two-sided: for alpha >= 10 the slow group A starts far above equilibrium and its
        # effective LR eta/||A||^2 is negligible until WD has shrunk it, so the exact norm
        # recursion ||A_{t+1}||^2 = (1 - eta lambda)^2 ||A_t||^2 (+ O(eta^2 ||g||^2), negligible)
        # gives the step increments between successive alphas EXACTLY:
        # d steps = ln(alpha_i^2/alpha_j^2) / (-2 ln(1 - eta lambda)); and T0's increments are
        # ln(alpha_i^2/alpha_j^2)/(2 eta lambda), so d steps / d T0 = eta lambda / (-ln(1 - eta lambda)).
        big = alphas >= 10
        d_meas = np.diff(steps[big])
        d_pred = np.diff(np.log(alphas[big] ** 2)) / (-2.0 * np.log(1.0 - eta * wd))
        d_t0 = np.diff(t0[big])
        slope_pred = eta * wd / (-np.log(1.0 - eta * wd))
        rows.append(Row("C4.recursion", src, "alpha >= 10: steps-to-1e-3 increments between successive alphas vs the "
                        "exact WD norm recursion (1-eta lambda)^(2t), and vs T0's increments",
                        [round(float(v), 1) for v in d_pred], [float(v) for v in d_meas],
                        "increments within 2% of the recursion (+-1 step); increments / T0 increments = "
                        f"eta lambda/(-ln(1-eta lambda)) = {slope_pred:.4f} within 2%",
                        verdict([close("step increments", d_meas.tolist(), d_pred.tolist(), rtol=0.02, atol=1.0),
                                 close("increments / T0 increments", (d_meas / d_t0).tolist(), slope_pred, rtol=0.02)]),
                        note=f"T0 increments {[round(float(v), 1) for v in d_t0]}"))
        nowd = jax.jit(lambda p: run(prob.loss, optax.sgd(eta), p, T, jax.random.PRNGKey(seed), eval_fn=full))(prob.init(100.0))
        l_nowd = float(nowd.loss[-1])
        rows.append(Row("C4.nowd", src, "alpha=100: GD without WD sticks (effective LR eta/||A||^2 = 1e-5)",
                        "loss stays >> eps", l_nowd, f"final loss > 100 eps = {100*eps}",
                        verdict([within("final loss without WD", l_nowd, lo=100 * eps)])))
        sprob = P.normalized_mf(batch=2)
        Ts = 8000 if quick else 20000
        s_wd = jax.jit(lambda p: run(sprob.loss, sgd_wd(0.05, wd), p, Ts, jax.random.PRNGKey(seed), eval_fn=full))(sprob.init(100.0))
        s_no = jax.jit(lambda p: run(sprob.loss, optax.sgd(0.05), p, Ts, jax.random.PRNGKey(seed), eval_fn=full))(sprob.init(100.0))
        tail = Ts // 10
        m_wd, m_no = float(np.mean(s_wd.loss[-tail:])), float(np.mean(s_no.loss[-tail:]))
        rows.append(Row("C4.sgdwd", src, "alpha=100: SGD+WD (2 of 4 entries per step) vs SGD: tail-mean full loss",
                        "SGD+WD <= 0.1 x SGD", [m_wd, m_no], "ratio <= 0.1", verdict([within("tail loss ratio SGD+WD / SGD", m_wd / m_no, lo=0.0, hi=0.1)])))

    fig, (ax1, ax2) = new_figure(ncols=2)
    ax1.plot(np.maximum(np.asarray(tr.loss[i100]), 1e-20), label="GD+WD")
    ax1.plot(np.asarray(nowd.loss), label="GD, no WD")
    ax1.plot(np.asarray(s_wd.loss), alpha=0.6, label="SGD+WD")
    ax1.plot(np.asarray(s_no.loss), alpha=0.6, label="SGD, no WD")
    ax1.set_yscale("log"); ax1.set_xlabel("step"); ax1.set_ylabel("full loss"); ax1.set_title("normalized MF, alpha=100")
    ax1.legend(fontsize=7)
    ax2.plot(alphas, steps, "o", label="measured steps to 1e-3")
    ax2.plot(alphas, t0, "-", label="T0 = |ln(||x0||^2/eta)|/(2 eta lambda)")
    ax2.set_xscale("log"); ax2.set_xlabel("alpha"); ax2.set_ylabel("steps"); ax2.legend(fontsize=7)
    save_figure(fig, out_dir / "C4.png")
    return rows


# ============================================================== claim 5: SGD+WD equilibrium
@claim_id("C5")
def claim_equilibrium(seed: int, quick: bool, out_dir: Path) -> List[Row]:
    """Talk, "Ingredient 3": ||x||^2 -> equilibrium; ||g||/||x|| -> sqrt(lambda(2-eta lambda)/eta)."""
    src = _src('slide "Ingredient 3: Global Relative Clipping" (equilibrium)')
    src_thm = _src('slide "Convergence Results for SGD +WD" (norm band)')
    etas, sigmas = [0.05, 0.2, 1.0], [0.5, 1.0, 2.0]
    wds = [1e-2, 3e-2, 1e-1] if quick else [1e-3, 1e-2, 3e-2, 1e-1]
    grid = np.array([(e, w, s) for e in etas for w in wds for s in sigmas if e * w <= 0.1])
    T = 20000 if quick else 150000  # >= 10 / min(eta * lambda) steps
    rows = []
    with jax.enable_x64(True):
        # One sweep over every (eta, lambda, sigma): the loss sigma * L_1 has the gradient sigma * grad L_1,
        # so sigma enters as a scaling of the gradient before SGD + WD (exact: sigma is a power of 2).
        # Each sigma's configurations keep the keys a sweep of that sigma alone would split, so the
        # iterates are those of three per-sigma sweeps, in a third of the loop steps (the per-step
        # loop overhead dominates this 64-dim toy).
        g = np.concatenate([grid[grid[:, 2] == sigma] for sigma in sigmas])
        prob = P.constant_sigma(dim=64, sigma=1.0)
        keys = jnp.concatenate([jax.random.split(jax.random.PRNGKey(seed), int(np.sum(grid[:, 2] == sigma)))
                                for sigma in sigmas])
        p0 = jax.vmap(lambda k: prob.init(1.0, k))(keys)
        tr = sweep(lambda eta, weight_decay, sigma: optax.chain(optax.scale(sigma), sgd_wd(eta, weight_decay)),
                   prob.loss, p0, T, None, {"eta": g[:, 0], "weight_decay": g[:, 1], "sigma": g[:, 2]}, keys=keys)
        sq = np.asarray(tr.sq_norm)
        gn = np.asarray(tr.grad_norm) * g[:, 2:3]   # the trace holds ||grad L_1||
        tail = slice(-T // 10, None)
        meas_sq = sq[:, tail].mean(1)
        meas_ratio = (gn[:, tail] / np.sqrt(sq[:, tail])).mean(1)
        pred_sq = theory.equilibrium_sq_norm(g[:, 0], g[:, 1], g[:, 2])
        stated_sq = theory.equilibrium_sq_norm_as_stated(g[:, 0], g[:, 1], g[:, 2])
        pred_ratio = theory.equilibrium_grad_ratio(g[:, 0], g[:, 1])
        err = np.abs(meas_sq / pred_sq - 1)
        err_ratio = np.abs(meas_ratio / pred_ratio - 1)
        n = len(g)
        rows.append(Row("C5.norm_stated", src, f"||x||^2 -> sqrt(2 eta/(lambda(2-eta lambda))) sigma as stated ({n} configs)",
                        "measured/stated = 1", round(float(np.median(meas_sq / stated_sq)), 6),
                        "max rel. error < 1%; erratum only if measured/stated = 1/sqrt(2) (the derived size, proofs P6.norm) within 1% in every config",
                        verdict([close("measured / stated", (meas_sq / stated_sq).tolist(), 1.0, rtol=0.01)],
                                erratum=[close("measured / stated = 1/sqrt(2)", (meas_sq / stated_sq).tolist(), 2 ** -0.5, rtol=0.01)]),
                        note=f"measured/stated ||x||^2 in [{(meas_sq / stated_sq).min():.5f}, {(meas_sq / stated_sq).max():.5f}] "
                             f"(1/sqrt(2) = {2 ** -0.5:.5f}); corrected form sqrt(eta/(lambda(2-eta lambda))) sigma, see C5.norm"))
        rows.append(Row("C5.norm", src, f"||x||^2 -> sqrt(eta/(lambda(2-eta lambda))) sigma (derived fixed point, {n} configs)",
                        0.0, float(err.max()), "max rel. error |measured/derived - 1| < 1%",
                        verdict([close("measured / derived", (meas_sq / pred_sq).tolist(), 1.0, rtol=0.01)])))
        rows.append(Row("C5.ratio", src, f"||grad L_gamma(x)||/||x|| -> sqrt(lambda(2-eta lambda)/eta) ({n} configs)",
                        0.0, float(err_ratio.max()), "max rel. error |measured/stated - 1| < 1%",
                        verdict([close("measured / stated", (meas_ratio / pred_ratio).tolist(), 1.0, rtol=0.01)])))
        # Non-constant sigma: noisy normalised linear regression with SGD (batch 1)
        eta, wd = 0.1, 0.05
        lp = P.normalized_linreg(dim=16, n=64, noise=0.5, batch=1, data_seed=seed)
        Tl = 20000 if quick else 60000
        keys = jax.random.split(jax.random.PRNGKey(seed + 1), 6)
        scales = np.logspace(-3, 3, 6)
        p0 = jax.vmap(lambda k, s: lp.init(s, k))(keys, jnp.asarray(scales))
        tr, xs = sgd_wd_iterates(lp, p0, eta, wd, Tl, jax.random.PRNGKey(seed + 2), stride=50)
        gsq = np.asarray(jax.jit(jax.vmap(jax.vmap(lp.meta["grad_sq_on_sphere"])))(xs))
        sq_l = np.asarray(tr.sq_norm)
        sig_lo, sig_hi = float(np.sqrt(gsq.min())), float(np.sqrt(gsq.max()))
        lo, hi = theory.sgd_wd_norm_band(eta, wd, sig_lo, sig_hi)
        t1 = int(np.max(theory.t1_scale(eta, wd, scales**2)))
        after = sq_l[:, t1:]
        frac_in = float(np.mean((after >= lo) & (after <= hi)))
        rows.append(Row("C5.band", src_thm,
                        "SGD+WD norm band sigma_lo^2/2 <= (2 lambda/eta)||x||^4 <= 4 sigma_hi^2 after T1 (noisy normalized linreg, 6 inits 1e-3..1e3)",
                        f"||x||^2 in [{float(lo):.3g}, {float(hi):.3g}] for t >= T1={t1}", frac_in,
                        "fraction of steps in band == 1", verdict([within("fraction in band", frac_in, lo=1.0, hi=1.0)]),
                        note=f"sigma_lo, sigma_hi = {sig_lo:.3g}, {sig_hi:.3g} measured along the runs; T1 = max (|ln eta lambda| + |ln eta/||x0||^2|)/(eta lambda)"))
        sig_eff = np.sqrt(gsq[:, -gsq.shape[1] // 4:].mean())
        pred_l = float(theory.equilibrium_sq_norm(eta, wd, sig_eff))
        meas_l = float(sq_l[:, -Tl // 4:].mean())
        rows.append(Row("C5.linreg", src, "noisy normalized linreg (sigma not constant): tail ||x||^2 vs derived equilibrium with sigma_eff^2 = E||grad L_gamma(x_bar)||^2",
                        round(pred_l, 5), round(meas_l, 5), "rel. error < 5%",
                        verdict([close("tail ||x||^2", meas_l, pred_l, rtol=0.05)])))
        # at the predicted value, per init: from T1 on, every run's mean ||x||^2 is the derived
        # equilibrium (not just inside the 2x band), so a T1 that starts the window inside the
        # transient (T1 too small) fails here
        per_init = sq_l[:, t1:].mean(axis=1)
        rows.append(Row("C5.after_t1", src_thm, "noisy normalized linreg: mean ||x||^2 over t >= T1, each of the 6 inits, "
                        "vs the derived equilibrium with sigma_eff", round(pred_l, 5), [round(float(v), 5) for v in per_init],
                        "rel. error < 5% for every init", verdict([close("mean ||x||^2 after T1", per_init.tolist(), pred_l, rtol=0.05)]),
                        note=f"T1 = {t1}; inits ||x0|| = {[float(f'{v:.0e}') for v in scales]}"))

    fig, (ax1, ax2) = new_figure(ncols=2)
    ax1.loglog(pred_sq, meas_sq, "o", label="measured tail mean")
    ax1.loglog(pred_sq, pred_sq, "-", color="k", label="derived sqrt(eta/(lambda(2-eta lambda))) sigma")
    ax1.loglog(pred_sq, stated_sq, "--", color="r", label="as stated (sqrt(2) larger)")
    ax1.set_xlabel("predicted ||x*||^2 (derived)"); ax1.set_ylabel("||x||^2"); ax1.legend(fontsize=7)
    ax1.set_title("C5: equilibrium norm, constant-sigma loss")
    for i, s in enumerate(scales):
        ax2.loglog(np.arange(1, Tl + 1), sq_l[i], lw=0.8, label=f"||x0|| = {s:.0e}")
    ax2.axhspan(float(lo), float(hi), color="green", alpha=0.15, label="theorem band")
    ax2.axvline(t1, color="gray", ls=":", label="T1")
    ax2.set_xlabel("step"); ax2.set_ylabel("||x||^2"); ax2.legend(fontsize=6); ax2.set_title("noisy normalized linreg")
    save_figure(fig, out_dir / "C5.png")
    return rows


# ============================================================== claim 6: log dependence on init
@claim_id("C6")
def claim_log_dependence(seed: int, quick: bool, out_dir: Path) -> List[Row]:
    """Talk, "Convergence Results for GD + WD": T0 ~ (1/2 eta lambda)|ln(||x0||^2/eta)|; without
    WD the time grows polynomially with the init scale."""
    src = _src('slides "Convergence Results for GD + WD" / "Existing Analysis" (poly dependence)')
    rows = []
    eta, wd, sigma = 0.1, 0.05, 1.0
    with jax.enable_x64(True):
        # (a) constant-sigma loss: steps to the equilibrium band, ||x0|| over 10^-4 .. 10^4
        prob = P.constant_sigma(dim=32, sigma=sigma)
        scales = np.logspace(-4, 4, 17)
        keys = jax.random.split(jax.random.PRNGKey(seed), len(scales))
        p0 = jax.vmap(lambda k, s: prob.init(s, k))(keys, jnp.asarray(scales))
        T = 6000
        tr = sweep(lambda: sgd_wd(eta, wd), prob.loss, p0, T, jax.random.PRNGKey(seed), {})
        eq = float(theory.equilibrium_sq_norm(eta, wd, sigma))
        sq = np.asarray(tr.sq_norm)
        steps, s_big, s_small = time_to_equilibrium(sq, scales, eq, eta, sigma)
        pred = theory.t0_slope(eta, wd)
        exact = 1.0 / (-2.0 * np.log(1 - eta * wd))
        rows.append(Row("C6.wd_large", src, "SGD+WD, ||x0|| > x*: d steps / d ln||x0||^2 (T0 slope 1/(2 eta lambda))",
                        round(pred, 3), round(s_big, 3), "rel. error < 5%",
                        verdict([close("slope", s_big, pred, rtol=0.05)]),
                        note=f"exact WD decay gives 1/(-2 ln(1-eta lambda)) = {exact:.3f}"))
        rows.append(Row("C6.wd_small", src, "SGD+WD, ||x0||^2 < eta^2 sigma^2/(10 x*^2): d steps / d ln||x0||^2 (|ln| in T0: -1/(2 eta lambda))",
                        round(-pred, 3), round(s_small, 3), "rel. error < 5%",
                        verdict([close("slope", s_small, -pred, rtol=0.05)]),
                        note="a tiny init makes the first step huge (||x1||^2 ~ eta^2 sigma^2/||x0||^2), then WD decays it"))
        # (b) real loss (normalized linreg), GD with and without WD: steps to loss < eps
        lp = P.normalized_linreg(dim=16, n=64, noise=0.0, data_seed=seed)
        eta2, wd2, eps = 0.5, 0.02, 1e-4
        sc_wd = np.logspace(0, 4, 9)
        kk = jax.random.split(jax.random.PRNGKey(seed + 1), len(sc_wd))
        p_wd = jax.vmap(lambda k, s: lp.init(s, k))(kk, jnp.asarray(sc_wd))
        # same direction for all scales: use the first key's direction
        d0 = lp.init(1.0, kk[0])
        p_wd = jnp.asarray(sc_wd)[:, None] * d0[None, :]
        tr_wd = sweep(lambda: sgd_wd(eta2, wd2), lp.loss, p_wd, 4000, jax.random.PRNGKey(0), {})
        st_wd = first_hit(np.asarray(tr_wd.loss) < eps)
        sc_no = np.logspace(0, 1.5 if quick else 2, 7)
        p_no = jnp.asarray(sc_no)[:, None] * d0[None, :]
        T_no = 60000 if quick else 400000
        tr_no = sweep(lambda: optax.sgd(eta2), lp.loss, p_no, T_no, jax.random.PRNGKey(0), {})
        st_no = first_hit(np.asarray(tr_no.loss) < eps)
        fit = sc_wd >= 10
        s_wd = float(np.polyfit(np.log(sc_wd[fit] ** 2), st_wd[fit], 1)[0])
        pred2 = theory.t0_slope(eta2, wd2)
        rows.append(Row("C6.linreg_wd", src, "GD+WD on normalized linreg, ||x0|| 10..1e4: d steps/d ln||x0||^2",
                        round(pred2, 3), round(s_wd, 3), "rel. error < 10%",
                        verdict([close("slope", s_wd, pred2, rtol=0.10)]),
                        note=f"steps {st_wd.tolist()}"))
        fin = np.isfinite(st_no) & (sc_no >= 3)
        e_no = loglog_slope(sc_no[fin] ** 2, st_no[fin]) if fin.sum() >= 2 else float("nan")
        rows.append(Row("C6.linreg_nowd", src, "GD without WD: steps ~ (||x0||^2)^p (effective LR eta/||x0||^2); fitted p",
                        1.0, round(e_no, 3), "|p - 1| < 0.1", verdict([close("exponent p", e_no, 1.0, atol=0.1)]),
                        note=f"||x0|| {np.round(sc_no, 2).tolist()} -> steps {st_no.tolist()}"))

    fig, (ax1, ax2) = new_figure(ncols=2)
    ax1.semilogx(scales**2, steps, "o", label="measured: steps into [x*^2/2, 2x*^2]")
    ax1.semilogx(scales**2, [theory.steps_to_equilibrium(s**2, eta, wd, sigma) for s in scales], "-",
                 label="exact norm recursion")
    ax1.semilogx(scales**2, theory.t0_bound(eta, wd, scales**2), "--", label="T0 = |ln(||x0||^2/eta)|/(2 eta lambda)")
    ax1.set_xlabel("||x(0)||^2"); ax1.set_ylabel("steps"); ax1.set_title("C6: SGD+WD, constant sigma"); ax1.legend(fontsize=7)
    ax2.loglog(sc_wd**2, st_wd, "o-", label="GD+WD")
    ax2.loglog(sc_no**2, st_no, "s-", label=f"GD, no WD (exponent {e_no:.2f})")
    ax2.set_xlabel("||x(0)||^2"); ax2.set_ylabel(f"steps to loss < {eps}"); ax2.set_title("normalized linreg")
    ax2.legend(fontsize=7)
    save_figure(fig, out_dir / "C6.png")
    return rows


# ============================================================== claim 7: WD <=> exponential LR
@claim_id("C7")
def claim_exp_lr(seed: int, quick: bool, out_dir: Path) -> List[Row]:
    """Talk, "Ingredient 2": GD+WD == GD with eta_t = eta (1 - eta lambda)^(-2t) [L & Arora 21]."""
    src = _src('slide "Ingredient 2: SGD + WD" (exponential LR)')
    prob = P.normalized_linreg(dim=16, n=64, noise=0.3, data_seed=seed)
    eta, wd, T = 0.2, 0.01, 1000
    rows = []
    with jax.enable_x64(True):
        x0 = prob.init(1.0, jax.random.PRNGKey(seed))

        def traj(opt, p):   # x_t, t = 0..T-1 (full batch: the loss ignores the key)
            return run(prob.loss, opt, p, T, jax.random.PRNGKey(0), record=lambda st: st.x).extra

        traj = jax.jit(traj, static_argnums=0)
        x_wd = traj(sgd_wd(eta, wd), x0)
        c = theory.wd_to_exp_lr_rescale(np.arange(T), eta, wd)[:, None]
        x_exact = traj(optax.sgd(exponential_lr(eta, wd)), x0)
        x_stated = traj(optax.sgd(exponential_lr(eta, wd, as_stated=True)), x0)
        x_stated_r = traj(optax.sgd(exponential_lr(eta, wd, as_stated=True)), np.sqrt(1 - eta * wd) * x0)
        ref = np.asarray(x_wd) * c

        def rel(a, b):
            return float(np.max(np.linalg.norm(np.asarray(a) - b, axis=1) / np.linalg.norm(b, axis=1)))

        def ang(a, b):
            a, b = np.asarray(a), np.asarray(b)
            cos = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
            return float(np.max(np.arccos(np.clip(cos, -1, 1))))

        # size of the erratum, derived: from the same x0 the stated schedule is the exact one
        # with every step's LR times q = 1 - eta lambda; by scale invariance that is GD+WD with
        # eta' = q eta, lambda' = lambda / q (same decay factor 1 - eta' lambda' = q) from x0, so
        # the stated run has the DIRECTIONS of sgd_wd(q eta, lambda/q) and its angle to the exact
        # run is the angle between the two GD+WD runs (computed by a different code path)
        q = 1.0 - eta * wd
        x_wd_q = traj(sgd_wd(q * eta, wd / q), x0)
        e1 = rel(x_exact, ref)
        e2 = ang(x_stated, ref)
        e2_pred = ang(x_wd_q, np.asarray(x_wd))
        def unit_dist(a, b):   # max ||a/|a| - b/|b||| (arccos loses half the digits near 0)
            a, b = np.asarray(a), np.asarray(b)
            return float(np.max(np.linalg.norm(a / np.linalg.norm(a, axis=1, keepdims=True)
                                               - b / np.linalg.norm(b, axis=1, keepdims=True), axis=1)))

        e2_dir = unit_dist(x_stated, x_wd_q)
        e3 = rel(x_stated_r, ref * np.sqrt(1 - eta * wd))
        rows.append(Row("C7.exact", src, "GD+WD from x0 == GD with eta_t = eta(1-eta lambda)^(-2t-1) from x0, "
                        "x_GD(t) = x_WD(t)/(1-eta lambda)^t", 0.0, e1, "max rel. error < 1e-10 (float64)",
                        verdict([within("max rel. error", e1, lo=0.0, hi=1e-10)])))
        rows.append(Row("C7.stated_same_init", src, "as stated, eta_t = eta(1-eta lambda)^(-2t), from the SAME x0: same directions?",
                        0.0, e2, "max angle < 1e-10 rad; erratum only if the angle is the derived size of the "
                        "per-step LR factor (1-eta lambda) (= angle between GD+WD(eta, lambda) and GD+WD((1-eta lambda) eta, "
                        "lambda/(1-eta lambda)), rel. 1e-6) and the stated run has exactly the latter's directions (unit vectors within 1e-10)",
                        verdict([within("max angle", e2, lo=0.0, hi=1e-10)],
                                erratum=[close("max angle vs the derived size", e2, e2_pred, rtol=1e-6),
                                         within("direction distance to GD+WD(q eta, lambda/q)", e2_dir, lo=0.0, hi=1e-10),
                                         within("derived size is not rounding", e2_pred, lo=1e-6)]),
                        note="the stated schedule is exact only from the rescaled init sqrt(1-eta lambda) x0 "
                             "(C7.stated_rescaled), or as eta(1-eta lambda)^(-2t-1) from x0 (C7.exact); "
                             f"derived size of the error: {e2_pred:.6g} rad (every step's LR off by 1-eta lambda), "
                             f"stated run vs GD+WD(q eta, lambda/q): unit vectors within {e2_dir:.2g}"))
        rows.append(Row("C7.stated_rescaled", src, "as stated, from x~0 = sqrt(1-eta lambda) x0: x_GD(t) = x_WD(t)(1-eta lambda)^(1/2-t)",
                        0.0, e3, "max rel. error < 1e-10", verdict([within("max rel. error", e3, lo=0.0, hi=1e-10)])))
    fig, ax = new_figure()
    t = np.arange(T)
    for name, x, r in (("exact schedule", x_exact, ref), ("stated, same x0", x_stated, ref),
                       ("stated, rescaled x0", x_stated_r, ref * np.sqrt(1 - eta * wd))):
        d = np.linalg.norm(np.asarray(x) - r, axis=1) / np.linalg.norm(r, axis=1)
        ax.semilogy(t, np.maximum(d, 1e-17), label=name)
    ax.set_xlabel("step t"); ax.set_ylabel("||x_GD(t) - c_t x_WD(t)|| / ||c_t x_WD(t)||")
    ax.set_title("C7: WD vs exponential LR (float64)"); ax.legend(fontsize=7)
    save_figure(fig, out_dir / "C7.png")
    return rows


# ============================================================== claim 8: relative global clipping
@claim_id("C8")
def claim_clipping(seed: int, quick: bool, out_dir: Path) -> List[Row]:
    """Talk, "Ingredient 3": relative global clipping removes norm spikes from heavy-tailed noise,
    fires rarely, and never fires for constant-norm gradients (C > 1)."""
    src = _src('slide "Ingredient 3: Global Relative Clipping"')
    eta, wd, C = 0.1, 0.01, 2.0
    T = 20000 if quick else 60000
    rows = []
    with jax.enable_x64(True):
        prob = P.constant_sigma(dim=64, sigma=1.0, heavy_tail=2.5, spike_prob=0.01, spike_scale=10.0)
        eq = float(theory.equilibrium_sq_norm(eta, wd, 1.0))
        x0 = prob.init(np.sqrt(eq), jax.random.PRNGKey(seed))
        f = jax.jit(lambda opt: run(prob.loss, opt, x0, T, jax.random.PRNGKey(seed)), static_argnums=0)
        plain = f(sgd_wd(eta, wd))
        clip = f(sgd_wd_rgc(eta, wd, C=C))
        growth = lambda tr: np.asarray(tr.sq_norm[1:] / tr.sq_norm[:-1])
        bound = theory.max_sq_norm_growth_with_clip(eta, wd, C)
        g_clip, g_plain = float(growth(clip).max()), float(growth(plain).max())
        rows.append(Row("C8.bound", src, "heavy-tailed noise (1% Pareto-2.5 spikes >= 10x): max one-step ||x_{t+1}||^2/||x_t||^2 with clipping",
                        f"<= (1-eta lambda)^2 + 2C eta lambda = {bound:.4f}", round(g_clip, 6),
                        "<= bound (1e-12 rel.)", verdict([within("max growth / bound", g_clip / bound, hi=1 + 1e-12)]),
                        note=f"without clipping the max is {g_plain:.3f}"))
        # the threshold itself: at a clipped step the clipped gradient (orthogonal to x) has
        # ||g_c||^2 = (||x_{t+1}||^2 - (1-eta lambda)^2 ||x_t||^2)/eta^2, which must EQUAL
        # sqrt(2 C lambda/eta) ||x_t|| (theory.clip_threshold), not just stay below the bound
        sq = np.asarray(clip.sq_norm)
        fired = np.asarray(clip.clipped)[:-1]
        gc = np.sqrt(np.maximum(sq[1:] - (1 - eta * wd) ** 2 * sq[:-1], 0.0)) / eta
        thr = np.asarray(theory.clip_threshold(eta, wd, np.sqrt(sq[:-1]), C))
        r_fired = gc[fired] / thr[fired]
        r_free = gc[~fired] / thr[~fired]
        rows.append(Row("C8.threshold", src, "clipped steps: ||clipped g|| / (sqrt(2 C lambda/eta) ||x_t||) (from the norm "
                        "recursion); unclipped steps: ||g|| / threshold",
                        1.0, [round(float(r_fired.min()), 9), round(float(r_fired.max()), 9)] if r_fired.size else [],
                        "every clipped step: |ratio - 1| < 1e-8; every unclipped step: ratio <= 1 + 1e-8; >= 10 clipped steps",
                        verdict([close("clipped norm / threshold", r_fired.tolist() or [float("nan")], 1.0, rtol=1e-8),
                                 within("unclipped norm / threshold", r_free.tolist(), lo=0.0, hi=1 + 1e-8),
                                 within("clipped steps", int(fired.sum()), lo=10)]),
                        note=f"{int(fired.sum())} clipped steps of {fired.size}; unclipped max ratio {r_free.max():.4f}"))
        tail = slice(T // 10, None)
        spike = lambda tr: float(np.max(tr.sq_norm[tail]) / np.median(tr.sq_norm[tail]))
        s_clip, s_plain = spike(clip), spike(plain)
        rows.append(Row("C8.spikes", src, "norm spikes: max/median of ||x||^2 after burn-in, [clipped, unclipped]",
                        "clipping removes spikes", [round(s_clip, 3), round(s_plain, 3)],
                        "clipped excess (spike - 1) <= half the unclipped excess",
                        verdict([within("clipped excess / unclipped excess", (s_clip - 1) / (s_plain - 1), lo=0.0, hi=0.5)])))
        frac = float(np.mean(clip.clipped[T // 10:]))
        pred_rate, v = theory.predicted_clip_rate(prob.meta["factor_np"], C, seed)
        rows.append(Row("C8.rate", src, "fraction of steps clipped (C=2) under heavy-tailed noise, after burn-in",
                        round(pred_rate, 4), round(frac, 4),
                        "|measured - predicted| <= 15% predicted + 0.001 (both ways), and < 5% (talk: ~1%)",
                        verdict([close("clip rate", frac, pred_rate, rtol=0.15, atol=0.001), within("clip rate", frac, lo=0.0, hi=0.05)]),
                        note=f"prediction: mean-field clipped equilibrium v = E[min(f^2, C v)] = {v:.4f}, rate = P(f^2 > C v)"))
        # constant-norm gradients: never fires, for C slightly above 1, from init >= equilibrium
        cprob = P.constant_sigma(dim=64, sigma=1.0)
        grid = [(e, w, c) for e in (0.05, 0.5) for w in (1e-3, 1e-2, 1e-1) for c in (1.001, 2.0, 4.0) if e * w <= 0.1]
        g = np.array(grid)
        keys = jax.random.split(jax.random.PRNGKey(seed), len(g))
        eqs = theory.equilibrium_sq_norm(g[:, 0], g[:, 1], 1.0)
        p0 = jax.vmap(lambda k, s: cprob.init(s, k))(keys, jnp.asarray(np.sqrt(10 * eqs)))
        tr = sweep(lambda eta, weight_decay, C: sgd_wd_rgc(eta, weight_decay, C=C), cprob.loss, p0, 5000, jax.random.PRNGKey(seed),
                   {"eta": g[:, 0], "weight_decay": g[:, 1], "C": g[:, 2]})
        fired = int(np.asarray(tr.clipped).sum())
        rows.append(Row("C8.const", src, f"constant-norm gradients, C in {{1.001, 2, 4}}, {len(g)} (eta, lambda, C), init 10x equilibrium norm^2",
                        0, fired, "number of clipped steps == 0", verdict([within("clipped steps", fired, lo=0, hi=0)])))
    fig, (ax1, ax2) = new_figure(ncols=2)
    ax1.semilogy(np.asarray(plain.sq_norm), lw=0.7, label="SGD+WD")
    ax1.semilogy(np.asarray(clip.sq_norm), lw=0.7, label=f"SGD+WD+RGC (C={C})")
    ax1.axhline(eq, color="k", ls=":", label="equilibrium (E s^2 = sigma^2)")
    ax1.set_xlabel("step"); ax1.set_ylabel("||x||^2"); ax1.set_title("C8: heavy-tailed gradient noise"); ax1.legend(fontsize=7)
    # survival function of the one-step growth r - 1 (r = ||x_{t+1}||^2/||x_t||^2 > 1) on log-log
    # axes: the clipped curve ends at the bound, the unclipped one runs on (a shared-bin histogram
    # hid the clipped one, all of it within 0.1% of r = 1, under the unclipped bar)
    for tr, lab, style in ((plain, "no clip", dict(lw=1.2)),
                           (clip, f"clip (C={C}), max r - 1 = {g_clip - 1:.4f}", dict(lw=2.5, marker="o", ms=3, zorder=3))):
        g = growth(tr) - 1.0
        ex = np.sort(g[g > 0])
        ax2.loglog(ex, (len(ex) - np.arange(len(ex))) / len(g), label=lab, **style)   # P(r - 1 >= ex)
    ax2.axvline(bound - 1.0, color="k", ls=":", lw=1, zorder=2,
                label=f"bound (1-eta lambda)^2 + 2C eta lambda - 1 = {bound - 1:.4f}")
    ax2.set_xlabel("one-step growth r - 1, r = ||x_{t+1}||^2/||x_t||^2")
    ax2.set_ylabel("fraction of steps with growth > r - 1"); ax2.legend(fontsize=7)
    save_figure(fig, out_dir / "C8.png")
    return rows


CLAIMS = [
    claim_homogeneity,
    claim_ex1_divergence,
    claim_unbalanced_mf,
    claim_normalized_mf,
    claim_equilibrium,
    claim_log_dependence,
    claim_exp_lr,
    claim_clipping,
]
