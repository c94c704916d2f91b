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
(1 - eta lambda)^L for L >> 1/(1 - beta1): the memory time is set by eta lambda alone. Their implied
scaling rule -- keep tau in epochs, tau B / N, constant as the dataset size N grows -- is not checked here.
"""
from __future__ import annotations

import numpy as np

__all__ = ["wd_timescale", "wd_timescale_exact", "gradient_influence"]


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
