"""Item 4: effective learning rate eta/||x||^2 (talk, "Existing Analysis for SGD on Scale
Invariant Loss").

Derived for a general scale-invariant loss in 2-D, L(x) = h(angle of x) with h an arbitrary
function: the gradient scaling grad L(x) = grad L(x_bar)/||x||, the exact norm update
||x - eta grad L(x)||^2 = ||x||^2 + eta^2 ||grad L(x_bar)||^2/||x||^2, and the new direction,
which agrees with one GD step on the sphere with LR eta/||x||^2 up to O(eta^2) (series in eta).
"""
from __future__ import annotations

import sympy as sp

from proofs_check.derivation import Derivation, is_zero
from proofs_check.symbols import S_ELR, eta


EFFECTIVE_LR = None   # (expression in eta, r = ||x||; the symbol r) after derivations() ran


def effective_lr_expr():
    """The effective LR read off the derived direction update, as (expr, r)."""
    if EFFECTIVE_LR is None:
        derivations()
    return EFFECTIVE_LR


def derivations():
    theta, r = sp.symbols("theta r", positive=True)
    h = sp.Function("h")
    x = sp.Matrix([r * sp.cos(theta), r * sp.sin(theta)])
    X1, X2 = sp.symbols("X1 X2", positive=True)
    L = h(sp.atan2(X2, X1))
    grad = sp.Matrix([sp.diff(L, X1), sp.diff(L, X2)]).subs({X1: x[0], X2: x[1]}).doit()
    grad = sp.simplify(grad)
    xbar = x / r
    grad_bar = sp.simplify(grad.subs(r, 1))    # grad L at the unit vector
    ok_grad = is_zero((grad - grad_bar / r).norm())
    x_new = x - eta * grad
    new_sq = sp.simplify(x_new.dot(x_new))
    exact_sq = r**2 + eta**2 * grad_bar.dot(grad_bar) / r**2
    ok_norm = is_zero(new_sq - exact_sq)
    dir_new = x_new / sp.sqrt(new_sq)
    sphere = xbar - (eta / r**2) * grad_bar
    first_order = [sp.simplify(sp.series(dir_new[i] - sphere[i], eta, 0, 2).removeO()) for i in range(2)]
    second = sp.simplify(sp.series(dir_new[0] - sphere[0], eta, 0, 3).removeO())
    ok_first = all(is_zero(v) for v in first_order)
    global EFFECTIVE_LR
    # d x_bar(t+1)/d eta at eta = 0 is -(eta_eff/eta) grad L(x_bar): read off eta_eff
    EFFECTIVE_LR = (eta * sp.simplify(sp.diff(dir_new[1], eta).subs(eta, 0) / (-grad_bar[1])), r)
    return [Derivation(
        "P4.effective_lr", S_ELR, "GD on scale-invariant L with LR eta == GD on x/||x|| with LR eta/||x||^2 (first order)",
        "effective LR eta/||x||^2",
        "grad L(x) = grad L(x_bar)/||x|| ((-1)-homogeneity); x_bar(t+1) = (x_bar - (eta/||x||^2) g)/sqrt(1 + (eta/||x||^2)^2 ||g||^2), "
        "g = grad L(x_bar); exact norm update ||x(t+1)||^2 = ||x||^2 + eta^2 ||g||^2/||x||^2",
        "L(c x) = L(x), x != 0", "pass" if (ok_grad and ok_norm and ok_first) else "fail",
        "symbolic for L = h(angle) in 2-D (h arbitrary): gradient scaling, exact norm, direction to O(eta^2)",
        note=f"the directions differ at second order: first coordinate difference = {second} (the renormalisation)")]
