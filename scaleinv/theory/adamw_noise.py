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
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "adamw_noise_sq_norm",
    "adamw_noise_sq_norm_ratio_to_r23",
    "adamw_noise_cosine",
    "adamw_noise_eps_factor",
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
