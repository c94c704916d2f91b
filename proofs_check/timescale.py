"""Item 13: weight decay sets a memory timescale (Wang & Aitchison 2024/25, arXiv 2405.13698).

Derived, not typed in: the change of W_{s+L} after a gradient perturbation delta at step s, when the
gradient does not depend on W, is a finite sum over the momentum's impulse response (1 - beta) beta^k
propagated by alpha = 1 - eta lambda per step; sympy sums it, and its decay rate per step for large L.
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
    return out


def closed_forms():
    I = influence()
    return {"influence": I.args[-1][0] if isinstance(I, sp.Piecewise) else I}
