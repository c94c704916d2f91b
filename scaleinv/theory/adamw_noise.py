"""AdamW under pure-noise gradients, exactly: the stationary weight norm and the weight/update cosine.

The steady state behind the rotational equilibrium (Kosson et al. 2024) and behind weight-norm-
controlling ("hyperball") optimizers, without the small-eta-lambda approximation. Derived here
(``proofs_check.adamw_noise`` has the sympy derivation):

Model: W_{t+1} = alpha W_t - eta u_t with alpha = 1 - eta lambda (decoupled weight decay) and Adam's
normalised direction u_t = m_t, m_t = beta1 m_{t-1} + (1 - beta1) xi_t, xi_t i.i.d. with E xi = 0,
E xi xi^T = I_d, independent of W (Adam's v_hat -> E g^2 = 1, bias corrections -> 1, eps -> 0).
Stationary covariances: Cov(m_t, m_{t-k}) = beta1^k (1 - beta1)/(1 + beta1) I. Then

    E||W||^2 = d eta^2 (1-beta1)/(1+beta1) * (1 + alpha beta1) / ((1 - alpha^2)(1 - alpha beta1)),
    cos(W_t, u_t) -> -beta1 sqrt((1 - alpha^2) / ((1 + alpha beta1)(1 - alpha beta1)))

(the cosine with the subtracted direction u_t; the gradient step -eta u_t has the opposite sign:
momentum keeps pushing outwards). As eta lambda -> 0 the norm tends to eta d / (2 lambda), the
rotational-equilibrium norm :func:`scaleinv.theory.equilibrium_norm_adamw` (R2.3), and the cosine to 0
like -beta1 sqrt(2 eta lambda/(1 - beta1^2)). At finite eta lambda R2.3 is off by the factor
:func:`adamw_noise_sq_norm_ratio_to_r23` (e.g. 0.53 at eta lambda = 0.1, beta1 = 0.9).

Adam's second moment (derived here, ``proofs_check.adamw_noise`` P12.beta2): with a finite beta2 the
direction is u_t = m_t / sqrt(v_t), v_t = beta2 v_{t-1} + (1 - beta2) g_t^2 (stationary, Gaussian unit
noise: E g^4 = 3). Writing v = 1 + delta and expanding (1 + delta)^(-1/2) to second order in delta
(first order in 1 - beta2; delta correlates with m because both contain g_t),

    E||W||^2 / (model above) - 1 = (1 - beta2) [ (3/2 + rho/2)/(1 + beta2)
                                   - (1 - beta1^2)(1 + rho)/(1 - beta1^2 beta2) ] + O((1 - beta2)^2),
    rho = G(beta1 beta2)/G(beta1),  G(x) = (1 + alpha x)/((1 - alpha^2)(1 - alpha x)),

(:func:`adamw_noise_beta2_factor`): -0.87 % at eta lambda = 0.05, beta1 = 0.9, beta2 = 0.99; the
first two terms are v's fluctuation (sqrt(v) in the denominator: Jensen, enlarges the update), the
last the correlation of v_t with the current gradient (a large g_t also enlarges v_t, shrinks the update).
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "adamw_noise_sq_norm",
    "adamw_noise_sq_norm_ratio_to_r23",
    "adamw_noise_cosine",
    "adamw_noise_eps_factor",
    "adamw_noise_beta2_factor",
]


def adamw_noise_sq_norm(eta, weight_decay, beta1, dim):
    """Stationary E||W||^2 of AdamW driven by unit pure noise (exact in the model above)."""
    a = 1.0 - np.asarray(eta, float) * weight_decay
    return dim * eta**2 * (1.0 - beta1) / (1.0 + beta1) * (1.0 + a * beta1) / ((1.0 - a**2) * (1.0 - a * beta1))


def adamw_noise_sq_norm_ratio_to_r23(eta, weight_decay, beta1):
    """E||W||^2 / (eta d / (2 lambda)): how far the small-eta-lambda form (R2.3) is from the exact one."""
    return adamw_noise_sq_norm(eta, weight_decay, beta1, 1.0) / (np.asarray(eta, float) / (2.0 * weight_decay))


def adamw_noise_cosine(eta, weight_decay, beta1):
    """Stationary cos(W_t, u_t) (u_t = Adam's direction, subtracted by the step):
    -beta1 sqrt((1 - alpha^2) / ((1 + alpha beta1)(1 - alpha beta1))), alpha = 1 - eta lambda."""
    a = 1.0 - np.asarray(eta, float) * weight_decay
    return -beta1 * np.sqrt((1.0 - a**2) / ((1.0 + a * beta1) * (1.0 - a * beta1)))


def adamw_noise_eps_factor(eps, grad_rms=1.0):
    """Mean-field effect of Adam's eps on the stationary norm: u = m/(sqrt(v) + eps) with sqrt(v) ~ the
    gradient RMS, so every update is scaled by r = grad_rms/(grad_rms + eps) and E||W||^2 by r^2
    (the fluctuation of sqrt(v) is neglected)."""
    return (grad_rms / (grad_rms + np.asarray(eps, float))) ** 2


def _geometric_lag_sum(alpha, x):
    """G(x) = sum_{j,k>=0} alpha^(j+k) x^|j-k| = (1 + alpha x)/((1 - alpha^2)(1 - alpha x))."""
    return (1.0 + alpha * x) / ((1.0 - alpha**2) * (1.0 - alpha * x))


def adamw_noise_beta2_factor(eta, weight_decay, beta1, beta2):
    """E||W||^2 with Adam's finite-beta2 second moment / :func:`adamw_noise_sq_norm` (v_hat = E g^2 = 1),
    Gaussian unit noise, stationary, first order in 1 - beta2 (module docstring):
    1 + (1-b2)[(3/2 + rho/2)/(1+b2) - (1-b1^2)(1+rho)/(1-b1^2 b2)], rho = G(b1 b2)/G(b1)."""
    a = 1.0 - np.asarray(eta, float) * weight_decay
    b1, b2 = np.asarray(beta1, float), np.asarray(beta2, float)
    rho = _geometric_lag_sum(a, b1 * b2) / _geometric_lag_sum(a, b1)
    return 1.0 + (1.0 - b2) * ((1.5 + 0.5 * rho) / (1.0 + b2) - (1.0 - b1**2) * (1.0 + rho) / (1.0 - b1**2 * b2))
