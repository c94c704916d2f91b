"""Item 8: the GD+WD theorem -- descent-lemma step and the T0 bound's log dependence
(talk, "Convergence Results for GD + WD"; paper Thm 4.1)."""
from __future__ import annotations

import numpy as np
import sympy as sp

from proofs_check.derivation import Derivation, compare

from proofs_check.symbols import S_GD


def _rayleigh(A):
    """L(x) = x^T A x / (2 x^T x): scale invariant; returns (L, grad, hess) callables."""
    def L(x):
        return 0.5 * x @ A @ x / (x @ x)

    def grad(x):
        n2 = x @ x
        return (A @ x - 2 * L(x) * x) / n2

    def hess(x):
        n2 = x @ x
        g = grad(x)
        return (A - 2 * L(x) * np.eye(len(x)) - 2 * (np.outer(g, x) + np.outer(x, g))) / n2 - 0  # (-2)-homogeneous
    return L, grad, hess


def _rayleigh_hessians(A, X):
    """The Hessians of x^T A x / (2 x^T x) (``hess`` of :func:`_rayleigh`) at every row of X, as one
    array [n, d, d] (the same formula, vectorised over the rows)."""
    n2 = np.einsum("ni,ni->n", X, X)
    L = 0.5 * np.einsum("nj,nj->n", X @ A, X) / n2
    G = (X @ A.T - 2 * L[:, None] * X) / n2[:, None]
    outer = G[:, :, None] * X[:, None, :] + X[:, :, None] * G[:, None, :]
    return (A[None] - 2 * L[:, None, None] * np.eye(A.shape[0])[None] - 2 * outer) / n2[:, None, None]


def descent_lemma_numeric(n_problems=20, n_points=200, seed=0):
    """Check L(x) - L(x') >= eta (1 - 2 rho eta/||x||^2) ||grad L(x)||^2, x' = (1-eta lam) x - eta grad L(x),
    on random Rayleigh quotients; rho = sup over the unit sphere of ||Hess L|| (estimated from above
    by its analytic bound max|eig(A)| * 4, then tightened by sampling, see note)."""
    rng = np.random.default_rng(seed)
    worst, checked = np.inf, 0
    for _ in range(n_problems):
        d = int(rng.integers(2, 8))
        M = rng.standard_normal((d, d))
        A = (M + M.T) / 2
        L, grad, hess = _rayleigh(A)
        # rho: max spectral norm of the Hessian over many unit vectors (sampled sup, a lower estimate
        # of the true sup -- using it makes the checked inequality harder, not easier, to satisfy)
        us = rng.standard_normal((4000, d))
        us /= np.linalg.norm(us, axis=1, keepdims=True)
        rho = float(np.max(np.linalg.norm(_rayleigh_hessians(A, us), 2, axis=(1, 2))))
        for _ in range(n_points):
            x = rng.standard_normal(d) * 10 ** rng.uniform(-2, 2)
            lam = 10 ** rng.uniform(-4, 0)
            eta = 10 ** rng.uniform(-4, 0) * (x @ x) / rho
            if eta * lam > 0.5:
                eta = 0.5 / lam
            g = grad(x)
            lhs = L(x) - L((1 - eta * lam) * x - eta * g)
            rhs = eta * (1 - 2 * rho * eta / (x @ x)) * (g @ g)
            worst = min(worst, (lhs - rhs) / max(abs(rhs), 1e-300))
            checked += 1
    return worst, checked


T0_SLOPE = {}   # dT0/d ln||x0||^2: "exact" (WD decay (1 - eta lambda)^(2t)) and "leading" order, in eta, lambda


def derivations():
    out = []
    worst, n = descent_lemma_numeric()
    # symbolic part: the WD factor does not change L; with eta' = eta/(1 - eta lam) in [eta, 2 eta] (eta lam <= 1/2)
    # the standard descent lemma with smoothness rho/||x||^2 gives eta'(1 - rho eta'/(2||x||^2)); show it dominates
    e, ep, rho, r2 = sp.symbols("eta eta_p rho r2", positive=True)
    h = ep * (1 - rho * ep / (2 * r2))
    stated = e * (1 - 2 * rho * e / r2)
    gap_lo = sp.simplify(h.subs(ep, e) - stated)        # eta' = eta
    gap_hi = sp.simplify(h.subs(ep, 2 * e) - stated)    # eta' = 2 eta; h concave in eta' => min at the ends
    concave = sp.diff(h, ep, 2).is_negative     # h concave in eta' => its min over [eta, 2 eta] is at an end
    ok_sym = concave and all(sp.simplify(g_).is_nonnegative for g_ in (gap_lo, gap_hi))
    out.append(Derivation(
        "P8.descent", S_GD, "L(x(t)) - L(x(t+1)) >= eta (1 - 2 rho eta/||x(t)||^2) ||grad L(x(t))||^2 (GD+WD, eta lambda <= 1/2)",
        stated * sp.Symbol("g2"), f"eta'(1 - rho eta'/(2||x||^2)) ||g||^2 with eta' = eta/(1-eta lambda) in [eta, 2eta]; "
        f"minus stated at the ends: {gap_lo}, {gap_hi} (both >= 0)",
        "L scale invariant, rho = sup_{||x||=1} ||Hess L||, eta lambda <= 1/2; the step is orthogonal so the segment stays at norm >= ||x||",
        "pass" if (ok_sym and worst >= -1e-9) else "fail",
        f"symbolic bound chain + NUMERIC check on {n} random (x, eta, lambda) of 20 random Rayleigh quotients x^T A x/(2||x||^2)",
        note=f"numeric: min over points of (LHS - RHS)/|RHS| = {worst:.3g} (>= 0 means the inequality held everywhere)"))
    # T0: the norm decays like (1 - eta lam)^(2t) from ||x0||^2 to O(rho eta); solve for t
    t, x0, K, lam, s = sp.symbols("t x0sq K lambda s", positive=True)
    # (1 - eta lam)^(2t) x0 = K eta, in logs (real branch): 2 t ln(1 - eta lam) + ln x0 = ln(K eta)
    t_sol = sp.solve(sp.Eq(2 * t * sp.log(1 - e * lam) + sp.log(x0), sp.log(K * e)), t)[0]
    lead = sp.limit(t_sol * e * lam, lam, 0)            # leading behaviour as eta lambda -> 0
    stated_lead = sp.log(x0 / e) / 2                    # (1/(2 eta lam)) ln(||x0||^2/eta), times eta lam
    exact_slope = sp.simplify(sp.diff(t_sol, x0) * x0)              # dT0 / d ln||x0||^2
    T0_SLOPE.update(exact=exact_slope, leading=sp.limit(exact_slope * e * lam, lam, 0) / (e * lam))
    slope_series = sp.series(exact_slope.subs(lam, s / e), s, 0, 1).removeO()
    status, method, disc = compare(stated_lead, sp.expand_log(lead, force=True).subs(K, 1), {x0: (1e2, 1e8), e: (1e-3, 1.0)})
    out.append(Derivation(
        "P8.T0", S_GD, "T0 <~ (1/(2 eta lambda)) |ln(||x(0)||^2/eta)|",
        stated_lead / (e * lam), sp.simplify(t_sol),
        "norm decay phase from a large init ||x0||^2 >> eta; K = O(rho) the target ||x||^2/eta",
        status, method + " (leading order in eta lambda, K = 1)",
        note=f"time for (1-eta lambda)^(2t) ||x0||^2 = K eta; times eta lambda -> {lead} as eta lambda -> 0: slope 1/(2 eta lambda) in "
             "ln||x0||^2 as stated; the constant ln K (paper: ln(rho pi^2) + 3) is hidden by '<~'. For a tiny init the first step "
             f"sets ||x1||^2 ~ eta^2||g||^2/||x0||^2, hence the absolute value. Exact slope dT0/d ln||x0||^2 = {exact_slope} "
             f"= {slope_series} + O(eta lambda) (s = eta lambda)", discrepancy=disc))
    return out
