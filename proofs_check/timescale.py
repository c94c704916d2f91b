"""Item 13: weight decay sets a memory timescale (Wang & Aitchison 2024/25, arXiv 2405.13698).

Derived, not typed in: the change of W_{s+L} after a gradient perturbation delta at step s, when the
gradient does not depend on W, is a finite sum over the momentum's impulse response (1 - beta) beta^k
propagated by alpha = 1 - eta lambda per step; sympy sums it, and its decay rate per step for large L.
P13.ridge: the ridge penalty that makes the ridge solution the posterior mean of Bayesian linear regression
(prior N(0, r^2/d I), noise sigma^2), and the epoch timescale it implies for SGD + WD at stationarity.
The influence on the loss (noisy quadratic, gradient h (W - W*) + noise): P13.curved, the perturbation's
linear recursion (state (Delta W_t, Delta m_{t-1}), its characteristic roots and the closed form fitted to the
first two steps); P13.loss, the exact loss change of a quadratic and the stationary mean gradient that makes its
expectation; P13.gain, Adam's signal gain kappa from the second-order expansion of v^(-1/2).
"""
from __future__ import annotations

import sympy as sp

from proofs_check.derivation import Derivation, compare

SRC = "Wang & Aitchison 2024/25 (arXiv 2405.13698); influence derived here"
SLIDE = "AdamW as an EMA of updates, tau = 1/(eta lambda)"
eta, lam, beta, al = sp.symbols("eta lambda beta alpha", positive=True)
L = sp.Symbol("L", integer=True, positive=True)
k = sp.Symbol("k", integer=True, nonnegative=True)
RANGES = {eta: (1e-3, 0.5), lam: (1e-3, 0.9), beta: (0.0, 0.95), al: (0.05, 0.999), L: (1, 60)}


def influence():
    """(eta/sqrt(v))^-1 |Delta W_{s+L}| / |delta| = sum_{k=0}^{L-1} alpha^(L-1-k) (1 - beta) beta^k."""
    return sp.simplify(sp.summation(al ** (L - 1 - k) * (1 - beta) * beta**k, (k, 0, L - 1)))


def derivations():
    out = []
    I = influence()
    I = I.args[-1][0] if isinstance(I, sp.Piecewise) else I     # the alpha != beta branch
    stated = (1 - beta) * (al**L - beta**L) / (al - beta)
    st, m, d = compare(stated, I, RANGES, "alpha != beta; gradient independent of W; Adam's v fixed")
    out.append(Derivation("P13.influence", SLIDE, "a gradient perturbation delta at step s moves W_{s+L} by "
                          "(eta/sqrt(v)) (1-b) (alpha^L - b^L)/(alpha - b) |delta| (AdamW; b = 0: SGD+WD, eta alpha^(L-1))",
                          stated, I, "alpha = 1 - eta lambda; first order in delta", st, m, discrepancy=d, source=SRC))
    q = sp.Symbol("q", positive=True)                     # beta = alpha/(1 + q) < alpha
    ratio = (stated.subs(L, L + 1) / stated).subs(beta, al / (1 + q))
    factored = al * (1 - (1 + q) ** (-L - 1)) / (1 - (1 + q) ** (-L))       # alpha^L factored out
    assert sp.simplify(sp.powsimp(sp.expand_power_base(ratio / factored, force=True), force=True) - 1) == 0 or \
        abs(float((ratio / factored).subs({al: 0.9, q: 0.5, L: 7})) - 1) < 1e-12
    rate = sp.log(al * sp.limit((1 - (1 + q) ** (-L - 1)) / (1 - (1 + q) ** (-L)), L, sp.oo))
    st, m, d = compare(sp.log(al), sp.simplify(rate), {al: (0.5, 0.999), q: (0.01, 10.0)},
                       "large L, beta < alpha")
    out.append(Derivation("P13.rate", SLIDE, "for L >> 1/(1-beta1) the influence decays by alpha = 1 - eta lambda per "
                          "step: timescale 1/(-ln(1 - eta lambda)) ~ tau = 1/(eta lambda) (Wang & Aitchison)",
                          sp.log(al), sp.simplify(rate), "beta < alpha", st, m, discrepancy=d, source=SRC,
                          note="independent of beta1 and of the gradient: the memory time is set by eta lambda alone"))
    lam_star, tau, (s2, r2, dd, N, B) = ridge_tau()
    st, m, d = compare(B * r2 / (eta * s2 * dd), tau, {eta: (1e-3, 1.0), s2: (0.01, 10.0), r2: (0.01, 10.0), dd: (1, 1e3),
                                                      N: (1, 1e5), B: (1, 1e3)}, "stationary SGD + WD = ridge")
    out.append(Derivation("P13.ridge", SLIDE, "linear regression, prior w* ~ N(0, r^2/d I), noise sigma^2: the optimal "
                          "weight decay lambda* = sigma^2 d/(N r^2) gives tau_epoch* = B/(eta lambda* N) = B r^2/(eta sigma^2 d), "
                          "independent of the dataset size N (Wang & Aitchison's rule)", B * r2 / (eta * s2 * dd), tau,
                          "SGD + WD trained to stationarity (the ridge solution)", st, m, discrepancy=d, source=SRC,
                          note=f"lambda* = {lam_star} (the ridge solution is then the posterior mean for every eigen-direction)"))
    cs, cd, (tr, det, r1, r2, c, h, dl) = curved_influence()
    st, m, d = compare(cs, cd, {r1: (0.5, 0.999), r2: (0.0, 0.49), c: (1e-3, 0.1), beta: (0.0, 0.95), dl: (0.1, 2.0)},
                       "r1 != r2")
    out.append(Derivation("P13.curved", SLIDE, "on a quadratic with curvature h the perturbation feeds back: Delta W_{s+L} = "
                          "-c (1-b)(r1^L - r2^L)/(r1 - r2) delta, r1,2 the roots of z^2 - (alpha + b - c(1-b)h) z + alpha b "
                          "(c = eta for SGD+WD, eta kappa/sigma for AdamW); b = 0: -eta (1 - eta(lambda+h))^(L-1) delta",
                          cs, cd, "linearised update; r1 + r2 = trace = " + sp.sstr(tr) + ", r1 r2 = det = " + sp.sstr(det),
                          st, m, discrepancy=d, source=SRC,
                          note="h = 0: roots alpha, b (P13.influence); the loss's memory is 1/(-ln|r1|) < 1/(-ln alpha)"))
    ls, ld = loss_change()
    st, m, d = compare(ls, ld, {}, "quadratic loss; stationary mean")
    out.append(Derivation("P13.loss", SLIDE, "E Delta L_{s+L} = -G_L <gbar, delta> + (h/2) G_L^2 ||delta||^2 with the stationary "
                          "mean gradient gbar = -lambda h W*/(lambda + gain h) (Delta W_{s+L} = -G_L delta); the first term is "
                          "the first-order change <E grad L, Delta W>, the second exact for a quadratic loss",
                          ls, ld, "L = (h/2)||W - W*||^2, per eigen-direction", st, m, discrepancy=d, source=SRC))
    gs, gd, (b1, b2) = adam_gain()
    st, m, d = compare(gs, gd, {b1: (0.0, 0.99), b2: (0.5, 0.999)}, "weak signal in unit Gaussian noise, first order in 1-beta2")
    out.append(Derivation("P13.gain", SLIDE, "Adam's gain for a weak signal: E[m/sqrt(v)] = kappa gbar/sigma, kappa = 1 + (3/4)"
                          "(1-b2)/(1+b2) - (1-b1)(1-b2)/(1-b1 b2) (Jensen on v^(-1/2), minus v's correlation with m)",
                          gs, gd, "stationary; O((1-beta2)^2) dropped", st, m, discrepancy=d, source=SRC))
    return out


def curved_influence():
    """(stated, derived, x1) for Delta W_{s+L} on the noisy quadratic. Linearised update with c = eta gain:
    m_t = b m_{t-1} + (1-b)(h W_t + delta [t = s]), W_{t+1} = alpha W_t - c m_t; state y_t = (W_t, m_{t-1}),
    y_{t+1} = M y_t, y_{s+1} = (-c(1-b) delta, (1-b) delta). M's trace and determinant are the roots' sum and
    product; x_L = A r1^L + B r2^L through x_1, x_2 = e1^T M y_{s+1}."""
    c, h, dl = sp.symbols("c h delta", positive=True)
    r1, r2, A, B = sp.symbols("r1 r2 A B")
    M = sp.Matrix([[al - c * (1 - beta) * h, -c * beta], [(1 - beta) * h, beta]])
    y1 = sp.Matrix([-c * (1 - beta) * dl, (1 - beta) * dl])
    x1, x2 = y1[0], (M * y1)[0]
    tr, det = sp.expand(M.trace()), sp.factor(M.det())
    assert det == al * beta and sp.simplify(x2 - tr * x1) == 0        # x2 = (r1 + r2) x1
    sol = sp.solve([A * r1 + B * r2 - x1, A * r1**2 + B * r2**2 - (r1 + r2) * x1], [A, B], dict=True)[0]
    derived = sp.simplify(sol[A] * r1**L + sol[B] * r2**L)
    stated = x1 * (r1**L - r2**L) / (r1 - r2)
    return stated, derived, (tr, det, r1, r2, c, h, dl)


def loss_change():
    """(stated, derived): E Delta L_{s+L} with Delta W = -G delta. Exact expansion of (h/2)(W - W*)^2; the
    stationary mean Wbar solves eta lambda Wbar = -c h (Wbar - W*) (c = eta gain), gbar = h (Wbar - W*)."""
    h, dl, G, gain, W, Ws, D = sp.symbols("h delta G gain W Wstar D", real=True)
    Lq = lambda x: h / 2 * (x - Ws) ** 2                                  # noqa: E731
    assert sp.expand(Lq(W + D) - Lq(W) - (h * (W - Ws) * D + h / 2 * D**2)) == 0
    Wb = sp.Symbol("Wbar")
    Wbar = sp.solve(sp.Eq(eta * lam * Wb, -eta * gain * h * (Wb - Ws)), Wb)[0]
    gbar_derived = sp.simplify(h * (Wbar - Ws))
    derived = (gbar_derived * D + h / 2 * D**2).subs(D, -G * dl)
    stated = -G * (-lam * h * Ws / (lam + gain * h)) * dl + h / 2 * G**2 * dl**2
    return stated, sp.simplify(derived)


def adam_gain():
    """(stated, derived) kappa = E[m/sqrt(v)]/gbar, unit Gaussian noise, weak signal gbar: v = 1 + e + 2 gbar S,
    e = sum_k w_k (xi_k^2 - 1), S = sum_k w_k xi_k, w_k = (1-b2) b2^k, m = gbar + sum_k a_k xi_k, a_k = (1-b1) b1^k.
    Second order in e (first order in 1 - b2): E[m f(v)] = gbar [f(1) + f''(1)/2 Var e + 2 f'(1) sum_k a_k w_k]."""
    b1, b2, v = sp.symbols("beta1 beta2 v", positive=True)
    f = v ** sp.Rational(-1, 2)
    d1, d2 = sp.diff(f, v).subs(v, 1), sp.diff(f, v, 2).subs(v, 1)
    var_e = sp.summation((1 - b2) ** 2 * b2 ** (2 * k), (k, 0, sp.oo)) * 2          # Var(xi^2) = 2 (E xi^4 = 3)
    cross = sp.summation((1 - b1) * b1**k * (1 - b2) * b2**k, (k, 0, sp.oo))
    derived = sp.simplify(f.subs(v, 1) + d2 / 2 * var_e + 2 * d1 * cross)
    derived = derived.args[0][0] if isinstance(derived, sp.Piecewise) else derived
    stated = 1 + sp.Rational(3, 4) * (1 - b2) / (1 + b2) - (1 - b1) * (1 - b2) / (1 - b1 * b2)
    return stated, derived, (b1, b2)


def ridge_tau():
    """Ridge normal equations (X^T X/N + lambda I) w = X^T y/N vs the posterior mean's (X^T X + (sigma^2 d/r^2) I) w =
    X^T y, for one eigen-direction h of X^T X: equal for every h and y iff lambda = lambda*; then tau_epoch =
    B/(eta lambda* N)."""
    h, y, lam_, N, s2, r2, B = sp.symbols("h y lambda N sigma2 r2 B", positive=True)
    dd = sp.Symbol("d", positive=True)
    ridge = (y / N) / (h / N + lam_)
    posterior = y / (h + s2 * dd / r2)
    sol = sp.solve(sp.Eq(ridge, posterior), lam_)
    lam_star = sol[0]
    return lam_star, sp.simplify(B / (eta * lam_star * N)), (s2, r2, dd, N, B)


def closed_forms():
    I = influence()
    cs, _, (tr, det, r1, r2, c, h, dl) = curved_influence()
    return {"influence": I.args[-1][0] if isinstance(I, sp.Piecewise) else I,
            "curved_trace": tr, "curved_det": det, "curved": cs / (-dl),
            "loss": loss_change()[1], "gain": adam_gain()[1]}
