"""Closed-form predictions of Li et al., ICML 2022 (the talk and the paper), as plain functions.

Every function cites where its formula comes from: ``talk`` is the ICML 2022 talk
(by slide title), ``paper`` is Li et al., ICML 2022
(arXiv 2202.00980); both are described in docs/PAPER_NOTES.md. Where the stated formula disagrees with the one
derived from the definitions, both are here: ``*_as_stated`` is the talk's form, the plain
name is the derived form (see ``proofs_check`` for the derivations). Functions accept NumPy
scalars/arrays or JAX arrays.

Notation: eta = learning rate, wd = lambda = weight decay, sigma = norm of the gradient at the
unit sphere ||grad L_gamma(x/||x||)||.
"""
from __future__ import annotations

import numpy as np

from scaleinv.theory._xp import _xp

__all__ = [
    "ex1_divergence_lr",
    "effective_lr",
    "equilibrium_sq_norm",
    "equilibrium_sq_norm_as_stated",
    "equilibrium_grad_ratio",
    "equilibrium_grad_norm",
    "norm_sq_update_orthogonal",
    "clip_threshold",
    "clip_never_fires_min_C",
    "max_sq_norm_growth_with_clip",
    "predicted_clip_rate",
    "exp_lr_schedule",
    "exp_lr_schedule_as_stated",
    "wd_to_exp_lr_rescale",
    "t0_bound",
    "t0_bound_paper",
    "t0_slope",
    "t1_scale",
    "steps_to_equilibrium",
    "sgd_wd_norm_band",
    "descent_lemma_lower_bound",
]



# ---------------------------------------------------------------- homogeneity / Ex 1
def ex1_divergence_lr(X0, dL_dX, k):
    r"""Talk, slide "Our Hypothesis: k-homogeneity in Architecture", Ex 1.

    Returns the threshold eta* = 2 X(0)^(1/k - 1) / |L~'(X(0))|,

    $$\eta^* = \frac{2\,X(0)^{1/k-1}}{|\tilde L'(X(0))|}.$$

    GD on L(x_1..x_2k) =
    L~(x_1 ... x_2k) with all x_i(0) equal and X(0) >= X* fails to converge for eta >= eta*
    and diverges for eta > eta* (strict; the talk says "diverges if eta >=", which is wrong at
    the boundary -- proofs row P2.keeps_diverging).

    Derivation: with x_i = x, X = x^(2k) and dL/dx_i = L~'(X) X / x, so
    x(1) = x (1 - eta L~'(X) X^(1 - 1/k)); the factor is <= -1 iff eta >= eta*.
    At eta = eta* exactly the iterates 2-cycle, x(t) = (-1)^t x(0) (|x| constant, the loss
    stays at L~(X(0))); above it |x| grows every step. The 2-cycle is repelling: a deviation
    grows by 4k(1 + X L~''(X)/L~'(X)) - 3 >= 5 per step, so it is numerically unstable and in
    floating point the orbit leaves it after a few dozen steps (verify row C2.at_threshold).
    """
    xp = _xp(X0)
    return 2.0 * xp.power(X0, 1.0 / k - 1.0) / xp.abs(dL_dX)


def effective_lr(eta, x_norm):
    r"""Talk, "Existing Analysis for SGD on Scale Invariant Loss": effective LR eta / ||x||^2,

    $$\eta_{\rm eff} = \frac{\eta}{\|x\|^2}.$$

    For scale-invariant L, grad L(x) = grad L(x_bar) / ||x||, so one GD step on x moves the
    direction x_bar like a GD step on the sphere with LR eta/||x||^2 (to first order).
    """
    return eta / x_norm**2


# ---------------------------------------------------------------- SGD + WD equilibrium
def norm_sq_update_orthogonal(sq_norm, eta, weight_decay, sigma):
    r"""Exact one-step norm map of SGD+WD on a scale-invariant loss with ||grad L(x_bar)||=sigma.

    Because <x, grad L(x)> = 0 (Euler, k = 0) and ||grad L(x)|| = sigma/||x||:

    $$\|x(t+1)\|^2 = (1 - \eta\lambda)^2\,\|x(t)\|^2 + \frac{\eta^2\sigma^2}{\|x(t)\|^2}.$$
    """
    return (1.0 - eta * weight_decay) ** 2 * sq_norm + eta**2 * sigma**2 / sq_norm


def equilibrium_sq_norm(eta, weight_decay, sigma):
    r"""Fixed point of :func:`norm_sq_update_orthogonal` (derived; proofs_check item 6).

    $$\|x^*\|^2 = \sqrt{\frac{\eta}{\lambda(2 - \eta\lambda)}}\;\sigma.$$

    The talk ("Ingredient 3") states sqrt(2 eta / (lambda (2 - eta lambda))) sigma -- see
    :func:`equilibrium_sq_norm_as_stated`; the two differ by a factor sqrt(2).
    """
    xp = _xp(eta)
    return xp.sqrt(eta / (weight_decay * (2.0 - eta * weight_decay))) * sigma


def equilibrium_sq_norm_as_stated(eta, weight_decay, sigma):
    r"""Talk, slide "Ingredient 3: Global Relative Clipping", as printed:
    ||x(t)||^2 -> sqrt(2 eta / (lambda (2 - eta lambda))) sigma,

    $$\|x(t)\|^2 \to \sqrt{\frac{2\eta}{\lambda(2 - \eta\lambda)}}\;\sigma$$

    (a factor sqrt(2) too large: :func:`equilibrium_sq_norm` is the derived fixed point)."""
    xp = _xp(eta)
    return xp.sqrt(2.0 * eta / (weight_decay * (2.0 - eta * weight_decay))) * sigma


def equilibrium_grad_ratio(eta, weight_decay):
    """Talk, slide "Ingredient 3": at equilibrium ||grad L_gamma(x)|| / ||x|| =
    sqrt(lambda (2 - eta lambda) / eta) (agrees with the derived fixed point)."""
    xp = _xp(eta)
    return xp.sqrt(weight_decay * (2.0 - eta * weight_decay) / eta)


def equilibrium_grad_norm(eta, weight_decay, sigma):
    """||grad L_gamma(x*)|| = sigma / ||x*|| at the derived equilibrium."""
    xp = _xp(eta)
    return sigma / xp.sqrt(equilibrium_sq_norm(eta, weight_decay, sigma))


# ---------------------------------------------------------------- relative global clipping
def clip_threshold(eta, weight_decay, x_norm, C=2.0):
    r"""Talk, "Ingredient 3" / paper Sec. 5: clip ||g|| to sqrt(2 C lambda / eta) ||x||,

    $$\|g\| \;\to\; \min\Big(\|g\|,\ \sqrt{2C\lambda/\eta}\;\|x\|\Big).$$
    """
    xp = _xp(x_norm)
    return xp.sqrt(2.0 * C * weight_decay / eta) * x_norm


def clip_never_fires_min_C(eta, weight_decay):
    """Smallest C for which clipping never fires at the constant-sigma equilibrium.

    At equilibrium ||g||/||x|| = sqrt(lambda (2 - eta lambda)/eta) <= sqrt(2 C lambda/eta) iff
    C >= (2 - eta lambda)/2 = 1 - eta lambda / 2. So every C >= 1 (in particular the talk's C > 1)
    never fires.
    """
    return 1.0 - eta * weight_decay / 2.0


def max_sq_norm_growth_with_clip(eta, weight_decay, C=2.0):
    r"""Upper bound on ||x(t+1)||^2 / ||x(t)||^2 for SGD+WD with relative global clipping on a
    scale-invariant loss (gradient orthogonal to x, clipped norm <= sqrt(2 C lambda/eta) ||x||):

    $$\frac{\|x(t+1)\|^2}{\|x(t)\|^2} \le (1 - \eta\lambda)^2 + 2C\eta\lambda.$$

    Without clipping the ratio is unbounded (heavy-tailed gradients produce norm spikes).
    """
    return (1.0 - eta * weight_decay) ** 2 + 2.0 * C * eta * weight_decay


def predicted_clip_rate(sample_np, C, seed, n=2_000_000):
    """Mean-field clip rate of SGD+WD+relative global clipping on a constant-sigma loss whose
    stochastic gradient is multiplied by a noise factor f with E f^2 = 1 (talk, "Ingredient 3:
    Global Relative Clipping": clipping fires on few steps). Returns ``(rate, v)``.

    With u = ||x||^4 at the clipped equilibrium and small eta*lambda, the norm balance
    2 eta lambda u = eta^2 sigma^2 E[min(f^2, 2 C lambda u/(eta sigma^2))] reads, with
    v = 2 lambda u / (eta sigma^2):  v = E[min(f^2, C v)]  (unique fixed point, C > 1).
    Clipping fires when f^2 > C v, so the predicted rate is P(f^2 > C v). The expectation is
    a Monte-Carlo mean over ``n`` draws ``sample_np(np.random.default_rng(seed), n)`` of f.
    """
    f2 = sample_np(np.random.default_rng(seed), n) ** 2
    v = 1.0
    for _ in range(200):
        v = float(np.mean(np.minimum(f2, C * v)))
    return float(np.mean(f2 > C * v)), v


# ---------------------------------------------------------------- WD <=> exponential LR
def exp_lr_schedule(t, eta, weight_decay):
    r"""Exact LR schedule eta_t of plain GD that reproduces GD+WD(eta, lambda) from the SAME x(0)
    on a scale-invariant loss (derived; proofs_check item 5):

    $$\eta_t = \eta\,(1 - \eta\lambda)^{-2t-1}, \qquad x_{\rm GD}(t) = \frac{x_{\rm WD}(t)}{(1 - \eta\lambda)^t}.$$
    """
    return eta * (1.0 - eta * weight_decay) ** (-2.0 * t - 1.0)


def exp_lr_schedule_as_stated(t, eta, weight_decay):
    """Talk, slide "Ingredient 2: SGD + WD" [Li & Arora 21]: eta_t = eta (1 - eta lambda)^(-2t).

    It reproduces GD+WD only if GD starts from the rescaled point sqrt(1 - eta lambda) x(0)
    (then x_GD(t) = x_WD(t) (1 - eta lambda)^(1/2 - t)); from the same x(0) each step's LR is
    off by the factor (1 - eta lambda).
    """
    return eta * (1.0 - eta * weight_decay) ** (-2.0 * t)


def wd_to_exp_lr_rescale(t, eta, weight_decay):
    """Factor c_t with x_GD(t) = c_t * x_WD(t) for :func:`exp_lr_schedule`: (1 - eta lambda)^(-t)."""
    return (1.0 - eta * weight_decay) ** (-t)


# ---------------------------------------------------------------- time bounds
def t0_bound(eta, weight_decay, x0_sq_norm):
    r"""Talk, "Convergence Results for GD + WD": T0 ~ (1/(2 eta lambda)) |ln(||x(0)||^2 / eta)|
    (up to constants; the statement is "<~"),

    $$T_0 \approx \frac{1}{2\eta\lambda}\,\Big|\ln\frac{\|x(0)\|^2}{\eta}\Big|.$$
    """
    xp = _xp(x0_sq_norm)
    return xp.abs(xp.log(x0_sq_norm / eta)) / (2.0 * eta * weight_decay)


def t0_bound_paper(eta, weight_decay, x0_sq_norm, rho):
    """Paper Thm 4.1: T0 = ceil((1/(2 eta lambda)) (|ln(||x0||^2 / (rho pi^2 eta))| + 3)),
    rho = max Hessian norm on the unit sphere; requires eta*lambda <= 1/2."""
    xp = _xp(x0_sq_norm)
    return xp.ceil((xp.abs(xp.log(x0_sq_norm / (rho * np.pi**2 * eta))) + 3.0) / (2.0 * eta * weight_decay))


def t0_slope(eta, weight_decay):
    """d T0 / d ln||x(0)||^2 predicted by the T0 bound: 1/(2 eta lambda). The exact decay of the
    norm under WD, ||x||^2 ~ (1 - eta lambda)^(2t), gives 1/(-2 ln(1 - eta lambda)) (-> 1/(2 eta lambda))."""
    return 1.0 / (2.0 * eta * weight_decay)


def t1_scale(eta, weight_decay, x0_sq_norm):
    """Talk, "Convergence Results for SGD+WD": T1 = (1/(eta lambda)) O(|ln(eta lambda)| +
    |ln(eta/||x(0)||^2)|); returned without the hidden constant."""
    xp = _xp(x0_sq_norm)
    return (xp.abs(xp.log(eta * weight_decay)) + xp.abs(xp.log(eta / x0_sq_norm))) / (eta * weight_decay)


def steps_to_equilibrium(x0_sq_norm, eta, weight_decay, sigma, band=2.0):
    """Exact number of SGD+WD steps (constant-sigma scale-invariant loss) until ||x||^2 is
    within a factor ``band`` of the equilibrium, by iterating
    :func:`norm_sq_update_orthogonal` (NumPy, for prediction tables)."""
    target = float(equilibrium_sq_norm(eta, weight_decay, sigma))
    s, t = float(x0_sq_norm), 0
    while not (target / band <= s <= target * band):
        s = float(norm_sq_update_orthogonal(s, eta, weight_decay, sigma))
        t += 1
        if t > 10**8:
            raise RuntimeError("no convergence to the equilibrium band")
    return t


def sgd_wd_norm_band(eta, weight_decay, sigma_low, sigma_high):
    """Talk, "Convergence Results for SGD+WD": after T1,
    sigma_low^2/2 <= (2 lambda/eta) ||x||^4 <= 4 sigma_high^2. Returned as bounds on ||x||^2:

        (sqrt(eta sigma_low^2 / (4 lambda)), sqrt(2 eta sigma_high^2 / lambda)).
    """
    xp = _xp(eta)
    return xp.sqrt(eta * sigma_low**2 / (4.0 * weight_decay)), xp.sqrt(2.0 * eta * sigma_high**2 / weight_decay)


def descent_lemma_lower_bound(eta, rho, x_sq_norm, grad_sq_norm):
    """Talk, "Convergence Results for GD + WD", proof sketch step 2:
    L(x(t)) - L(x(t+1)) >= eta (1 - 2 rho eta / ||x(t)||^2) ||grad L(x(t))||^2."""
    return eta * (1.0 - 2.0 * rho * eta / x_sq_norm) * grad_sq_norm

