"""Item 2: Ex 1 of the talk -- GD on L(x_1..x_2k) = L~(x_1 ... x_2k) (slide "Our Hypothesis:
k-homogeneity in Architecture").

Definitions: L~ : R -> R convex with bounded smoothness and minimizer X* > 0; X = x_1 ... x_2k;
all x_i(0) = x equal (so they stay equal under GD, by symmetry) and X(0) >= X*.

Derivation: dL/dx_i = L~'(X) prod_{j != i} x_j, which at equal coordinates is L~'(X) x^(2k-1)
(derived by sympy for 2k = 4, 6, 8 from the product, not typed in). One GD step is
x(1) = x (1 - r), r = eta L~'(X) x^(2k-2) = eta L~'(X) X^(1 - 1/k). GD overshoots to the mirror
point or beyond (|x(1)| >= |x|) iff r >= 2, which is solved for eta.
"""
from __future__ import annotations

import sympy as sp

from proofs_check.derivation import Derivation, compare, is_zero

SLIDE_EX1 = 'slide "Our Hypothesis: k-homogeneity in Architecture", Ex 1'

# symbol names are part of the interface (notebooks evaluate P2.threshold at X, k, Lp)
k = sp.Symbol("k", positive=True, integer=True)
x, eta, Lp, X = sp.symbols("x eta Lp X", positive=True)       # Lp = L~'(X(0)) > 0 for X(0) > X*


def gradient_at_equal_coords(two_k: int) -> sp.Expr:
    """dL/dx_1 of L = L~(x_1 ... x_2k) at x_1 = ... = x_2k = x, derived by sympy; L~' -> Lp."""
    xs = sp.symbols(f"x1:{two_k + 1}", positive=True)
    Lt = sp.Function("Ltilde")
    g = sp.diff(Lt(sp.Mul(*xs)), xs[0]).subs({xi: x for xi in xs}).doit()
    return g.replace(lambda e: isinstance(e, sp.Subs) or isinstance(e, sp.Derivative), lambda e: Lp)


def threshold_rows():
    out = []
    grads = {kk: gradient_at_equal_coords(2 * kk) for kk in (2, 3, 4)}
    grad_ok = all(is_zero(g - Lp * x ** (2 * kk - 1)) for kk, g in grads.items())
    # per-k thresholds straight from the sympy gradient: solve x - eta g = -x
    per_k = {kk: sp.simplify(sp.solve(sp.Eq(x - eta * g, -x), eta)[0].subs(x, X ** sp.Rational(1, 2 * kk)))
             for kk, g in grads.items()}
    stated = 2 * X ** (1 / k - 1) / Lp
    per_k_ok = all(compare(stated.subs(k, kk), d)[0] == "pass" for kk, d in per_k.items())
    # general k, with the gradient form verified above
    eta_crit = sp.solve(sp.Eq(x - eta * Lp * x ** (2 * k - 1), -x), eta)[0]
    derived = sp.simplify(eta_crit.subs(x, X ** (1 / (2 * k))))
    status, method, disc = compare(stated, derived, {X: (1.1, 50.0), Lp: (0.01, 1.0), k: (2, 5)})
    if not (grad_ok and per_k_ok):
        status, method = "fail", method + "; GRADIENT / PER-k CHECK FAILED"
    out.append(Derivation(
        "P2.threshold", SLIDE_EX1,
        "GD on L~(x_1...x_2k), equal x_i(0), X(0) >= X*: first step overshoots (|x(1)| >= |x(0)|) iff eta >= 2 X(0)^(1/k-1)/|L~'(X(0))|",
        stated, derived, "x_i(0) = x > 0, X = x^(2k), L~'(X(0)) > 0 (X(0) > X*)", status,
        method + "; gradient L~'(X) x^(2k-1) and the threshold derived from the product for k = 2, 3, 4",
        note="x(1) = x (1 - r), r = eta L~'(X) X^(1-1/k); |1 - r| >= 1 iff r >= 2. At X(0) = X* the gradient "
             "vanishes (threshold = infinity, GD stays at the minimum)", discrepancy=disc))
    return out


def keeps_diverging_rows():
    """After the first overshoot: X(t+1)/X(t) = |1 - r_t|^(2k) and r(X) = eta L~'(X) X^(1-1/k) is
    non-decreasing on X >= X* (L~' >= 0 non-decreasing by convexity; X^(1-1/k) increasing for
    k > 1). So r_0 >= 2 implies X(1) >= X(0), r_1 >= r_0 >= 2, ... by induction. At r_0 = 2
    exactly, X(1) = X(0) and the iterates 2-cycle x -> -x: the statement "diverges if LR >=" is
    not exact at equality. Backed by exact rational iteration on L~(X) = (X - 1)^2/2, k = 2,
    x(0) = 2 (threshold 1/30)."""
    r = sp.Symbol("r", positive=True)
    ratio = sp.Abs(1 - r) ** (2 * k)                              # X(t+1)/X(t)
    at_eq = sp.simplify(ratio.subs(r, 2))
    above = sp.simplify(ratio.subs({r: sp.Rational(201, 100), k: 2}))
    mono = sp.simplify(sp.diff(X ** (1 - 1 / k), X)).is_positive is not False and \
        sp.simplify(sp.diff(X ** (1 - 1 / k), X).subs(k, 2)).is_positive
    # exact demo: L~(X) = (X-1)^2/2 (convex, L~'' = 1, X* = 1), k = 2, x(0) = 2
    Xs = sp.Symbol("Xs")
    Lt = (Xs - 1) ** 2 / 2
    dLt = sp.diff(Lt, Xs)
    x0 = sp.Integer(2)
    thr = sp.nsimplify(2 * (x0**4) ** (sp.Rational(1, 2) - 1) / dLt.subs(Xs, x0**4))

    def run(eta_, steps, exact=False):
        xs = [x0 if exact else 2.0]
        e_ = eta_ if exact else float(eta_)
        for _ in range(steps):
            xv = xs[-1]
            xs.append(xv - e_ * (xv**4 - 1) * xv**3)          # L~'(X) = X - 1 at X = x^4
            if abs(xs[-1]) > 10**6:
                break
        return xs

    assert is_zero(dLt - (Xs - 1))

    at = run(thr, 6, exact=True)   # exact rationals (cheap: the orbit is 2, -2, 2, ...)
    two_cycle = at == [x0, -x0] * 3 + [x0]
    # stability of the 2-cycle: the GD map f(x) = x - eta L~'(x^(2k)) x^(2k-1) is odd, so the
    # cycle's per-step multiplier is f'(x0); at eta = threshold, with general L~ (Lp = L~'(X),
    # Lpp = L~''(X)), f'(x0) = -(4k(1 + X Lpp/Lp) - 3): |f'| > 1, a repelling (unstable) cycle
    # f'(x0) needs only L~'(X0) = Lp and L~''(X0) = Lpp, so a locally linear L~' is exact here
    Lpp = sp.Symbol("Lpp", nonnegative=True)
    xx = sp.Symbol("xx", positive=True)
    Xsym = xx ** (2 * k)
    y = sp.Symbol("y", positive=True)
    f_gen = y - eta * (Lp + Lpp * (y ** (2 * k) - Xsym)) * y ** (2 * k - 1)
    fp_thr = sp.diff(f_gen, y).subs(y, xx).subs(eta, 2 / (Lp * xx ** (2 * k - 2)))
    mult_formula = -(4 * k * (1 + Xsym * Lpp / Lp) - 3)
    unstable_general = sp.simplify(sp.expand(fp_thr - mult_formula)) == 0
    f_demo = sp.Symbol("xd") - thr * (sp.Symbol("xd") ** 4 - 1) * sp.Symbol("xd") ** 3
    mult_demo = sp.diff(f_demo, sp.Symbol("xd")).subs(sp.Symbol("xd"), x0)
    unstable_demo = mult_demo == -(8 * (1 + x0**4 * 1 / (x0**4 - 1)) - 3) and abs(mult_demo) > 1
    hi = run(thr * sp.Rational(101, 100), 12)
    diverged = abs(hi[-1]) > 10**6 and all(abs(hi[i + 1]) > abs(hi[i]) for i in range(len(hi) - 1))
    lo = run(thr * sp.Rational(99, 100), 200)
    converged = abs(abs(lo[-1]) - 1) < 1e-6                        # X -> X* = 1
    ok = at_eq == 1 and above > 1 and mono and two_cycle and diverged and converged and unstable_general and unstable_demo
    return [Derivation(
        "P2.keeps_diverging", SLIDE_EX1, "after the first overshoot the iterates keep diverging; 'diverges if LR >= threshold'",
        "diverges for eta >= threshold",
        f"X(t+1)/X(t) = |1 - r_t|^(2k), r_t non-decreasing once X_t >= X*; at r = 2 the ratio is {at_eq} "
        f"(2-cycle), for r > 2 it is > 1 (r = 2.01, k = 2: {above})",
        "L~ convex, X(0) >= X*, k >= 2", "erratum" if ok else "fail",
        f"symbolic + exact rational GD on L~ = (X-1)^2/2, k = 2, x(0) = 2, threshold {thr}: at the threshold "
        f"x(t) = {[int(v) for v in at[:4]]}... (exact 2-cycle: {two_cycle}; multiplier f'(x0) = {mult_demo} = -(4k(1 + X L~''/L~') - 3), derived for general L~: "
        f"{unstable_general}, so the cycle is repelling); at 1.01x threshold (float64) |x| grows every step to "
        f"{float(abs(hi[-1])):.3g} in {len(hi) - 1} steps; at 0.99x threshold |x(200)| = {abs(lo[-1]):.6g} (converged to X* = 1)",
        note="below the threshold GD may still converge (the condition is sufficient, not necessary)",
        corrected="GD fails to converge for eta >= threshold and diverges for eta > threshold; at eta = threshold "
                  "exactly x(t) = (-1)^t x(0), the loss stays at L~(X(0)) > L~(X*); that 2-cycle is repelling "
                  "(per-step multiplier -(4k(1 + X L~''/L~') - 3), |.| >= 5), i.e. numerically unstable: in floating "
                  "point rounding leaves it within a few dozen steps (verify row C2.at_threshold)",
        discrepancy="boundary case eta = threshold only (X(t) constant instead of -> infinity)")]


def unbounded_smoothness_rows():
    """Talk: "L(x_1..x_2k) = L~(X) => L has unbounded smoothness" although L~ has bounded smoothness:
    the Hessian of L at x_i = c grows without bound as c -> infinity (here L~ = (X-1)^2/2, k = 2)."""
    c = sp.Symbol("c", positive=True)
    xs = sp.symbols("x1:5", positive=True)
    Xp = sp.Mul(*xs)
    L = (Xp - 1) ** 2 / 2
    H = sp.hessian(L, xs).subs({xi: c for xi in xs})
    lead = sp.simplify(H[0, 0])
    lim = sp.limit(lead, c, sp.oo)
    return [Derivation("P2.unbounded", SLIDE_EX1, "L = L~(x_1...x_2k) has unbounded smoothness (L~ smooth, k >= 2)",
                       "unbounded", f"d^2L/dx_1^2 at x_i = c: {lead} -> {lim} as c -> oo", "L~ = (X-1)^2/2, k = 2",
                       "pass" if lim == sp.oo else "fail", "symbolic limit (example)")]


def derivations():
    return threshold_rows() + keeps_diverging_rows() + unbounded_smoothness_rows()
