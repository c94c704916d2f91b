"""Item 12: AdamW under pure-noise gradients, exactly (the steady state behind the rotational
equilibrium, without the small-eta-lambda approximation).

Derived, not typed in: W_t = -eta sum_{j>=0} alpha^j m_{t-1-j} (stationary, alpha = 1 - eta lambda),
Cov(m_t, m_{t-k}) = beta^k (1-beta)/(1+beta) per coordinate (an EMA of unit noise, from a sympy
summation); E||W||^2 and E<W_t, m_t> are double / single geometric sums done by sympy (the double
sum split by the sign of j - k). The issue's stated forms are compared with the derived ones, and
the small-eta-lambda limit with R2.3 (eta d / (2 lambda)).
"""
from __future__ import annotations

import sympy as sp

from proofs_check.derivation import Derivation, compare

SRC = "issue 12 item 2 (AdamW pure-noise steady state), derived here"
SLIDE = "stationary AdamW under pure noise"
eta, lam, beta, d = sp.symbols("eta lambda beta d", positive=True)
al = sp.Symbol("alpha", positive=True)
j, k, n = sp.symbols("j k n", integer=True, nonnegative=True)
RANGES = {eta: (1e-3, 1.0), lam: (1e-3, 0.9), beta: (0.0, 0.99), al: (0.01, 0.999), d: (1.0, 1e3)}


def _sum(term, var):
    v = sp.summation(term, (var, 0, sp.oo))
    return v.args[0][0] if isinstance(v, sp.Piecewise) else v


def _branch(expr):
    """The convergent branch (alpha < 1, alpha beta < 1) of a Piecewise left by the summations."""
    expr = sp.simplify(expr)
    return sp.simplify(expr.args[0][0]) if isinstance(expr, sp.Piecewise) else expr


def ema_cov(lag):
    """Cov(m_t, m_{t-lag}) per coordinate for m = beta m + (1 - beta) xi, unit i.i.d. xi."""
    return sp.simplify((1 - beta) ** 2 * beta**lag * _sum(beta ** (2 * n), n))


def stationary_sq_norm():
    """E||W||^2 / (d eta^2) = sum_{j,k>=0} alpha^(j+k) Cov(m_{t-1-j}, m_{t-1-k}), split j = k, j > k (x2)."""
    c0 = ema_cov(0)
    diag = _sum(al ** (2 * j), j)                                   # j = k
    off = _sum(al ** (2 * k) * _sum(al**n * beta**n, n) * al * beta, k)   # j = k + 1 + n, n >= 0
    return _branch(c0 * (diag + 2 * off))


def stationary_cross():
    """E<W_t, m_t> / (d eta) = -sum_j alpha^j Cov(m_t, m_{t-1-j})."""
    return _branch(-_sum(al**j * ema_cov(j + 1), j))


def derivations():
    out = []
    S = stationary_sq_norm()
    stated = (1 - beta) / (1 + beta) * (1 + al * beta) / ((1 - al**2) * (1 - al * beta))
    st, m, disc = compare(d * eta**2 * stated, d * eta**2 * S, RANGES, "stationary, |alpha beta| < 1")
    out.append(Derivation("P12.norm", SLIDE, "AdamW, pure unit noise: E||W||^2 = d eta^2 (1-b)/(1+b) (1+alpha b)/"
                          "((1-alpha^2)(1-alpha b)), alpha = 1 - eta lambda", d * eta**2 * stated, d * eta**2 * S,
                          "u_t = m_t (v_hat = 1, eps = 0), noise independent of W", st, m, discrepancy=disc, source=SRC))
    # small eta lambda: -> eta d / (2 lambda) (R2.3)
    e = sp.Symbol("e", positive=True)                                # e = eta lambda, alpha = 1 - e
    ratio = sp.simplify((d * eta**2 * S).subs(al, 1 - e).subs(eta, e / lam) / ((e / lam) * d / (2 * lam)))
    lim = sp.limit(ratio, e, 0) * eta * d / (2 * lam)
    st, m, disc = compare(eta * d / (2 * lam), lim, RANGES, "leading order in eta lambda")
    out.append(Derivation("P12.limit", SLIDE, "as eta lambda -> 0, E||W||^2 -> eta d/(2 lambda) (R2.3, Kosson et al.)",
                          eta * d / (2 * lam), lim, "leading order in eta lambda", st, m, discrepancy=disc, source=SRC,
                          note="at finite eta lambda the ratio exact / R2.3 is 2 lambda eta (1-b)(1+alpha b)/((1+b)"
                               "(1-alpha^2)(1-alpha b)), e.g. 0.53 at eta lambda = 0.1, b = 0.9"))
    X = stationary_cross()
    cos = sp.simplify(X / sp.sqrt(S * ema_cov(0)))                   # E<W,m>/sqrt(E||W||^2 E||m||^2)
    stated_c = -beta * sp.sqrt((1 - al**2) / ((1 + al * beta) * (1 - al * beta)))
    st, m, disc = compare(stated_c, cos, RANGES, "stationary; high dimension (cosine of expectations)")
    out.append(Derivation("P12.cosine", SLIDE, "weight / Adam-direction cosine cos(W_t, u_t) = -b sqrt((1-alpha^2)/"
                          "((1+alpha b)(1-alpha b)))", stated_c, cos, "as P12.norm; u_t is subtracted by the step",
                          st, m, discrepancy=disc, source=SRC,
                          note=f"E<W_t, m_t>/(d eta) = {X}; the gradient step -eta u_t has the opposite sign"))
    return out


def closed_forms():
    return {"sq_norm_over_d_eta2": stationary_sq_norm(), "cross_over_d_eta": stationary_cross(),
            "ema_var": ema_cov(0)}
