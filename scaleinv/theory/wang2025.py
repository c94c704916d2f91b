"""Weight decay sets a memory timescale (Wang & Aitchison, *How to set AdamW's weight decay as you
scale model and dataset size*, 2024/25, arXiv 2405.13698).

AdamW's update W_{t+1} = (1 - eta lambda) W_t - eta u_t makes the weights an exponential moving
average of the updates -u_t / lambda with timescale

    tau = 1 / (eta lambda) iterations          (Wang & Aitchison; exactly 1/(-ln(1 - eta lambda)))

so an update made at step s still weighs (1 - eta lambda)^(t - s) in W_t. Derived here (``proofs_check.
timescale``): when the gradient does not depend on W (pure noise), a perturbation delta of the gradient
at step s moves W_{s+L} by exactly

    SGD + WD:  -eta (1 - eta lambda)^(L - 1) delta
    AdamW:     -(eta / sqrt(v)) (1 - beta1) ((1 - eta lambda)^L - beta1^L) / (1 - eta lambda - beta1) delta

(Adam's first moment spreads the perturbation over ~1/(1 - beta1) steps with total weight 1; v held
fixed, i.e. to first order in delta and with Adam's v stationary). Both decay like
(1 - eta lambda)^L for L >> 1/(1 - beta1): the memory time is set by eta lambda alone.

The implied scaling rule: keep the timescale in epochs, tau_epoch = tau B / N (batch B, dataset size N),
constant as N grows, i.e. lambda proportional to 1/N at fixed eta and B. Derived here for a toy where the
optimum is known (``proofs_check.timescale`` P13.ridge): linear regression y = <x, w*> + noise, x ~ N(0, I_d),
w* ~ N(0, (r^2/d) I), noise variance sigma^2, trained to stationarity on the mean loss. SGD + WD then
ends at the ridge solution (X^T X/N + lambda I)^(-1) X^T y/N, and the Bayes-optimal (posterior-mean) ridge is
lambda* = sigma^2 d/(N r^2), hence

    SGD + WD:  tau_epoch* = B / (eta lambda* N) = B r^2 / (eta sigma^2 d)          (independent of N)

AdamW, mean field: at the optimum the gradient is minibatch noise, Adam's v ~ sigma^2/B per coordinate, so
the decoupled decay acts like a ridge penalty lambda sqrt(v) = lambda sigma/sqrt(B):

    AdamW:     tau_epoch* ~ sqrt(B) r^2 / (eta sigma d)                           (independent of N)

Both are constant in N: the rule holds on this toy (for SGD + WD exactly, for AdamW to mean-field accuracy).
"""
from __future__ import annotations

import numpy as np

__all__ = ["wd_timescale", "wd_timescale_exact", "gradient_influence", "tau_epochs",
           "ridge_optimal_weight_decay", "optimal_tau_epochs_sgd", "optimal_tau_epochs_adamw"]


def wd_timescale(eta, weight_decay):
    """Wang & Aitchison's EMA timescale tau = 1/(eta lambda) iterations."""
    return 1.0 / (np.asarray(eta, float) * weight_decay)


def wd_timescale_exact(eta, weight_decay):
    """Exact decay time of (1 - eta lambda)^L: 1/(-ln(1 - eta lambda)) (= tau - 1/2 + O(eta lambda))."""
    return -1.0 / np.log1p(-np.asarray(eta, float) * weight_decay)


def gradient_influence(eta, weight_decay, lag, beta1=0.0, v=1.0):
    """||W_{s+L} change|| / ||gradient change at step s|| for a gradient that does not depend on W,
    L = ``lag`` >= 1 (see the module docstring): beta1 = 0 is SGD + WD, beta1 > 0 AdamW with a fixed
    second moment v (per coordinate; v = 1 for unit-RMS gradients)."""
    a = 1.0 - np.asarray(eta, float) * weight_decay
    L = np.asarray(lag, float)
    if beta1 == 0.0:
        return eta * a ** (L - 1.0) / np.sqrt(v)
    return eta / np.sqrt(v) * (1.0 - beta1) * (a**L - beta1**L) / (a - beta1)


def tau_epochs(eta, weight_decay, batch, n):
    """The EMA timescale in epochs: tau B / N = B / (eta lambda N) (Wang & Aitchison's scaling variable)."""
    return batch / (np.asarray(eta, float) * weight_decay * n)


def ridge_optimal_weight_decay(n, sigma2, r2, dim):
    """Bayes-optimal ridge penalty for the mean loss (1/2N) sum (y - <x, w>)^2 + (lambda/2)||w||^2 with prior
    w* ~ N(0, (r^2/d) I) and noise variance sigma^2: lambda* = sigma^2 d / (N r^2) (posterior mean)."""
    return np.asarray(sigma2, float) * dim / (np.asarray(n, float) * r2)


def optimal_tau_epochs_sgd(eta, batch, sigma2, r2, dim):
    """SGD + WD at stationarity = ridge: tau_epoch* = B r^2 / (eta sigma^2 d), independent of N."""
    return batch * r2 / (np.asarray(eta, float) * sigma2 * dim)


def optimal_tau_epochs_adamw(eta, batch, sigma2, r2, dim):
    """AdamW, mean field (v ~ sigma^2 / B, penalty lambda sqrt(v)): tau_epoch* ~ sqrt(B) r^2 / (eta sigma d)."""
    return np.sqrt(batch) * r2 / (np.asarray(eta, float) * np.sqrt(sigma2) * dim)
