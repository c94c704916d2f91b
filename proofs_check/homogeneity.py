"""Item 1: k-homogeneity lemma, Euler's theorem, norm growth of GD on scale-invariant losses,
(-2)-homogeneous Hessian, unbounded smoothness for k >= 3, the descent lemma's LR < 2/smoothness,
and the 0-homogeneity of SIBERT's attention score (talk, "Our Hypothesis" and "Ingredient 1").

Definitions used: f is k-homogeneous iff f(c x) = c^k f(x) for all c > 0. Every check below
substitutes x -> c x into a derived expression (a gradient, a Hessian, an updated norm) and
simplifies -- the homogeneity degree is never assumed, only the definition.
"""
from __future__ import annotations

import sympy as sp

from proofs_check.derivation import Derivation, is_zero

c = sp.Symbol("c", positive=True)
SLIDE_H = 'slide "Our Hypothesis: k-homogeneity in Architecture"'
SLIDE_I1 = 'slide "Ingredient 1: Scale Invariant Architecture"'


def _examples():
    """(name, variables, f, k): k-homogeneous examples in 2 and 3 dimensions."""
    x1, x2, x3 = sp.symbols("x1 x2 x3", positive=True)
    r2 = sp.sqrt(x1**2 + x2**2)
    r3 = sp.sqrt(x1**2 + x2**2 + x3**2)
    return [
        ("x1^2 x2 (k=3, d=2)", (x1, x2), x1**2 * x2, 3),
        ("x1 x2 x3 (k=3, d=3)", (x1, x2, x3), x1 * x2 * x3, 3),
        ("x1^4 + x2^3 x3 (k=4, d=3)", (x1, x2, x3), x1**4 + x2**3 * x3, 4),
        ("(x1^2+x2^2)^(5/4) (k=5/2, d=2)", (x1, x2), r2 ** sp.Rational(5, 2), sp.Rational(5, 2)),
        ("x1 x2 / (x1^2+x2^2) (k=0, d=2)", (x1, x2), x1 * x2 / r2**2, 0),
        ("x1/|x| + x2 x3/|x|^2 (k=0, d=3)", (x1, x2, x3), x1 / r3 + x2 * x3 / r3**2, 0),
        ("x1^2/x2 + x3 (k=1, d=3)", (x1, x2, x3), x1**2 / x2 + x3, 1),
    ]


def _scaled(expr, xs):
    return expr.subs({x: c * x for x in xs}, simultaneous=True)


def derivations():
    out = []
    # (a) general argument for an ARBITRARY f of 2 variables: differentiate both sides of f(c x) = c^k f(x)
    # l times (sympy's chain rule), solve for the derivative of f evaluated at c x, divide by it at x
    kk = sp.Symbol("k", real=True)
    x1, x2 = sp.symbols("x1 x2", positive=True)
    f = sp.Function("f")
    lhs, rhs = f(c * x1, c * x2), c**kk * f(x1, x2)
    found, ok_gen = {}, True
    for order in ((x1,), (x1, x2), (x1, x1), (x1, x1, x2)):
        dl, dr = sp.diff(lhs, *order), sp.diff(rhs, *order)
        at_cx = list(dl.atoms(sp.Subs))                  # (d^l f)(c x): the unknown
        U = sp.Symbol("U")
        sol = sp.solve(sp.Eq(dl.subs(at_cx[0], U), dr), U) if len(at_cx) == 1 else []
        factor = sp.simplify(sol[0] / sp.diff(f(x1, x2), *order)) if sol else None
        found[len(order)] = factor
        ok_gen &= factor is not None and is_zero(factor - c ** (kk - len(order)))
    out.append(Derivation(
        "P1.lemma.general", SLIDE_H, "f k-homogeneous => grad^l f is (k-l)-homogeneous (general argument)",
        "grad^l f is (k-l)-homogeneous",
        "differentiating f(c x) = c^k f(x) l times and solving for (d^l f)(c x) gives (d^l f)(c x) / d^l f(x) = "
        + ", ".join(f"{v} (l={l_})" for l_, v in sorted(found.items())),
        "c > 0, f l times differentiable (f an undefined sympy function of 2 variables)", "pass" if ok_gen else "fail",
        "symbolic, l = 1, 2 (mixed and pure), 3; the converse (l = 1 => f) follows by integrating Euler's identity"))
    # (b) examples: grad^l f(c x) = c^(k-l) grad^l f(x), l = 1, 2; Euler; Hessian of 0-homog is (-2)-homog
    lemma_ok, euler_ok, hess0_ok, names = True, True, True, []
    for name, xs, fx, k in _examples():
        names.append(name)
        g = [sp.diff(fx, x) for x in xs]
        H = sp.hessian(fx, xs)
        lemma_ok &= all(is_zero(_scaled(gi, xs) - c ** (k - 1) * gi) for gi in g)
        lemma_ok &= all(is_zero(_scaled(H[i, j], xs) - c ** (k - 2) * H[i, j]) for i in range(len(xs)) for j in range(len(xs)))
        # Euler derived by differentiating f(c x) = c^k f(x) in c at c = 1
        euler_lhs = sp.diff(_scaled(fx, xs), c).subs(c, 1)
        euler_ok &= is_zero(euler_lhs - sum(x * gi for x, gi in zip(xs, g))) and is_zero(euler_lhs - k * fx)
        if k == 0:
            hess0_ok &= all(is_zero(_scaled(H[i, j], xs) - c ** (-2) * H[i, j]) for i in range(len(xs)) for j in range(len(xs)))
    out.append(Derivation("P1.lemma.examples", SLIDE_H, "grad^l f(c x) = c^(k-l) grad^l f(x) for l = 1, 2 on 7 examples",
                          "(k-l)-homogeneous", "verified for: " + "; ".join(names), "c > 0, x > 0",
                          "pass" if lemma_ok else "fail", "symbolic on examples"))
    out.append(Derivation("P1.euler", SLIDE_I1, "Euler: <x, grad f(x)> = k f(x)", "<x, grad f> = k f",
                          "d/dc f(c x)|_{c=1} = <x, grad f(x)> and d/dc c^k f(x)|_{c=1} = k f(x)", "f differentiable, c > 0",
                          "pass" if euler_ok else "fail", "symbolic on the 7 examples"))
    out.append(Derivation("P1.hessian0", SLIDE_I1, "0-homogeneous loss => Hessian is (-2)-homogeneous",
                          "grad^2 L(c x) = c^-2 grad^2 L(x)", "lemma with k = 0, l = 2", "c > 0",
                          "pass" if hess0_ok else "fail", "symbolic on the k=0 examples"))
    # (c) ||x - eta grad L||^2 = ||x||^2 + eta^2 ||grad L||^2 for scale-invariant L
    x1, x2, x3 = sp.symbols("x1 x2 x3", positive=True)
    eta = sp.Symbol("eta", positive=True)
    xs = (x1, x2, x3)
    r = sp.sqrt(x1**2 + x2**2 + x3**2)
    L = sp.sin(x1 / r) + x2 * x3 / r**2
    g = [sp.diff(L, x) for x in xs]
    new_sq = sum((x - eta * gi) ** 2 for x, gi in zip(xs, g))
    derived = sum(x**2 for x in xs) + eta**2 * sum(gi**2 for gi in g)
    ok = is_zero(new_sq - derived)
    out.append(Derivation("P1.norm_growth", SLIDE_I1, "scale-invariant L: ||x - eta grad L(x)||^2 = ||x||^2 + eta^2 ||grad L||^2 >= ||x||^2",
                          "||x - eta grad L|| >= ||x||", "expand: ||x||^2 - 2 eta <x, grad L> + eta^2 ||grad L||^2 with <x, grad L> = 0 (Euler, k=0)",
                          "L 0-homogeneous", "pass" if ok else "fail", "symbolic on L = sin(x1/|x|) + x2 x3/|x|^2"))
    # (d) unbounded smoothness: Hessian of f along the ray c u grows like c^(k-2)
    u = {x1: 1, x2: 2, x3: sp.Rational(1, 2)}
    growth = {}
    for k, fx in ((1, x1 + 2 * x2), (2, x1 * x2 + x3**2), (3, x1 * x2 * x3), (4, x1**2 * x2 * x3)):
        H = sp.hessian(fx, xs).subs({x: c * v for x, v in u.items()})
        growth[k] = sp.limit(sp.sqrt(sum(h**2 for h in H)), c, sp.oo)
    unbounded = [k for k, v in growth.items() if v == sp.oo]
    ok = unbounded == [3, 4]
    out.append(Derivation("P1.smoothness", SLIDE_H, "k >= 3 => model f has unbounded smoothness (||grad^2 f(c u)|| -> oo as c -> oo)",
                          "unbounded iff k >= 3 (for the model)", f"lim_c ||Hess f(c u)||_F = {growth} for k = 1..4 (grows like c^(k-2))",
                          "f k-homogeneous with nonzero Hessian", "pass" if ok else "fail", "symbolic limits",
                          note="for the LOSS l(f(x)) the Hessian also contains l''(f) grad f grad f^T, which grows like c^(2k-2): "
                               "already unbounded for k = 2 whenever l'' does not vanish (Ex 2: smoothness ~ alpha^2)"))
    out += converse() + descent_lemma() + si_attention()
    return out


def converse():
    """The talk's Lemma says "f k-homo <=> grad^l f (k-l)-homo". The direction <= is false as stated:
    counterexamples f = ||x||^2 + 1 (grad 1-homogeneous, f not 2-homogeneous) and f = ln ||x|| (grad
    (-1)-homogeneous, f not 0-homogeneous -- relevant for scale invariance). Corrected (l = 1): grad f
    (k-1)-homogeneous AND Euler <x, grad f> = k f  =>  f k-homogeneous, derived by integrating
    d/dc f(c x) = <x, grad f(c x)> = c^(k-1) k f(x) from 1 to c."""
    x1, x2 = sp.symbols("x1 x2", positive=True)
    xs = (x1, x2)
    cex = {2: x1**2 + x2**2 + 1, 0: sp.log(sp.sqrt(x1**2 + x2**2))}
    broken = {}
    for k, fx in cex.items():
        grad_homog = all(is_zero(_scaled(sp.diff(fx, v), xs) - c ** (k - 1) * sp.diff(fx, v)) for v in xs)
        f_homog = is_zero(_scaled(fx, xs) - c**k * fx)
        broken[k] = grad_homog and not f_homog
    kk, s, F = sp.symbols("k s F", positive=True)            # F = f(x)
    integrated = sp.simplify(F + sp.integrate(s ** (kk - 1) * kk * F, (s, 1, c)))   # f(c x) = f(x) + int_1^c ...
    ok_fix = is_zero(integrated - c**kk * F)
    ok = all(broken.values()) and ok_fix
    return [Derivation(
        "P1.lemma.converse", SLIDE_H, "Lemma, direction <=: grad^l f (k-l)-homogeneous => f k-homogeneous",
        "f k-homo <= grad^l f (k-l)-homo",
        f"false: f = ||x||^2 + 1 (k = 2) and f = ln||x|| (k = 0) have (k-1)-homogeneous gradients but are not "
        f"k-homogeneous (checked: {broken}); with Euler's identity added, f(c x) = f(x) + int_1^c s^(k-1) k f(x) ds = {integrated}",
        "c > 0, k > 0 in the integral (k = 0: d/dc f(c x) = 0 directly)", "erratum" if ok else "fail",
        "symbolic (counterexamples + integration)",
        corrected="f k-homogeneous => grad^l f (k-l)-homogeneous; conversely grad f (k-1)-homogeneous AND <x, grad f> = k f "
                  "=> f k-homogeneous (without Euler's identity f is determined only up to a constant, or a ln||x|| term "
                  "for k = 0; for l > 1 up to a polynomial of degree < l)",
        discrepancy="the converse fails by an additive constant (k != 0) or a multiple of ln||x|| (k = 0)")]


def descent_lemma():
    """Talk: "Descent Lemma: LR < 2/smoothness => GD decreases loss". Derived from Taylor's theorem
    with remainder: for |L''| <= beta on the segment, L(x - eta g) <= L(x) - eta ||g||^2 +
    (beta/2) eta^2 ||g||^2; the set of eta where the bound guarantees descent is solved for, and
    the bound is shown tight on L = beta x^2 / 2."""
    eta, beta, g2, x = sp.symbols("eta beta g2 x", positive=True)
    decrease = eta * g2 - beta * eta**2 * g2 / 2                      # guaranteed decrease
    region = sp.solve_univariate_inequality(decrease > 0, eta, relational=False)
    Lq = beta * x**2 / 2
    exact = sp.factor(Lq - Lq.subs(x, x - eta * sp.diff(Lq, x)))       # actual decrease on the quadratic
    tight = sp.solve_univariate_inequality(exact.subs({beta: 3, x: 1}) > 0, eta, relational=False)
    ok = region == sp.Interval.open(0, 2 / beta) and tight == sp.Interval.open(0, sp.Rational(2, 3))
    return [Derivation("P1.descent_lemma", SLIDE_H, "Descent lemma: LR < 2/smoothness => GD decreases the loss",
                       "eta < 2/beta", f"guaranteed decrease eta(1 - beta eta/2)||g||^2 > 0 iff eta in {region}; "
                       f"on L = beta x^2/2 the decrease is {exact} (> 0 iff eta < 2/beta: tight)",
                       "|L''| <= beta on the segment [x, x - eta g]", "pass" if ok else "fail",
                       "symbolic (Taylor bound solved for eta; tightness on the quadratic with beta = 3)")]


def si_attention():
    """SIBERT's attention score p_i = max(q_i, 0) / sum_j max(q_j, 0) is 0-homogeneous in q
    (talk, "Ingredient 1", key feature 1), unlike softmax."""
    q = sp.symbols("q1:4", real=True)
    relu = [(v + sp.Abs(v)) / 2 for v in q]
    p = [r / sum(relu) for r in relu]
    ok = all(is_zero(_scaled(pi, q) - pi) for pi in p)
    soft = sp.exp(q[0]) / sum(sp.exp(v) for v in q)
    soft_changes = not is_zero(_scaled(soft, q) - soft)
    return [Derivation("P1.si_attention", 'slide "Ingredient 1: Scale Invariant Architecture"',
                       "SI attention p_i = max(q_i,0)/sum_j max(q_j,0) is scale invariant in the scores q",
                       "p(c q) = p(q)", f"p_i(c q) - p_i(q) = 0 for i = 1..3: {ok}; softmax(c q) != softmax(q): {soft_changes}",
                       "c > 0, sum_j max(q_j, 0) > 0 (the paper gives no rule for an all-nonpositive row)",
                       "pass" if ok and soft_changes else "fail", "symbolic (3 scores, max(v,0) = (v+|v|)/2)")]
