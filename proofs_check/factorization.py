"""Item 3: Ex 2 of the talk -- low-rank matrix factorization L(A, B) = 1/2 ||A B^T - Y||_F^2 and
its normalized (scale-invariant) variant (slides "Our Hypothesis", Ex 2, and "Ingredient 1").

Derived from the definition, entrywise, for r = 1, d = 2: the gradients, the rescaling symmetry
(A, B) -> (cA, B/c), the curvature at the unbalanced init A(0) = (alpha, 0), B(0) = (1/alpha, 0)
(why GD's progress depends on alpha), and the 0-homogeneity of the normalized loss in A and in B.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from proofs_check.derivation import Derivation, is_zero

SLIDE_EX2 = 'slide "Our Hypothesis: k-homogeneity in Architecture", Ex 2'


def derivations():
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
    HA = sp.hessian(L, (a1, a2)).subs(init)
    cond = sp.simplify(HB[0, 0] / HA[1, 1])
    g_a2 = sp.simplify(sp.diff(L, a2).subs(init))
    per_step = sp.simplify(2 / alpha**2 * sp.Abs(g_a2))
    out.append(Derivation("P3.invariance", SLIDE_EX2, "L(cA, B/c) = L(A, B) and GD progress depends on alpha",
                          "GD cannot learn efficiently from the unbalanced init",
                          f"L(cA,B/c) - L(A,B) = 0: {inv}; at init Hess_B L = {HB.tolist()} so GD needs eta < 2/alpha^2; "
                          f"Hess_A L = {HA.tolist()}: curvature ratio {cond}; "
                          f"dL/da2 = {g_a2}, so a2 moves at most {per_step} per step",
                          "c > 0", "pass" if inv and is_zero(HB[0, 0] - alpha**2) and is_zero(cond - alpha**4) else "fail", "symbolic",
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
    out.append(gd_steps_row())
    return out


def best_lr_steps(alpha: float, cs=2.0 ** np.arange(-1.0, 0.99, 0.125), tol=1e-3, max_steps=40000):
    """Fewest GD steps to L < tol on Ex 2 from A(0) = (alpha, 0), B(0) = (1/alpha, 0), over the LR grid
    eta = c / alpha^2 (the stable scale of the derived curvature alpha^2); all LRs run at once (float64).
    Returns (steps, best eta) or (None, None) if no LR reaches tol within max_steps."""
    Y = np.full((2, 2), 0.5)
    etas = np.asarray(cs, float) / alpha**2
    A = np.tile([alpha, 0.0], (len(etas), 1))
    B = np.tile([1.0 / alpha, 0.0], (len(etas), 1))
    with np.errstate(all="ignore"):
        for step in range(max_steps):
            R = A[:, :, None] * B[:, None, :] - Y
            L = 0.5 * np.sum(R**2, axis=(1, 2))
            done = L < tol
            if done.any():
                return step, float(etas[np.argmax(done)])
            gA = np.einsum("nij,nj->ni", R, B)
            gB = np.einsum("nij,ni->nj", R, A)
            A, B = A - etas[:, None] * gA, B - etas[:, None] * gB
    return None, None


def gd_steps_row():
    """NUMERIC backing of "even a fine-tuned LR cannot learn from the unbalanced init efficiently": the
    best-LR step count grows like alpha^p, compared with the derived curvature ratio alpha^4."""
    alphas = (2.0, 4.0, 8.0)
    res = {a: best_lr_steps(a) for a in alphas}
    beyond = {a: best_lr_steps(a, cs=2.0 ** np.arange(1.0, 2.01, 0.125)) for a in alphas}   # eta > 2/alpha^2
    ok_run = all(v[0] for v in res.values())
    exps = [float(np.log2(res[b][0] / res[a][0])) for a, b in zip(alphas, alphas[1:])] if ok_run else []
    ok = ok_run and all(3.5 <= p <= 4.5 for p in exps)
    return Derivation(
        "P3.gd_steps", SLIDE_EX2, "even a fine-tuned LR cannot learn from the unbalanced init efficiently (GD, Ex 2)",
        "GD progress depends on alpha",
        "best-LR steps to L < 1e-3: " + ", ".join(f"alpha={a:g}: {res[a][0]} (eta={res[a][1]:.3g})" for a in alphas if res[a][0])
        + f"; growth exponents log2(ratio) = {[round(p, 2) for p in exps]} ~ 4 = the derived curvature ratio alpha^4",
        "Y = 0.5 ones(2,2), r = 1, stable LRs eta = c/alpha^2 < 2/alpha^2 (c in 2^[-1, 1) step 2^(1/8))",
        "pass" if ok else "fail", "NUMERIC (float64 GD, 16 LRs per alpha, all run at once)",
        note="the stable LR scales like 1/alpha^2 (curvature alpha^2 in B) while the A-direction's curvature is 1/alpha^2: "
             "steps ~ alpha^4. Caveat found: LRs beyond the stability limit (c in [2, 4]) can 'catapult' out of the "
             "unbalanced init much faster -- best steps there: " + ", ".join(f"alpha={a:g}: {beyond[a][0]}" for a in alphas)
             + " (still growing with alpha)")
