"""Item 12: AdamW under pure-noise gradients, exactly (the steady state behind the rotational
equilibrium, without the small-eta-lambda approximation).

Derived, not typed in: W_t = -eta sum_{j>=0} alpha^j m_{t-1-j} (stationary, alpha = 1 - eta lambda),
Cov(m_t, m_{t-k}) = beta^k (1-beta)/(1+beta) per coordinate (an EMA of unit noise, from a sympy
summation); E||W||^2 and E<W_t, m_t> are double / single geometric sums done by sympy (the double
sum split by the sign of j - k). The issue's stated forms are compared with the derived ones, and
the small-eta-lambda limit with R2.3 (eta d / (2 lambda)).

P12.beta2 (Adam's finite beta2): u = m (1 + delta)^(-1/2), delta = v - 1 an EMA (weight 1 - beta2) of
h = g^2 - 1 (Gaussian: E h^2 = 2, E g^2 h = 2, E g h = 0). To second order in delta, E[u_a u_b] =
E[m_a m_b] (1 + (3/4) E delta^2 + (1/4) E delta_a delta_b) - (1/2)(E[m_a m_b delta_a] + E[m_a m_b delta_b]),
the last from the index the EMAs share (a sympy sum); terms of fourth cumulant order are O((1-beta2)^2).
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


def lag_sum(x):
    """G(x) = sum_{j,k>=0} alpha^(j+k) x^|j-k| (split j = k, j > k (x2))."""
    return _branch(_sum(al ** (2 * j), j) + 2 * _sum(al ** (2 * k) * _sum(al**n * x**n, n) * al * x, k))


b2 = sp.Symbol("beta2", positive=True)
l_ = sp.Symbol("l", integer=True, nonnegative=True)


def beta2_relative_change():
    """E||W||^2 (finite beta2) / E||W||^2 (v_hat = 1) - 1, first order in 1 - beta2 (module docstring)."""
    var_delta = sp.simplify((1 - b2) ** 2 * 2 * _sum(b2 ** (2 * n), n))          # E delta^2 (E h^2 = 2)
    # E[m_a m_b delta_a] / ((1-beta)^2 (1-beta2) E[g^2 h]) for a - b = l >= 0 and for b - a = l > 0:
    later = _branch(sp.piecewise_fold(_sum(beta ** (l_ + n) * beta**n * b2 ** (l_ + n), n)))   # delta at the later index
    earlier = _branch(sp.piecewise_fold(_sum(beta**n * beta ** (l_ + n) * b2**n, n)))         # ... at the earlier one
    coef = (1 - beta) ** 2 * (1 - b2) * 2
    # both orders of (a, b) appear in the symmetric double sum: -(1/2)(later + earlier) per lag l
    c0 = ema_cov(0)
    r, rs = beta, beta * b2
    for got, want in ((later, rs**l_), (earlier, r**l_)):      # i.e. x^l / (1 - beta^2 beta2): lag sums G(x)
        q = sp.expand_power_base(sp.powsimp(got * (1 - beta**2 * b2) / want, force=True), force=True)
        if sp.simplify(sp.powsimp(q, force=True)) != 1:
            raise AssertionError(f"EMA cross moment: {got} is not {want}/(1 - beta^2 beta2)")
    Gr, Grs = lag_sum(r), lag_sum(rs)
    second = c0 * (sp.Rational(3, 4) * var_delta * Gr + sp.Rational(1, 4) * var_delta * Grs)
    first = -sp.Rational(1, 2) * coef / (1 - beta**2 * b2) * (Grs + Gr)
    return sp.simplify((second + first) / (c0 * Gr))


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
    dev = beta2_relative_change()
    Gx = lambda x: (1 + al * x) / ((1 - al**2) * (1 - al * x))  # noqa: E731
    rho = Gx(beta * b2) / Gx(beta)
    stated_b = (1 - b2) * ((sp.Rational(3, 2) + rho / 2) / (1 + b2) - (1 - beta**2) * (1 + rho) / (1 - beta**2 * b2))
    st, m, disc = compare(stated_b, dev, {**RANGES, b2: (0.5, 0.9999)}, "stationary; Gaussian noise; first order in 1-beta2")
    out.append(Derivation("P12.beta2", SLIDE, "Adam's finite beta2 changes E||W||^2 by the factor 1 + (1-b2)[(3/2 + rho/2)/"
                          "(1+b2) - (1-b^2)(1+rho)/(1-b^2 b2)], rho = G(b b2)/G(b), G(x) = (1+alpha x)/((1-alpha^2)"
                          "(1-alpha x))", stated_b, dev, "first order in 1 - beta2; E g^4 = 3", st, m, discrepancy=disc,
                          source=SRC, note="v's fluctuation enlarges the update (Jensen), its correlation with the "
                                           "current gradient shrinks it; -0.87 % at eta lambda = 0.05, b = 0.9, b2 = 0.99"))
    return out


def closed_forms():
    return {"sq_norm_over_d_eta2": stationary_sq_norm(), "cross_over_d_eta": stationary_cross(),
            "ema_var": ema_cov(0)}
