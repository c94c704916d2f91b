"""Edge of stability of GD + WD on a scale-invariant loss (Lyu, Li, Arora, *Understanding the
generalization benefit of normalization layers: sharpness reduction*, NeurIPS 2022, arXiv 2206.07085).

For a scale-invariant L, the Hessian scales as grad^2 L(x) = grad^2 L(x_bar) / ||x||^2, so GD's
stability condition eta lambda_max(grad^2 L(x)) < 2 reads (eta / ||x||^2) S(x_bar) < 2 with the
sharpness on the unit sphere S(x_bar) = lambda_max(grad^2 L(x_bar)). Once GD + WD reaches the manifold
of minimisers the gradient vanishes and only the decay acts, ||x_t||^2 = ||x_c||^2 (1 - eta lambda)^(2t)
(derived here), so the effective sharpness grows until it reaches 2 after

    t* = ln(2 ||x_c||^2 / (eta S)) / (-2 ln(1 - eta lambda))   steps              (derived here)

and then hovers around 2 (edge of stability) while the direction drifts along the manifold towards
lower sphere sharpness S (Lyu et al.: GD + WD tracks a sharpness-reduction flow). GD without WD only
grows ||x|| (||x'||^2 = ||x||^2 + eta^2 ||g||^2), so eta S/||x||^2 stays below 2 and S is not reduced.
"""
from __future__ import annotations

import numpy as np

__all__ = ["EOS_THRESHOLD", "effective_sharpness", "wd_only_sq_norm", "eos_onset_steps"]

EOS_THRESHOLD = 2.0       # GD on a quadratic with curvature h is stable iff eta h < 2


def effective_sharpness(eta, sq_norm, sphere_sharpness):
    """eta lambda_max(grad^2 L(x)) = (eta / ||x||^2) S(x_bar) for a scale-invariant L."""
    return eta * np.asarray(sphere_sharpness, float) / np.asarray(sq_norm, float)


def wd_only_sq_norm(sq_norm0, eta, weight_decay, t):
    """||x_t||^2 when the gradient vanishes (on the minimiser manifold): ||x_0||^2 (1 - eta lambda)^(2t)."""
    return sq_norm0 * (1.0 - eta * weight_decay) ** (2.0 * np.asarray(t, float))


def eos_onset_steps(eta, weight_decay, sq_norm0, sphere_sharpness):
    """Steps on the manifold until eta S / ||x||^2 reaches 2: ln(2 ||x_0||^2/(eta S)) / (-2 ln(1 - eta lambda))."""
    return np.log(2.0 * sq_norm0 / (eta * np.asarray(sphere_sharpness, float))) / (-2.0 * np.log1p(-eta * weight_decay))
