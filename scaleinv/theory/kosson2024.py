"""Rotational equilibrium (Kosson et al., ICML 2024): closed forms of the equilibrium angular
update and norm per optimizer, the approach time scale and the mean-field approach."""
from __future__ import annotations

from typing import Any, Callable, Dict

import numpy as np

from scaleinv.theory._xp import _xp
from scaleinv.theory.li2022 import equilibrium_sq_norm

__all__ = [
    "equilibrium_angle_sgd",
    "equilibrium_angle_sgd_exact",
    "equilibrium_angle_sgdm",
    "equilibrium_angle_adamw",
    "equilibrium_angle_lion",
    "equilibrium_angle_lion_arcsin",
    "equilibrium_norm_lion_arcsin",
    "equilibrium_angle_lion_weighted",
    "equilibrium_norm_lion_weighted",
    "equilibrium_angle_adam_l2",
    "equilibrium_norm_sgd",
    "equilibrium_norm_sgdm",
    "equilibrium_norm_adamw",
    "equilibrium_norm_lion",
    "equilibrium_norm_adam_l2",
    "equilibrium_timescale",
    "equilibrium_angle",
    "equilibrium_approach_steps",
    "equilibrium_approach_steps_sgd_ode",
]


# ---- rotational equilibrium (Kosson et al., ICML 2024) -------------------------------------
# Source: A. Kosson, B. Messmer, M. Jaggi, "Rotational Equilibrium: How Weight Decay Balances
# Learning Across Neural Networks", ICML 2024 (arXiv 2305.17212; docs/PAPER_NOTES.md); the closed forms of
# the expected equilibrium angular update are the ``*_etar_func`` of their public code
# (github.com/epfml/REQ, shared/optimizers/rotational_wrapper.py).
#
# Model and assumptions (shared by every function below; proofs_check has the derivations):
#   * p is a scale-invariant weight vector (a neuron / layer) with d elements (the paper's C; `dim` in code), so its gradient
#     is orthogonal to it, <p, g> = 0, and ||g|| = ||g~|| / ||p|| with g~ the gradient at p/||p||;
#   * random-walk model: the gradients of successive steps are independent, zero-mean and
#     isotropic (no drift direction), so cross-terms <g_t, g_s>, t != s, vanish in expectation;
#   * the update is orthogonal to the weight in expectation (the radial part of the update is
#     only the weight decay), and the optimizer's state (momentum, Adam's v) is in steady state;
#   * norm balance: at equilibrium E||p||^2 is stationary -- the norm growth from the
#     (orthogonal) gradient updates equals the shrinkage by weight decay, to first order in
#     eta*lambda (eta*lambda << 1);
#   * high dimension (d >> 1): ||update||^2 concentrates at its mean, so the RMS angle
#     sqrt(E[angle^2]) and the mean angle E[angle] coincide to O(1/d).
# The "expected angular update" eta_r is RMS-type: eta_r = sqrt(E||Delta p_perp||^2 / E||p||^2)
# (~ sqrt(E[angle(p_t, p_{t+1})^2]) for small angles). sigma below is the RMS gradient norm at
# the unit sphere, sigma^2 = E||g~||^2 = E||g||^2 ||p||^2.

def equilibrium_angle_sgd(eta, weight_decay):
    r"""SGD with weight decay (no momentum): eta_r = sqrt(2 eta lambda) (Kosson et al. 2024),

    $$\eta_r = \sqrt{2\eta\lambda}.$$

    Norm balance: ||p'||^2 = (1 - eta lambda)^2 ||p||^2 + eta^2 ||g||^2 (<p, g> = 0), so at
    equilibrium 2 eta lambda ||p||^2 ~= eta^2 E||g||^2 and eta_r^2 = eta^2 E||g||^2 / ||p||^2
    = 2 eta lambda. For SGD this needs no random-walk assumption (only <p, g> = 0).
    """
    xp = _xp(eta)
    return xp.sqrt(2.0 * eta * weight_decay)


def equilibrium_angle_sgd_exact(eta, weight_decay):
    """Exact per-step angle of SGD+WD at the fixed point of the constant-sigma norm map
    (:func:`norm_sq_update_orthogonal`): there ||p_{t+1}|| = ||p_t|| and
    <p_t, p_{t+1}> = (1 - eta lambda) ||p_t||^2, so angle = arccos(1 - eta lambda)
    (= sqrt(2 eta lambda) (1 + eta lambda / 12 + O((eta lambda)^2)))."""
    xp = _xp(eta)
    return xp.arccos(1.0 - eta * weight_decay)


def equilibrium_angle_sgdm(eta, weight_decay, momentum):
    r"""SGD with heavy-ball momentum alpha and L2 regularization fed through the momentum
    (PyTorch SGD(weight_decay=lambda)): eta_r = sqrt(2 eta lambda / (1 + alpha))
    (Kosson et al. 2024; REQ ``sgdm_etar_func``),

    $$\eta_r = \sqrt{\frac{2\eta\lambda}{1 + \alpha}}.$$

    Random walk: the update is eta m_t, m_t = sum_k alpha^k (g_{t-k} + lambda p_{t-k}); its
    orthogonal part has E||eta m_perp||^2 = eta^2 E||g||^2 / (1 - alpha^2). Each gradient moves
    p by eta g / (1 - alpha) in total and the L2 term shrinks p by eta lambda / (1 - alpha) per
    step, so norm balance gives ||p||^4 = eta sigma^2 / (2 lambda (1 - alpha)) and
    eta_r^2 = eta^2 sigma^2 / ((1 - alpha^2) ||p||^4) = 2 eta lambda / (1 + alpha).
    """
    xp = _xp(eta)
    return xp.sqrt(2.0 * eta * weight_decay / (1.0 + momentum))


def equilibrium_angle_adamw(eta, weight_decay, beta1):
    r"""AdamW (decoupled weight decay, p <- p - eta (m_hat / sqrt(v_hat) + lambda p)):
    eta_r = sqrt(2 eta lambda (1 - beta1) / (1 + beta1)), independent of the gradient
    (Kosson et al. 2024; REQ ``adamw_etar_func``),

    $$\eta_r = \sqrt{\frac{2\eta\lambda\,(1 - \beta_1)}{1 + \beta_1}}.$$

    Adam's normalisation makes every coordinate of g / sqrt(v) unit-RMS whatever ||g|| is, so
    the update has E||m / sqrt(v)||^2 = d (1 - beta1) / (1 + beta1) (EMA of independent unit
    coordinates) and each gradient moves p by a unit-RMS-per-coordinate vector in total
    (norm^2 d). Norm balance 2 eta lambda ||p||^2 = eta^2 d gives ||p|| = sqrt(eta d / (2 lambda))
    and eta_r^2 = eta^2 d (1 - beta1) / ((1 + beta1) ||p||^2). Adam's eps is neglected.
    """
    xp = _xp(eta)
    return xp.sqrt(2.0 * eta * weight_decay * (1.0 - beta1) / (1.0 + beta1))


def _lion_k(beta1, beta2):
    """Per-coordinate variance of Lion's interpolation c_t = beta1 m_{t-1} + (1 - beta1) g_t for
    independent unit-variance gradients: (1 - beta1)^2 + beta1^2 (1 - beta2) / (1 + beta2)."""
    return (1.0 - beta1) ** 2 + beta1**2 * (1.0 - beta2) / (1.0 + beta2)


def equilibrium_angle_lion(eta, weight_decay, beta1, beta2):
    """Lion (update sign(beta1 m + (1 - beta1) g), decoupled weight decay):
    eta_r = sqrt(pi/2) sqrt(2 eta lambda) sqrt((1 - beta1)^2 + beta1^2 (1 - beta2)/(1 + beta2))
    (Kosson et al. 2024; REQ ``lion_etar_func``).

    ||sign(c)||^2 = d exactly. For Gaussian c, sign(c) = sqrt(2/pi) c / std(c) + (uncorrelated
    rest); the gradient g_t enters all later c's with total weight 1, so its total linear
    displacement is eta sqrt(2/(pi K)) g~ with K = :func:`_lion_k`. Norm balance with that
    linear part only (the uncorrelated rest of the sign is neglected, as in the paper) gives
    ||p||^2 = eta d / (pi lambda K) and eta_r^2 = eta^2 d / ||p||^2 = pi eta lambda K.
    """
    xp = _xp(eta)
    return xp.sqrt(np.pi / 2.0) * xp.sqrt(2.0 * eta * weight_decay) * xp.sqrt(_lion_k(beta1, beta2))


def equilibrium_angle_adam_l2(eta, weight_decay, beta1, sigma, dim):
    """Adam with L2 regularization (lambda p added to the gradient BEFORE the moments):
    gradient-dependent, unlike AdamW (derived here in the same random-walk model; Kosson et
    al. 2024 discuss the resulting imbalance).

    Why it depends on the gradient: the L2 term is divided by sqrt(v) ~ RMS gradient coordinate
    sigma / (||p|| sqrt(d)) (gradient-dominated regime lambda ||p||^2 << sigma), so the
    effective weight decay per step is eta lambda sqrt(d) ||p|| / sigma -- larger gradients
    mean WEAKER decay. The gradient part still moves p by norm^2 eta^2 d per gradient, so norm
    balance gives ||p||^3 = eta sigma sqrt(d) / (2 lambda) and

        eta_r = sqrt((1 - beta1)/(1 + beta1)) (2 lambda)^(1/3) eta^(2/3) d^(1/3) sigma^(-1/3),

    i.e. the AdamW formula with the effective LR eta sqrt(d) ||p|| / sigma. Layers / neurons
    with larger gradient norms sigma rotate more slowly (eta_r ~ sigma^(-1/3)).
    """
    xp = _xp(eta)
    return (xp.sqrt((1.0 - beta1) / (1.0 + beta1)) * (2.0 * weight_decay) ** (1.0 / 3.0) * eta ** (2.0 / 3.0)
            * dim ** (1.0 / 3.0) * sigma ** (-1.0 / 3.0))


def _lion_sign_correlation_sum(beta1, beta2, kmax=20000, alpha=1.0):
    """K_eff = 1 + 2 sum_{k>=1} alpha^k (2/pi) arcsin(rho_k): the sum over all lags of the per-coordinate
    correlation of Lion's updates sign(c_t), sign(c_{t-k}) for Gaussian c (arcsine law), with
    rho_k = Cov(c_t, c_{t-k}) / Var(c) for independent unit-variance gradients:
    Cov = (1-beta1) beta1 (1-beta2) beta2^(k-1) + beta1^2 (1-beta2)^2 beta2^k / (1 - beta2^2).
    ``alpha`` = 1 - eta lambda weights lag k by the weight decay's alpha^k (:func:`equilibrium_norm_lion_weighted`);
    alpha = 1 (default) is the small-eta-lambda sum."""
    b1, b2, a = float(beta1), float(beta2), float(alpha)
    k = np.arange(1, kmax, dtype=float)
    cov = (1 - b1) * b1 * (1 - b2) * b2 ** (k - 1) + b1**2 * (1 - b2) ** 2 * b2**k / (1 - b2**2)
    rho = np.clip(cov / _lion_k(b1, b2), -1.0, 1.0)
    return 1.0 + 2.0 * float(np.sum(a**k * (2.0 / np.pi) * np.arcsin(rho)))


def equilibrium_angle_lion_arcsin(eta, weight_decay, beta1, beta2):
    """Lion equilibrium angle without linearising the sign (derived here, same random-walk model):

        eta_r = sqrt(2 eta lambda / K_eff),  K_eff = 1 + 2 sum_{k>=1} (2/pi) arcsin(rho_k)

    (:func:`_lion_sign_correlation_sum`). Norm balance: ||p_{t+1}||^2 - ||p_t||^2 =
    -2 eta lambda ||p||^2 + eta^2 sum_k <u_t, u_{t-k}> with ||u||^2 = d and per-coordinate
    E[sign(c) sign(c')] = (2/pi) arcsin(rho). :func:`equilibrium_angle_lion` (Kosson et al.)
    keeps only the linear part sqrt(2/pi) c / std(c) of the sign, i.e. replaces K_eff by
    (2/pi) / K; the two agree for beta = (0.9, 0.99) (0.7 %), not for small beta1 (about 7 %
    at beta1 = 0.5). ``beta1``/``beta2`` must be Python/NumPy scalars."""
    xp = _xp(eta)
    return xp.sqrt(2.0 * eta * weight_decay / _lion_sign_correlation_sum(beta1, beta2))


def equilibrium_norm_lion_arcsin(eta, weight_decay, beta1, beta2, dim):
    """Lion equilibrium norm with the arcsine-law sign correlations: sqrt(eta d K_eff / (2 lambda))."""
    xp = _xp(eta)
    return xp.sqrt(eta * dim * _lion_sign_correlation_sum(beta1, beta2) / (2.0 * weight_decay))


def equilibrium_norm_lion_weighted(eta, weight_decay, beta1, beta2, dim):
    """Lion equilibrium norm at finite eta lambda (derived here, issue 27; same random-walk model as
    :func:`equilibrium_angle_lion_arcsin`). With alpha = 1 - eta lambda, p_{t+1} = alpha p_t - eta u_t and
    u_t = sign(c_t) independent of p, the stationary norm is a geometric lag sum:

        E||p||^2 = eta^2 sum_{j,k>=0} alpha^(j+k) E<u_{t-j}, u_{t-k}> = eta^2 d K_eff(alpha) / (1 - alpha^2),
        K_eff(alpha) = 1 + 2 sum_{k>=1} alpha^k (2/pi) arcsin(rho_k)          (:func:`_lion_sign_correlation_sum`)

    (the cross term -2 alpha eta <p_t, u_t> of the norm balance carries the alpha^k). The arcsine form
    sqrt(eta d K_eff/(2 lambda)) (:func:`equilibrium_norm_lion_arcsin`) sets alpha^k = 1, which fails once the
    correlation time of c (~1/(1 - beta2)) is not << 1/(eta lambda): at beta = (0.9, 0.99) and eta lambda = 1e-3,
    K_eff(alpha) / K_eff = 0.91 (the norm 4.5 % smaller). ``beta1``, ``beta2``, ``eta``, ``weight_decay``:
    scalars."""
    a = 1.0 - float(eta) * float(weight_decay)
    return float(np.sqrt(float(eta) ** 2 * dim * _lion_sign_correlation_sum(beta1, beta2, alpha=a) / (1.0 - a**2)))


def equilibrium_angle_lion_weighted(eta, weight_decay, beta1, beta2):
    """Lion RMS angle per step at finite eta lambda: eta sqrt(d) / ||p|| with ||p|| from
    :func:`equilibrium_norm_lion_weighted`, i.e. sqrt((1 - alpha^2) / K_eff(alpha)), alpha = 1 - eta lambda
    (-> :func:`equilibrium_angle_lion_arcsin` sqrt(2 eta lambda / K_eff) as eta lambda -> 0). Scalars."""
    a = 1.0 - float(eta) * float(weight_decay)
    return float(np.sqrt((1.0 - a**2) / _lion_sign_correlation_sum(beta1, beta2, alpha=a)))


def equilibrium_norm_sgd(eta, weight_decay, sigma):
    """SGD+WD equilibrium norm ||p*|| = (eta sigma^2 / (2 lambda))^(1/4) (first order in eta
    lambda; :func:`equilibrium_sq_norm` is the exact constant-sigma fixed point of ||p||^2)."""
    return (eta * sigma**2 / (2.0 * weight_decay)) ** 0.25


def equilibrium_norm_sgdm(eta, weight_decay, momentum, sigma):
    """SGDM (L2 through the momentum) equilibrium norm (eta sigma^2 / (2 lambda (1 - alpha)))^(1/4)
    (see :func:`equilibrium_angle_sgdm`)."""
    return (eta * sigma**2 / (2.0 * weight_decay * (1.0 - momentum))) ** 0.25


def equilibrium_norm_adamw(eta, weight_decay, dim):
    """AdamW equilibrium norm sqrt(eta d / (2 lambda)), d = number of elements; independent of
    the gradient and of beta1 (see :func:`equilibrium_angle_adamw`)."""
    xp = _xp(eta)
    return xp.sqrt(eta * dim / (2.0 * weight_decay))


def equilibrium_norm_lion(eta, weight_decay, beta1, beta2, dim):
    """Lion equilibrium norm sqrt(eta d / (pi lambda K)), K = (1 - beta1)^2 + beta1^2 (1 - beta2)
    / (1 + beta2) (see :func:`equilibrium_angle_lion`)."""
    xp = _xp(eta)
    return xp.sqrt(eta * dim / (np.pi * weight_decay * _lion_k(beta1, beta2)))


def equilibrium_norm_adam_l2(eta, weight_decay, sigma, dim):
    """Adam+L2 equilibrium norm (eta sigma sqrt(d) / (2 lambda))^(1/3) (gradient-dependent; see
    :func:`equilibrium_angle_adam_l2`)."""
    xp = _xp(eta)
    return (eta * sigma * xp.sqrt(dim) / (2.0 * weight_decay)) ** (1.0 / 3.0)


def equilibrium_timescale(eta, weight_decay):
    """Time scale of the approach to rotational equilibrium, 1 / (eta lambda) steps (Kosson et
    al. 2024): weight decay shrinks ||p|| by (1 - eta lambda) per step, so any initial norm
    imbalance relaxes like exp(-c eta lambda t) with an optimizer-dependent c = O(1) (near the
    fixed point: c = 4 for SGD on ||p||^2, c = 2 for AdamW / Lion)."""
    return 1.0 / (eta * weight_decay)


def equilibrium_angle(optimizer: str, eta, weight_decay, **hp):
    """Dispatch: ``optimizer`` in {"sgd", "sgdm", "adamw", "lion", "adam_l2"} with the extra
    hyper-parameters of the matching ``equilibrium_angle_*`` (momentum / beta1 / beta2 /
    sigma, dim)."""
    fns: Dict[str, Callable[..., Any]] = {
        "sgd": equilibrium_angle_sgd, "sgdm": equilibrium_angle_sgdm, "adamw": equilibrium_angle_adamw,
        "lion": equilibrium_angle_lion, "adam_l2": equilibrium_angle_adam_l2}
    if optimizer not in fns:
        raise ValueError(f"optimizer must be one of {sorted(fns)}, got {optimizer!r}")
    return fns[optimizer](eta, weight_decay, **hp)


def equilibrium_approach_steps(optimizer: str, eta, weight_decay, start=3.0, band=0.1, beta2=0.99, sigma=1.0,
                               dim=256, tmax=10**7):
    """Steps until ||p_t|| stays within ``band`` (relative) of the equilibrium norm, starting at
    ``start`` x the equilibrium norm, from the mean-field norm recursion (NumPy, scalars):

    * "sgd" (exact for the constant-sigma loss): s' = (1 - eta lambda)^2 s + eta^2 sigma^2 / s;
    * "adamw" (mean field, beta1-independent): with q_t = sigma^2 / (s_t d) the per-coordinate
      E g^2, v_t = beta2 v_{t-1} + (1 - beta2) q_t, v_hat = v_t / (1 - beta2^t):
      s' = (1 - eta lambda)^2 s + eta^2 d q_t / v_hat_t  -- Adam's v lags the growing gradient
      by ~1/(1 - beta2) steps, so T ~ c / (eta lambda) only when 1/(eta lambda) >> 1/(1 - beta2).
    Equilibria (s' = s): s* = sigma sqrt(eta / (lambda (2 - eta lambda))) (SGD),
    eta d / (lambda (2 - eta lambda)) (AdamW).
    """
    eta, weight_decay = float(eta), float(weight_decay)
    if optimizer == "sgd":
        s_eq = float(equilibrium_sq_norm(eta, weight_decay, sigma))
    elif optimizer == "adamw":
        s_eq = eta * dim / (weight_decay * (2.0 - eta * weight_decay))
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {optimizer!r}")
    s, v, last_out, t = start**2 * s_eq, 0.0, 0, 0
    while t < tmax:
        if abs(np.sqrt(s / s_eq) - 1.0) > band:
            last_out = t + 1
        elif t - last_out > 20.0 / (eta * weight_decay):
            return last_out
        if optimizer == "sgd":
            s = (1.0 - eta * weight_decay) ** 2 * s + eta**2 * sigma**2 / s
        else:
            q = sigma**2 / (s * dim)
            v = beta2 * v + (1.0 - beta2) * q
            s = (1.0 - eta * weight_decay) ** 2 * s + eta**2 * dim * q / (v / (1.0 - beta2 ** (t + 1)))
        t += 1
    raise RuntimeError("no convergence to the equilibrium band")


def equilibrium_approach_steps_sgd_ode(eta, weight_decay, start=3.0, band=0.1):
    """SGD+WD steps from ``start`` x the equilibrium norm until ||p|| is within ``band`` of it, from the linear
    norm ODE (closed form, independent of the recursion of :func:`equilibrium_approach_steps`; issue 27, R3.1):
    y = ||p||^4 obeys y' = -4 eta lambda (y - y*) (``scaleinv.theory.defazio2025`` norm ODE, constant eta), so
    y/y* - 1 = (start^4 - 1) e^(-4 eta lambda t) and the norm ratio (y/y*)^(1/4) reaches 1 + band at

        T = ln((start^4 - 1) / ((1 + band)^4 - 1)) / (4 eta lambda)       (start > 1 + band; ~1.287/(eta lambda) at 3x, 10 %).

    The recursion differs by O(eta lambda) (its fixed point and rate) and by the integer step count."""
    if not start > 1.0 + band:
        raise ValueError(f"start must exceed 1 + band, got start={start}, band={band}")
    return float(np.log((start**4 - 1.0) / ((1.0 + band) ** 4 - 1.0)) / (4.0 * float(eta) * float(weight_decay)))
