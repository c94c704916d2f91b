"""Items 2-3: Ex 1 divergence threshold and Ex 2 / normalized MF (talk, "Our Hypothesis")."""
from __future__ import annotations

import sympy as sp

from proofs_check.derivation import Derivation, compare, is_zero

SLIDE_EX1 = 'slide "Our Hypothesis: k-homogeneity in Architecture", Ex 1'
SLIDE_EX2 = 'slide "Our Hypothesis: k-homogeneity in Architecture", Ex 2'


def ex1():
    out = []
    k = sp.Symbol("k", positive=True, integer=True)
    x, eta, Lp, X = sp.symbols("x eta Lp X", positive=True)   # Lp = L~'(X(0)) > 0 for X(0) > X*
    # L(x_1..x_2k) = L~(prod x_i); with all x_i = x:  dL/dx_i = L~'(X) prod_{j != i} x_j = Lp x^(2k-1)
    xs = sp.symbols("x1:5", positive=True)                  # check the gradient formula for 2k = 4
    Lt = sp.Function("Ltilde")
    grad1 = sp.diff(Lt(sp.Mul(*xs)), xs[0]).subs({xi: x for xi in xs}).doit()
    grad_formula = sp.Subs(sp.Derivative(Lt(X), X), X, x**4).doit() * x**3
    ok_grad = is_zero(grad1 - grad_formula)
    x_new = x - eta * Lp * x ** (2 * k - 1)
    # overshoot to the mirror point or beyond: x_new <= -x  <=>  eta >= 2 / (Lp x^(2k-2))
    eta_crit = sp.solve(sp.Eq(x_new, -x), eta)[0]
    derived = sp.simplify(eta_crit.subs(x, X ** (1 / (2 * k))))
    stated = 2 * X ** (1 / k - 1) / Lp
    status, method, disc = compare(stated, derived, {X: (1.1, 50.0), Lp: (0.01, 1.0), k: (2, 5)})
    out.append(Derivation(
        "P2.threshold", SLIDE_EX1, "GD on L~(x_1...x_2k), equal x_i(0), X(0) >= X*: diverges if eta >= 2 X(0)^(1/k-1)/|L~'(X(0))|",
        stated, derived, "x_i(0) = x > 0, X = x^(2k), L~'(X) > 0", status, method + (" ; gradient dL/dx_i = L~'(X) x^(2k-1) checked" if ok_grad else " ; GRADIENT CHECK FAILED"),
        note="x(1) = x (1 - eta L~'(X) X^(1-1/k)); the factor is <= -1 iff eta >= threshold", discrepancy=disc))
    # After the first overshoot: |x(1)| >= x, X(1) = x(1)^(2k) >= X(0) >= X*, and by convexity L~'(X(1)) >= L~'(X(0)),
    # so r(t) = eta L~'(X(t)) X(t)^(1-1/k) is non-decreasing: every later step overshoots again.
    r = sp.Symbol("r", positive=True)      # r = eta Lp X^(1-1/k)
    factor = sp.Abs(1 - r)
    X_ratio = factor ** (2 * k)             # X(1)/X(0) = |1 - r|^(2k)
    at_equality = sp.simplify(X_ratio.subs(r, 2))
    above = sp.simplify(X_ratio.subs({r: sp.Rational(21, 10), k: 2}))
    out.append(Derivation(
        "P2.keeps_diverging", SLIDE_EX1, "after the first overshoot the iterates keep diverging",
        "diverges for eta >= threshold",
        f"X(t+1)/X(t) = |1 - r_t|^(2k), r_t = eta L~'(X_t) X_t^(1-1/k) non-decreasing once X_t >= X* (convex L~); "
        f"at r = 2 the ratio is {at_equality} (2-cycle x -> -x, X constant), for r > 2 it is > 1 (e.g. r=2.1,k=2: {above})",
        "L~ convex, X(0) >= X*",
        ("erratum" if at_equality == 1 and above > 1 else "fail"), "symbolic",
        note="at eta exactly equal to the threshold GD neither converges nor diverges: x(t) = (-1)^t x(0), loss constant "
             "L~(X(0)) > L~(X*). Corrected: GD fails to converge for eta >= threshold and diverges for eta > threshold",
        discrepancy="boundary case eta = threshold only"))
    return out


def ex2():
    out = []
    a1, a2, b1, b2, cc, alpha, eta = sp.symbols("a1 a2 b1 b2 c alpha eta", positive=True)
    A, B = sp.Matrix([a1, a2]), sp.Matrix([b1, b2])
    Y = sp.Matrix([[sp.Rational(1, 2)] * 2] * 2)
    R = A * B.T - Y
    L = sp.Rational(1, 2) * sum(v**2 for v in R)
    gA = sp.Matrix([sp.diff(L, v) for v in (a1, a2)])
    gB = sp.Matrix([sp.diff(L, v) for v in (b1, b2)])
    ok = is_zero((gA - R * B).norm()) and is_zero((gB - R.T * A).norm())
    out.append(Derivation("P3.gradients", SLIDE_EX2, "gradients of L = 1/2||AB^T - Y||_F^2",
                          "grad_A = (AB^T - Y) B, grad_B = (AB^T - Y)^T A", f"grad_A = {sp.simplify(gA.T)}, grad_B = {sp.simplify(gB.T)}",
                          "A, B in R^(2x1)", "pass" if ok else "fail", "symbolic (differentiated entrywise)"))
    inv = is_zero(L.subs({a1: cc * a1, a2: cc * a2, b1: b1 / cc, b2: b2 / cc}, simultaneous=True) - L)
    # at the unbalanced init A=(alpha,0), B=(1/alpha,0): Hessian in B is alpha^2 I (-> stable LR <= 2/alpha^2),
    # while the gradient on a2 (the direction that must grow) is O(1/alpha)
    init = {a1: alpha, a2: 0, b1: 1 / alpha, b2: 0}
    HB = sp.hessian(L, (b1, b2)).subs(init)
    g_a2 = sp.simplify(sp.diff(L, a2).subs(init))
    per_step = sp.simplify(2 / alpha**2 * sp.Abs(g_a2))
    out.append(Derivation("P3.invariance", SLIDE_EX2, "L(cA, B/c) = L(A, B) and GD progress depends on alpha",
                          "GD cannot learn efficiently from the unbalanced init",
                          f"L(cA,B/c) - L(A,B) = 0: {inv}; at init Hess_B L = {HB.tolist()} so GD needs eta < 2/alpha^2; "
                          f"dL/da2 = {g_a2}, so a2 moves at most {per_step} per step",
                          "c > 0", "pass" if inv and is_zero(HB[0, 0] - alpha**2) else "fail", "symbolic",
                          note="the rescaling symmetry leaves L unchanged but not GD: the balanced point (1,1)/sqrt2 has bounded curvature, "
                               "the unbalanced one curvature alpha^2, so steps to progress on a2 grow polynomially in alpha"))
    # normalized MF is 0-homogeneous in A and in B separately
    M = A * B.T
    Ln = sp.Rational(1, 2) * sum(v**2 for v in (M / sp.sqrt(sum(m**2 for m in M)) - Y))
    invA = is_zero(Ln.subs({a1: cc * a1, a2: cc * a2}, simultaneous=True) - Ln)
    invB = is_zero(Ln.subs({b1: cc * b1, b2: cc * b2}, simultaneous=True) - Ln)
    out.append(Derivation("P3.normalized", 'slide "Ingredient 1" (normalized MF)', "normalized MF loss is 0-homogeneous in A and in B",
                          "L(cA, B) = L(A, c B) = L(A, B)", f"in A: {invA}, in B: {invB}", "c > 0",
                          "pass" if invA and invB else "fail", "symbolic"))
    return out


def derivations():
    return ex1() + ex2()
