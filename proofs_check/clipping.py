"""Item 7: relative global clipping (talk, "Ingredient 3: Global Relative Clipping"): clip the
gradient norm to sqrt(2 C lambda/eta) ||x||, C > 1.

Derived: (a) the C for which clipping never fires at the constant-sigma equilibrium of item 6
(||g||/||x|| = sqrt(lambda (2 - eta lambda)/eta) there); (b) the informal theorem "clipping =>
better norm convergence" as the one-step bound ||x(t+1)||^2/||x(t)||^2 <= (1 - eta lambda)^2 +
2 C eta lambda that clipping enforces (without it the ratio is unbounded).
"""
from __future__ import annotations

import sympy as sp

from proofs_check.derivation import Derivation, is_zero
from proofs_check.equilibrium import fixed_point
from proofs_check.symbols import S_I3, C, eta, lam, sigma


def clipped_growth_bound():
    """max ||x(t+1)||^2/||x(t)||^2 over clipped gradients ||g|| <= sqrt(2 C lam/eta) ||x||, g orthogonal to
    x (coordinates: x along e1, g along e2). Returns (bound, whether the map is increasing in ||g||^2)."""
    x2, g2 = sp.symbols("x2 g2", positive=True)                      # ||x||^2, ||g_clipped||^2
    v = sp.Matrix([(1 - eta * lam) * sp.sqrt(x2), -eta * sp.sqrt(g2)])
    new_sq = sp.expand(v.dot(v))
    growth = sp.simplify((new_sq / x2).subs(g2, 2 * C * lam / eta * x2))   # monotone in g2: max at the threshold
    return growth, bool(sp.diff(new_sq, g2).is_positive)


def derivations():
    out = []
    ratio = sp.simplify(sigma / fixed_point())     # ||g|| / ||x|| at the equilibrium
    Cmin = sp.solve(sp.Eq(ratio**2, 2 * C * lam / eta), C)[0]
    never_fires_all_C_gt_1 = sp.simplify(1 - Cmin).is_nonnegative
    out.append(Derivation(
        "P7.clip", S_I3, "relative global clipping at sqrt(2 C lambda/eta)||x|| never fires at the constant-sigma equilibrium (C > 1)",
        "C > 1", Cmin, "never fires iff C >= derived; 0 < eta lambda < 2",
        "pass" if (never_fires_all_C_gt_1 and is_zero(Cmin - (1 - eta * lam / 2))) else "fail",
        "symbolic (solved ||g||^2/||x||^2 = 2 C lambda/eta for C at the derived fixed point)",
        note="C >= 1 - eta lambda/2 suffices, so every C > 1 (the talk's condition) never fires; even C = 1 does not. "
             "With the talk's (sqrt(2)-too-large) equilibrium norm the bound would be (2 - eta lambda)/4"))
    growth, monotone = clipped_growth_bound()
    out.append(Derivation(
        "P7.growth", S_I3, "Thm (informal): relative global clipping => better norm convergence (bounded norm growth per step)",
        "better norm convergence", f"||x(t+1)||^2/||x(t)||^2 <= {sp.expand(growth)} with clipping; unbounded without",
        "L scale invariant (<x, g> = 0), clipped ||g|| <= sqrt(2 C lambda/eta) ||x||",
        "pass" if monotone and is_zero(growth - ((1 - eta * lam) ** 2 + 2 * C * eta * lam)) else "fail",
        "symbolic (norm map maximised over ||g|| <= threshold; it is increasing in ||g||^2)",
        note="for C = 2: <= 1 + 2 eta lambda + (eta lambda)^2 per step, so a heavy-tailed gradient cannot spike the norm"))
    return out
