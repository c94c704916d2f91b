"""Item 10: equilibrium angular update per step from the random-walk model (Kosson et al.,
ICML 2024, arXiv 2305.17212; docs/PAPER_NOTES.md). Model: gradients g_t i.i.d., orthogonal to x in expectation, E||g||^2 = G^2
(for Adam: the normalised update direction with E||g/sqrt(v)||^2 = D); equilibrium = the norm
growth of the accumulated random walk balances the weight decay. Derived, not typed in: the
momentum variance factor and the long-run step length come from sympy summations."""
from __future__ import annotations

import sympy as sp

from proofs_check.derivation import Derivation, compare

SRC = "Kosson et al. 2024 (arXiv 2305.17212)"
SLIDE = "random-walk model"


def _d(*args, **kw) -> Derivation:
    """A derivation row citing Kosson et al. (the default source of a Derivation is the talk)."""
    return Derivation(*args, source=SRC, **kw)
eta, lam, G, beta, alpha, s = sp.symbols("eta lambda G beta alpha s", positive=True)
j = sp.Symbol("j", integer=True, nonnegative=True)
RANGES = {eta: (1e-4, 1e-2), lam: (1e-3, 1e-1), beta: (0.0, 0.99), alpha: (0.0, 0.99), G: (0.1, 10.0)}


def _geom(term):
    """sum_{j>=0} term, taking the convergent branch (|ratio| < 1 is assumed: beta, alpha < 1)."""
    v = sp.summation(term, (j, 0, sp.oo))
    return v.args[0][0] if isinstance(v, sp.Piecewise) else v


def _ema_factor(b):
    """E||m||^2 / G^2 for m_t = b m_{t-1} + (1-b) g_t, i.i.d. g: sum_j (1-b)^2 b^(2j)."""
    return sp.simplify((1 - b) ** 2 * _geom(b ** (2 * j)))


def _long_run_gain(b):
    """Total displacement weight of one gradient through the EMA: sum_j (1-b) b^j."""
    return sp.simplify((1 - b) * _geom(b**j))


_FORMS = {}


def _sgd_norm():
    """First-order SGD+WD balance 2 eta lambda N = eta^2 sigma^2 / N (N = ||p||^2, ||g|| = sigma/||p||),
    solved for ||p|| = sqrt(N)."""
    N, sg = sp.symbols("N sigma", positive=True)
    sol = sp.solve(sp.Eq(2 * eta * lam * N, eta**2 * sg**2 / N), N)
    return sp.sqrt(sol[0])


def closed_forms():
    """The derived closed forms (sympy) keyed by name, for comparison with scaleinv.theory:
    sgd (leading order), sgd_exact, sgd_norm, adamw, adamw_norm_sq (D = E||u||^2 = number of
    coordinates), sgdm, sgdm_norm_sq_times_grad_sq (N with G^2 = E||g||^2 at that N)."""
    if not _FORMS:
        derivations()
    return dict(_FORMS)


def derivations():
    out = []
    # SGD (exact per-step angle at the equilibrium, then leading order)
    q = 1 - eta * lam
    ratio_sq = 1 - q**2                      # eta^2 ||g||^2 / ||x||^2 at the norm balance
    theta = sp.atan(sp.sqrt(ratio_sq) / q)   # x' = q x - eta g, g orthogonal to x
    lead = sp.limit(theta.subs(eta, s / lam) / sp.sqrt(s), s, 0) * sp.sqrt(eta * lam)
    st, m, d = compare(sp.sqrt(2 * eta * lam), sp.simplify(lead), RANGES)
    _FORMS["sgd"] = sp.simplify(lead)
    exact = sp.simplify(theta)
    out_exact_ok = compare(sp.acos(1 - eta * lam), exact, {eta: (1e-3, 1.0), lam: (1e-3, 0.9)})[0] == "pass"
    second = sp.series(theta.subs(eta, s / lam) / sp.sqrt(2 * s), s, 0, 2).removeO()
    out.append(_d("P10.sgd", SLIDE, "SGD+WD equilibrium angular update per step = sqrt(2 eta lambda)",
                          sp.sqrt(2 * eta * lam), sp.simplify(lead), "random walk, leading order in eta lambda",
                          st, m, discrepancy=d,
                          note=f"exact angle at the fixed point: atan(sqrt(eta lambda (2 - eta lambda))/(1 - eta lambda)) = "
                               f"arccos(1 - eta lambda) (numerically equal: {out_exact_ok}) = sqrt(2 eta lambda) ({second}), s = eta lambda"))
    _FORMS["sgd_exact"] = exact
    _FORMS["sgd_norm"] = _sgd_norm()
    # Adam-style EMA (AdamW, decoupled WD): per-step update eta*m with E||m||^2 = f(beta) D; long-run gain 1
    f_b = _ema_factor(beta)
    gain = _long_run_gain(beta)
    D = sp.Symbol("D", positive=True)
    norm_sq = sp.solve(sp.Eq(2 * eta * lam * sp.Symbol("N"), (eta * gain) ** 2 * D), sp.Symbol("N"))[0]
    angle = sp.simplify(eta * sp.sqrt(f_b * D) / sp.sqrt(norm_sq))
    stated = sp.sqrt(2 * eta * lam * (1 - beta) / (1 + beta))
    st, m, d = compare(stated, angle, RANGES)
    _FORMS["adamw"], _FORMS["adamw_norm_sq"] = angle, norm_sq
    out.append(_d("P10.adamw", SLIDE, "AdamW equilibrium angular update = sqrt(2 eta lambda (1-beta1)/(1+beta1))",
                          stated, angle, "random walk; E||g/sqrt(v)||^2 = D (normalised update), leading order in eta lambda",
                          st, m, note=f"EMA variance factor {f_b}, long-run gain {gain}, equilibrium ||x||^2 = {norm_sq} (independent of the gradient scale)",
                          discrepancy=d))
    # SGD with heavy-ball momentum alpha, L2 fed through the momentum: m = alpha m + (g + lam x), x -= eta m
    f_a = sp.simplify(_ema_factor(alpha) / (1 - alpha) ** 2)      # E||m||^2/G^2 for m = alpha m + g
    gain_a = sp.simplify(_long_run_gain(alpha) / (1 - alpha))     # = 1/(1-alpha)
    N = sp.Symbol("N")
    norm_sq_a = sp.solve(sp.Eq(2 * eta * gain_a * lam * N, (eta * gain_a) ** 2 * G**2), N)[0]
    angle_a = sp.simplify(eta * sp.sqrt(f_a) * G / sp.sqrt(norm_sq_a))
    stated_a = sp.sqrt(2 * eta * lam / (1 + alpha))
    st, m, d = compare(stated_a, angle_a, RANGES)
    _FORMS["sgdm"], _FORMS["sgdm_norm_sq_times_grad_sq"] = angle_a, norm_sq_a
    sg_ = sp.Symbol("sigma", positive=True)                     # G^2 = sigma^2 / N at norm^2 N
    K = sp.simplify(norm_sq_a / G**2)                           # N = K G^2 = K sigma^2 / N  =>  N^2 = K sigma^2
    _FORMS["sgdm_norm"] = (K * sg_**2) ** sp.Rational(1, 4)
    out.append(_d("P10.sgdm", SLIDE, "SGDM (momentum alpha, L2 through the momentum) angular update = sqrt(2 eta lambda/(1+alpha))",
                          stated_a, angle_a, "random walk, effective LR eta/(1-alpha), leading order", st, m,
                          note=f"E||m||^2 = {f_a} G^2, equilibrium ||x||^2 = {sp.simplify(norm_sq_a)}", discrepancy=d))
    # Adam with L2: lam*x enters the moments, so it is divided by sqrt(v) ~ sigma/(||p|| sqrt(Cd)) per coordinate
    # (gradient-dominated regime): effective per-step decay eta lam sqrt(Cd) ||p|| / sigma; the gradient part
    # moves p by eta^2 Cd per step (unit-RMS coordinates, long-run gain 1). Balance, solved for P = ||p||:
    P, Cd, sg = sp.symbols("P C_d sigma", positive=True)
    P_star = sp.solve(sp.Eq(2 * (eta * lam * sp.sqrt(Cd) * P / sg) * P**2, eta**2 * Cd), P)[0]
    angle_l2 = sp.simplify(eta * sp.sqrt(f_b * Cd) / P_star)
    _FORMS["adam_l2"], _FORMS["adam_l2_norm"] = angle_l2, P_star
    dep = sp.diff(sp.log(angle_l2), sg) * sg       # d ln(angle) / d ln(sigma)
    out.append(_d("P10.adam_l2", SLIDE, "Adam with L2 regularization: the equilibrium angle depends on the gradient norm",
                          "gradient-dependent (rotation imbalanced across layers)", angle_l2,
                          "random walk, gradient-dominated v (lambda ||p||^2 << sigma), C_d coordinates, Adam eps neglected",
                          "pass" if sp.simplify(dep + sp.Rational(1, 3)) == 0 else "fail",
                          "symbolic (norm balance with the L2 decay divided by sqrt(v))",
                          note=f"d ln(angle)/d ln(sigma) = {sp.simplify(dep)}: layers with larger gradients rotate more slowly; "
                               f"equilibrium ||p|| = {P_star}"))
    return out
