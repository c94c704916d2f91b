"""Item 13: weight decay sets a memory timescale (Wang & Aitchison 2024/25, arXiv 2405.13698).

Derived, not typed in: the change of W_{s+L} after a gradient perturbation delta at step s, when the
gradient does not depend on W, is a finite sum over the momentum's impulse response (1 - beta) beta^k
propagated by alpha = 1 - eta lambda per step; sympy sums it, and its decay rate per step for large L.
P13.ridge: the ridge penalty that makes the ridge solution the posterior mean of Bayesian linear regression
(prior N(0, r^2/d I), noise sigma^2), and the epoch timescale it implies for SGD + WD at stationarity.
"""
from __future__ import annotations

import sympy as sp

from proofs_check.derivation import Derivation, compare

SRC = "Wang & Aitchison 2024/25 (arXiv 2405.13698); influence derived here"
SLIDE = "AdamW as an EMA of updates, tau = 1/(eta lambda)"
eta, lam, beta, al = sp.symbols("eta lambda beta alpha", positive=True)
L = sp.Symbol("L", integer=True, positive=True)
k = sp.Symbol("k", integer=True, nonnegative=True)
RANGES = {eta: (1e-3, 0.5), lam: (1e-3, 0.9), beta: (0.0, 0.95), al: (0.05, 0.999), L: (1, 60)}


def influence():
    """(eta/sqrt(v))^-1 |Delta W_{s+L}| / |delta| = sum_{k=0}^{L-1} alpha^(L-1-k) (1 - beta) beta^k."""
    return sp.simplify(sp.summation(al ** (L - 1 - k) * (1 - beta) * beta**k, (k, 0, L - 1)))


def derivations():
    out = []
    I = influence()
    I = I.args[-1][0] if isinstance(I, sp.Piecewise) else I     # the alpha != beta branch
    stated = (1 - beta) * (al**L - beta**L) / (al - beta)
    st, m, d = compare(stated, I, RANGES, "alpha != beta; gradient independent of W; Adam's v fixed")
    out.append(Derivation("P13.influence", SLIDE, "a gradient perturbation delta at step s moves W_{s+L} by "
                          "(eta/sqrt(v)) (1-b) (alpha^L - b^L)/(alpha - b) |delta| (AdamW; b = 0: SGD+WD, eta alpha^(L-1))",
                          stated, I, "alpha = 1 - eta lambda; first order in delta", st, m, discrepancy=d, source=SRC))
    q = sp.Symbol("q", positive=True)                     # beta = alpha/(1 + q) < alpha
    ratio = (stated.subs(L, L + 1) / stated).subs(beta, al / (1 + q))
    factored = al * (1 - (1 + q) ** (-L - 1)) / (1 - (1 + q) ** (-L))       # alpha^L factored out
    assert sp.simplify(sp.powsimp(sp.expand_power_base(ratio / factored, force=True), force=True) - 1) == 0 or \
        abs(float((ratio / factored).subs({al: 0.9, q: 0.5, L: 7})) - 1) < 1e-12
    rate = sp.log(al * sp.limit((1 - (1 + q) ** (-L - 1)) / (1 - (1 + q) ** (-L)), L, sp.oo))
    st, m, d = compare(sp.log(al), sp.simplify(rate), {al: (0.5, 0.999), q: (0.01, 10.0)},
                       "large L, beta < alpha")
    out.append(Derivation("P13.rate", SLIDE, "for L >> 1/(1-beta1) the influence decays by alpha = 1 - eta lambda per "
                          "step: timescale 1/(-ln(1 - eta lambda)) ~ tau = 1/(eta lambda) (Wang & Aitchison)",
                          sp.log(al), sp.simplify(rate), "beta < alpha", st, m, discrepancy=d, source=SRC,
                          note="independent of beta1 and of the gradient: the memory time is set by eta lambda alone"))
    lam_star, tau, (s2, r2, dd, N, B) = ridge_tau()
    st, m, d = compare(B * r2 / (eta * s2 * dd), tau, {eta: (1e-3, 1.0), s2: (0.01, 10.0), r2: (0.01, 10.0), dd: (1, 1e3),
                                                      N: (1, 1e5), B: (1, 1e3)}, "stationary SGD + WD = ridge")
    out.append(Derivation("P13.ridge", SLIDE, "linear regression, prior w* ~ N(0, r^2/d I), noise sigma^2: the optimal "
                          "weight decay lambda* = sigma^2 d/(N r^2) gives tau_epoch* = B/(eta lambda* N) = B r^2/(eta sigma^2 d), "
                          "independent of the dataset size N (Wang & Aitchison's rule)", B * r2 / (eta * s2 * dd), tau,
                          "SGD + WD trained to stationarity (the ridge solution)", st, m, discrepancy=d, source=SRC,
                          note=f"lambda* = {lam_star} (the ridge solution is then the posterior mean for every eigen-direction)"))
    return out


def ridge_tau():
    """Ridge normal equations (X^T X/N + lambda I) w = X^T y/N vs the posterior mean's (X^T X + (sigma^2 d/r^2) I) w =
    X^T y, for one eigen-direction h of X^T X: equal for every h and y iff lambda = lambda*; then tau_epoch =
    B/(eta lambda* N)."""
    h, y, lam_, N, s2, r2, B = sp.symbols("h y lambda N sigma2 r2 B", positive=True)
    dd = sp.Symbol("d", positive=True)
    ridge = (y / N) / (h / N + lam_)
    posterior = y / (h + s2 * dd / r2)
    sol = sp.solve(sp.Eq(ridge, posterior), lam_)
    lam_star = sol[0]
    return lam_star, sp.simplify(B / (eta * lam_star * N)), (s2, r2, dd, N, B)


def closed_forms():
    I = influence()
    return {"influence": I.args[-1][0] if isinstance(I, sp.Piecewise) else I}
