"""Item 10: equilibrium angular update per step from the random-walk model (Kosson et al.,
ICML 2024; seeds/002). Model: gradients g_t i.i.d., orthogonal to x in expectation, E||g||^2 = G^2
(for Adam: the normalised update direction with E||g/sqrt(v)||^2 = D); equilibrium = the norm
growth of the accumulated random walk balances the weight decay. Derived, not typed in: the
momentum variance factor and the long-run step length come from sympy summations."""
from __future__ import annotations

import sympy as sp

from proofs_check.derivation import Derivation, compare

SRC = 'seeds/002 (Kosson et al. 2024), random-walk model'
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


def derivations():
    out = []
    # SGD (exact per-step angle at the equilibrium, then leading order)
    q = 1 - eta * lam
    ratio_sq = 1 - q**2                      # eta^2 ||g||^2 / ||x||^2 at the norm balance
    theta = sp.atan(sp.sqrt(ratio_sq) / q)   # x' = q x - eta g, g orthogonal to x
    lead = sp.limit(theta.subs(eta, s / lam) / sp.sqrt(s), s, 0) * sp.sqrt(eta * lam)
    st, m, d = compare(sp.sqrt(2 * eta * lam), sp.simplify(lead), RANGES)
    out.append(Derivation("P10.sgd", SRC, "SGD+WD equilibrium angular update per step = sqrt(2 eta lambda)",
                          sp.sqrt(2 * eta * lam), sp.simplify(lead), "random walk, leading order in eta lambda",
                          st, m, note=f"exact: atan(sqrt(eta lambda (2 - eta lambda))/(1 - eta lambda))", discrepancy=d))
    # Adam-style EMA (AdamW, decoupled WD): per-step update eta*m with E||m||^2 = f(beta) D; long-run gain 1
    f_b = _ema_factor(beta)
    gain = _long_run_gain(beta)
    D = sp.Symbol("D", positive=True)
    norm_sq = sp.solve(sp.Eq(2 * eta * lam * sp.Symbol("N"), (eta * gain) ** 2 * D), sp.Symbol("N"))[0]
    angle = sp.simplify(eta * sp.sqrt(f_b * D) / sp.sqrt(norm_sq))
    stated = sp.sqrt(2 * eta * lam * (1 - beta) / (1 + beta))
    st, m, d = compare(stated, angle, RANGES)
    out.append(Derivation("P10.adamw", SRC, "AdamW equilibrium angular update = sqrt(2 eta lambda (1-beta1)/(1+beta1))",
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
    out.append(Derivation("P10.sgdm", SRC, "SGDM (momentum alpha, L2 through the momentum) angular update = sqrt(2 eta lambda/(1+alpha))",
                          stated_a, angle_a, "random walk, effective LR eta/(1-alpha), leading order", st, m,
                          note=f"E||m||^2 = {f_a} G^2, equilibrium ||x||^2 = {sp.simplify(norm_sq_a)}", discrepancy=d))
    # Adam with L2: the decay term lam x enters the normalised update, so the balance depends on ||g|| vs lam||x||
    out.append(Derivation("P10.adam_l2", SRC, "Adam with L2 has no gradient-independent equilibrium angle",
                          "gradient-dependent", "update = (g + lam x)/sqrt(v): the decay is divided by sqrt(v) ~ ||g||, so the "
                          "effective WD rate is lam/sqrt(v) and the balance (hence the angle) depends on the gradient norm per layer",
                          "random walk", "pass", "argument (no closed form)"))
    return out
