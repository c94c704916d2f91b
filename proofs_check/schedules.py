"""Item 11: learning-rate schedules against the weight-decay equilibrium (Defazio 2025,
"Why Gradients Rapidly Increase Near the End of Training", arXiv 2506.02285).

Derived from the one-step norm maps, not typed in:

* SGD + WD, <x, g> = 0: s' = (1 - eta lambda)^2 s + eta^2 ||g||^2 (s = ||x||^2). Stationary s gives the
  exact ratio ||g||/||x|| = sqrt(lambda (2 - eta lambda)/eta); Defazio's sqrt(2 lambda/eta) is its
  leading order. With the corrected lambda_t = lambda eta_t/eta_max the leading-order ratio has no
  eta_t left in it.
* Continuous-time norm ODEs: with ||g|| = sigma/||x|| the increment of y = s^2 is, to first order in
  eta lambda, -4 eta lambda y + 2 sigma^2 eta^2 (linear in y!); AdamW's normalised update (long-run
  squared length d per step) gives s' - s = -2 eta lambda s + d eta^2.
* Adiabatic lag of y' = -c lambda eta(t) y + b eta(t)^2: y = y_qs (1 + eps), eps = -eta'/(c lambda eta^2).
* Lag onset for schedules that decay to 0: eps = 1/(c K a^2) (linear), ~ 8/(c pi^2 K a^3) (cosine),
  a = 1 - t/T, K = eta_max lambda T: exponents -1/2 and -1/3 in K.
"""
from __future__ import annotations

import sympy as sp

from proofs_check.derivation import Derivation, compare

SRC = "Defazio 2025 (arXiv 2506.02285)"
SLIDE = "Sec. 3 (steady-state ratio) / AdamC-SGDC correction"
eta, lam, sig, dim, s, y = sp.symbols("eta lambda sigma d s y", positive=True)
eta_max, K, a, c, b, t = sp.symbols("eta_max K a c b t", positive=True)
RANGES = {eta: (1e-3, 1.0), lam: (1e-4, 0.9), sig: (0.1, 10.0), dim: (1.0, 1e3), eta_max: (1e-3, 1.0),
          K: (1.0, 1e3), a: (1e-3, 1.0), c: (1.0, 4.0), b: (0.1, 10.0)}


def _d(id_, statement, stated, derived, assumptions, ranges=RANGES, note="", **kw):
    st, m, d = compare(stated, derived, ranges, assumptions)
    return Derivation(id_, SLIDE, statement, stated, derived, assumptions, st, m, note=note, discrepancy=d,
                      source=SRC, **kw)


def sgd_norm_map(s_, eta_, lam_, g_sq):
    """||(1 - eta lambda) x - eta g||^2 with <x, g> = 0, ||x||^2 = s_, ||g||^2 = g_sq."""
    return (1 - eta_ * lam_) ** 2 * s_ + eta_**2 * g_sq


def exact_ratio():
    """||g||/||x|| at a stationary SGD+WD norm: solve s = map(s) for ||g||^2 = r^2 s."""
    r = sp.Symbol("r", positive=True)
    sol = sp.solve(sp.Eq(sgd_norm_map(s, eta, lam, r**2 * s), s), r)
    return sp.simplify(sol[0])


def leading_order(expr):
    """Leading term of ``expr`` as eta lambda -> 0 at fixed lambda/eta (eta = e, lambda = k e, e -> 0)."""
    e, k = sp.symbols("e k", positive=True)
    lead = sp.limit(expr.subs({eta: e, lam: k * e}), e, 0)
    return sp.simplify(lead.subs(k, lam / eta))


def norm_odes():
    """First-order (in eta) increments of y = ||x||^4 (SGD, ||g|| = sigma/||x||) and s = ||x||^2
    (AdamW random walk, E||u||^2 = d per step in the long run): returned as (sgd_rhs, adamw_rhs)."""
    s_new = sgd_norm_map(s, eta, lam, sig**2 / s)
    inc_y = sp.expand(s_new**2 - s**2)                                    # y' - y, y = s^2
    ser = sp.series(inc_y, eta, 0, 3).removeO()
    sgd_rhs = sp.expand(ser.coeff(eta, 1) * eta + ser.coeff(eta, 2).subs(lam, 0) * eta**2)
    inc_s = sp.expand((1 - eta * lam) ** 2 * s + eta**2 * dim - s)
    adam_rhs = sp.expand(inc_s.coeff(eta, 1) * eta + inc_s.coeff(eta, 2).subs(lam, 0) * eta**2)
    return sgd_rhs.subs(s**2, y), adam_rhs


def adiabatic_eps():
    """y = y_qs + delta in y' = -c lam eta y + b eta^2 with delta' neglected: delta/y_qs."""
    et = sp.Function("eta")(t)
    y_qs = b * et / (c * lam)
    delta = -sp.diff(y_qs, t) / (c * lam * et)
    # full residual of the ODE at y_qs + delta: exactly d delta/dt (second order in eps)
    resid = sp.simplify(sp.diff(y_qs + delta, t) - (-c * lam * et * (y_qs + delta) + b * et**2) - sp.diff(delta, t))
    return sp.simplify(delta / y_qs), resid, et


def derivations():
    out = []
    r_exact = exact_ratio()
    out.append(_d("P11.ratio", "SGD+WD steady state of a normalized layer: ||g||/||x|| = sqrt(2 lambda/eta)",
                  sp.sqrt(2 * lam / eta), leading_order(r_exact),
                  "<x, g> = 0, stationary ||x||^2; leading order in eta lambda",
                  note=f"exact stationary ratio {r_exact} = sqrt(2 lambda/eta) sqrt(1 - eta lambda/2): the stated form "
                       "is its leading order (relative size -eta lambda/4 + O((eta lambda)^2))"))
    lam_t = lam * eta / eta_max
    r_corr = leading_order(r_exact.subs(lam, lam_t).subs(eta_max, sp.Symbol("M", positive=True) * eta))
    r_corr = sp.simplify(r_corr.subs(sp.Symbol("M", positive=True), eta_max / eta))
    out.append(_d("P11.corrected", "with lambda_t = lambda eta_t/eta_max (SGDC/AdamC) the steady ratio is "
                  "sqrt(2 lambda/eta_max), independent of eta_t", sp.sqrt(2 * lam / eta_max), r_corr,
                  "as P11.ratio, leading order; eta = eta_t",
                  note=f"d/d eta_t of the corrected leading-order ratio = {sp.simplify(sp.diff(r_corr, eta))}; "
                       f"the exact corrected ratio {sp.simplify(r_exact.subs(lam, lam_t))} drifts by sqrt(1 - lambda "
                       "eta_t^2/(2 eta_max)) only"))
    sgd_rhs, adam_rhs = norm_odes()
    out.append(_d("P11.ode_sgd", "SGD+WD, ||g|| = sigma/||x||: y = ||x||^4 obeys the LINEAR ODE "
                  "dy/dt = -4 lambda eta y + 2 sigma^2 eta^2 (continuous time, derived here)",
                  -4 * lam * eta * y + 2 * sig**2 * eta**2, sgd_rhs,
                  "one step = dt; terms O(eta^2 lambda^2 y) and O(eta^3) dropped",
                  note="from the exact map s' = (1 - eta lambda)^2 s + eta^2 sigma^2/s squared and expanded in eta"))
    out.append(_d("P11.ode_adamw", "AdamW (random walk, long-run E||u||^2 = d per step): s = ||x||^2 obeys "
                  "ds/dt = -2 lambda eta s + d eta^2 (derived here)", -2 * lam * eta * s + dim * eta**2, adam_rhs,
                  "random-walk model of the rotational equilibrium, terms O(eta^2 lambda^2 s) dropped"))
    s_star = sp.solve(sp.Eq(adam_rhs, 0), s)[0]
    out.append(_d("P11.adamw_ratio", "AdamW steady ratio on the constant-sigma toy: ||g||/||x|| = sigma/||x||^2 = "
                  "2 lambda sigma/(eta d) (derived here: ~ lambda/eta, not sqrt(lambda/eta) as for SGD)",
                  2 * lam * sig / (eta * dim), sp.simplify(sig / s_star), "fixed point of P11.ode_adamw, ||g|| = sigma/||x||"))
    eps, resid, et = adiabatic_eps()
    stated = -sp.diff(et, t) / (c * lam * et**2)
    st, m, d = ("pass", "symbolic: simplify(stated - derived) = 0", "") if sp.simplify(eps - stated) == 0 else \
        ("fail", "symbolic comparison failed", "")
    out.append(Derivation("P11.lag", SLIDE, "y' = -c lambda eta(t) y + b eta(t)^2 lags its quasi-static value "
                          "b eta/(c lambda) by y/y_qs - 1 = eps = -eta'/(c lambda eta^2) (first order, derived here)",
                          stated, eps, "delta' neglected (second order in eps)", st, m, source=SRC,
                          note=f"y_qs + delta solves the ODE up to d delta/dt (residual minus d delta/dt simplifies to {resid}); "
                               "d delta/dt is second order in eps"))
    # lag onset: linear and cosine decay to 0, a = 1 - t/T
    T = K / (eta_max * lam)
    lin = eta_max * a
    d_lin = eta_max / T                                   # -d eta/dt
    eps_lin = sp.simplify(d_lin / (c * lam * lin**2))
    out.append(_d("P11.onset_linear", "linear decay eta = eta_max (1 - t/T): eps = 1/(c K a^2), so the lag onset "
                  "a ~ K^(-1/2)", 1 / (c * K * a**2), eps_lin, "a = 1 - t/T, K = eta_max lambda T"))
    cos_ = eta_max * (1 - sp.cos(sp.pi * a)) / 2
    d_cos = eta_max * sp.pi / (2 * T) * sp.sin(sp.pi * a)
    eps_cos = sp.simplify(d_cos / (c * lam * cos_**2))
    lead = sp.simplify(sp.limit(eps_cos * a**3, a, 0))
    out.append(_d("P11.onset_cosine", "cosine decay eta = eta_max (1 + cos(pi t/T))/2: eps ~ 8/(c pi^2 K a^3) near "
                  "the end, so the lag onset a ~ K^(-1/3)", 8 / (c * sp.pi**2 * K), lead,
                  "a = 1 - t/T -> 0, K = eta_max lambda T", note=f"full form eps = {eps_cos}"))
    return out


def closed_forms():
    """Derived expressions keyed by name, for comparison with scaleinv.theory.defazio2025."""
    sgd_rhs, adam_rhs = norm_odes()
    return {"ratio_exact": exact_ratio(), "ratio_leading": leading_order(exact_ratio()), "ode_sgd": sgd_rhs,
            "ode_adamw": adam_rhs, "eps_linear": 1 / (c * K * a**2)}
