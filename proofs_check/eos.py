"""Item 14: edge of stability of GD + WD on a scale-invariant loss (Lyu, Li, Arora, NeurIPS 2022).

Derived: (a) GD on a quadratic with curvature h contracts iff |1 - eta h| < 1, i.e. eta h < 2;
(b) the Hessian of a scale-invariant L is 1/||x||^2 times its value at x_bar (symbolic, on the valley
toy of toyproblems.claims_eos: L(x) = (1/2) xb3^2 (1 + c xb1^2), xb = x/||x||); its top eigenvalue at a
minimiser (x1, x2, 0) is (1 + c x1^2/r^2)/r^2 (r = ||x||), so the sphere sharpness 1 + c xb1^2 is
lowest (= 1) at xb1 = 0; (c) the onset time t* of the edge of stability under weight decay alone.
"""
from __future__ import annotations

import sympy as sp

from proofs_check.derivation import Derivation, compare

SRC = "Lyu, Li, Arora, NeurIPS 2022 (arXiv 2206.07085); toy and onset derived here"
SLIDE = "GD + WD at the edge of stability"
eta, h, c, lam, s0, S = sp.symbols("eta h c lambda s0 S", positive=True)
x1, x2, x3 = sp.symbols("x1 x2 x3", real=True)
t = sp.Symbol("t", positive=True)


def valley_loss():
    r = sp.sqrt(x1**2 + x2**2 + x3**2)
    return sp.Rational(1, 2) * (x3 / r) ** 2 * (1 + c * (x1 / r) ** 2)


def derivations():
    out = []
    stable = sp.solve_univariate_inequality(sp.Abs(1 - eta * h) < 1, eta, relational=False)
    out.append(Derivation("P14.stability", SLIDE, "GD on a quadratic with curvature h contracts iff eta h < 2",
                          "(0, 2/h)", str(stable), "h > 0", "pass" if stable == sp.Interval.open(0, 2 / h) else "fail",
                          "symbolic (solve_univariate_inequality)", source=SRC))
    Lv = valley_loss()
    Hs = sp.hessian(Lv, (x1, x2, x3)).subs(x3, 0)
    eig = sp.simplify(Hs[2, 2])                                    # H is diagonal in x3 at x3 = 0
    r2 = x1**2 + x2**2
    off = [sp.simplify(Hs[i, j]) for i in range(3) for j in range(3) if (i, j) != (2, 2)]
    st, m, d = compare((1 + c * x1**2 / r2) / r2, eig, {x1: (0.1, 2.0), x2: (0.1, 2.0), c: (0.1, 5.0)},
                       "minimiser x3 = 0")
    out.append(Derivation("P14.valley_sharpness", SLIDE, "valley toy L = (1/2) xb3^2 (1 + c xb1^2): at a minimiser "
                          "(x1, x2, 0) the only nonzero Hessian eigenvalue is (1 + c x1^2/r^2)/r^2 (sphere sharpness "
                          "1 + c xb1^2 over ||x||^2)", (1 + c * x1**2 / r2) / r2, eig, "x3 = 0", st, m, discrepancy=d,
                          source=SRC, note=f"other Hessian entries at x3 = 0: {set(off)}"))
    q = sp.Symbol("q", positive=True)                       # q = 1 - eta lambda in (0, 1)
    stated = sp.log(2 * s0 / (eta * S)) / (-2 * sp.log(q))
    at_onset = sp.simplify(sp.powsimp(eta * S / (s0 * q ** (2 * stated)), force=True))
    # derived independently of the stated expression (issue 27: the derived column was the stated one): solve
    # eta S / (s0 q^(2t)) = 2 for t (the real root); fails if the stated onset differs from the solution
    onset = [r for r in sp.solve(sp.Eq(eta * S / (s0 * q ** (2 * t)), 2), t) if not r.has(sp.I)]
    if len(onset) != 1:
        raise RuntimeError(f"P14.onset: expected one real root, got {onset}")
    onset = onset[0]
    st, m, d = compare(stated, onset, {eta: (1e-3, 0.5), q: (0.5, 0.999), s0: (0.5, 5.0), S: (0.1, 2.0)},
                       "0 < q = 1 - eta lambda < 1; t solved from eta S/(s0 q^(2t)) = 2")
    out.append(Derivation("P14.onset", SLIDE, "on the manifold (gradient 0) WD alone gives ||x_t||^2 = s0 (1-eta lambda)^(2t); "
                          "eta S/||x_t||^2 reaches 2 after ln(2 s0/(eta S))/(-2 ln(1 - eta lambda)) steps",
                          stated, onset, "derived here", st, m, discrepancy=d, source=SRC,
                          note=f"derived = sympy.solve(eta S/(s0 q^(2t)) = 2, t) (q = 1 - eta lambda); at the stated t, "
                               f"eta S / ||x_t*||^2 simplifies to {at_onset}; fails if the stated expression is not "
                               "that root"))
    return out
