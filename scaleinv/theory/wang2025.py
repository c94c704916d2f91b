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

The influence on the final LOSS (derived here, ``proofs_check.timescale`` P13.curved / P13.loss / P13.gain).
Toy: a noisy quadratic, minibatch gradient g_t = h (W_t - W*) + sigma xi_t (xi_t i.i.d., unit variance), loss
L(W) = (h/2)||W - W*||^2. The perturbation now feeds back through the loss's curvature: with the update
W_{t+1} = alpha W_t - c m_t, m_t = beta1 m_{t-1} + (1 - beta1) g_t (SGD + WD: beta1 = 0, c = eta; AdamW:
c = eta kappa / sigma, Adam's direction m/sqrt(v) with v ~ sigma^2), the change obeys the linear recursion

    Delta W_{t+1} = (alpha + beta1 - c (1 - beta1) h) Delta W_t - alpha beta1 Delta W_{t-1},
    Delta W_{s+1} = -c (1 - beta1) delta,
so  Delta W_{s+L} = -c (1 - beta1) (r1^L - r2^L)/(r1 - r2) delta,
    r1, r2 = roots of z^2 - (alpha + beta1 - c (1 - beta1) h) z + alpha beta1            (P13.curved)

(h = 0: r = alpha, beta1, the pure-noise form above; SGD + WD: Delta W_{s+L} = -eta (1 - eta(lambda + h))^(L-1)
delta; complex roots, i.e. AdamW with (1-beta1) c h > (sqrt(alpha) - sqrt(beta1))^2, ring). The final loss
changes by

    Delta L_{s+L} = <grad L(W_{s+L}), Delta W_{s+L}> + (h/2) ||Delta W_{s+L}||^2                  (P13.loss)

exactly (L is quadratic); the first term is the first-order change, the second is second order in delta. Over
the noise, at stationarity, E grad L(W) = gbar = -lambda h / (lambda + h c/eta) W* (decay balances the mean
gradient: eta lambda Wbar = -c gbar). So E Delta L_{s+L} = -G_L <gbar, delta> + (h/2) G_L^2 ||delta||^2,
G_L = (c/eta) eta (1-beta1)(r1^L - r2^L)/(r1 - r2): for SGD + WD exact, for AdamW to first order in delta
and in the signal/noise ratio |gbar|/sigma, with v's fluctuation folded into the gain (P13.gain)

    kappa = sigma E[u] / E[g] = 1 + (3/4)(1 - beta2)/(1 + beta2) - (1 - beta1)(1 - beta2)/(1 - beta1 beta2)
            + O((1 - beta2)^2)

(Jensen: E v^(-1/2) > (E v)^(-1/2); minus the correlation of v_t with the recent gradients in m_t; Gaussian
noise). The loss therefore forgets a gradient with the slow root: decay time 1/(-ln r1) ~ 1/(eta (lambda + h
c/eta)) < tau = 1/(eta lambda) (while beta1 < alpha, i.e. the momentum's own memory is the shorter one; in
general |r1| <= max(alpha, beta1): curvature only moves the two roots together). The weights remember for tau only along flat directions (h = 0), and there
the loss does not change (gbar = 0 and h = 0): Wang & Aitchison's tau is an upper bound of the loss's memory,
reached where the curvature is small compared with lambda.
"""
from __future__ import annotations

import numpy as np

__all__ = ["wd_timescale", "wd_timescale_exact", "gradient_influence", "tau_epochs",
           "ridge_optimal_weight_decay", "optimal_tau_epochs_sgd", "optimal_tau_epochs_adamw",
           "influence_roots", "curved_gradient_influence", "stationary_mean_gradient", "loss_influence",
           "adam_signal_gain", "loss_memory_time"]


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


def influence_roots(eta, weight_decay, curvature, beta1=0.0, gain=1.0):
    """Roots r1 (the slow one, largest modulus) and r2 of z^2 - (alpha + beta1 - eta gain (1 - beta1) h) z
    + alpha beta1 (complex when the momentum rings); ``gain`` = c/eta (SGD: 1; AdamW: kappa/sigma)."""
    a = 1.0 - np.asarray(eta, float) * weight_decay
    b = a + beta1 - eta * gain * (1.0 - beta1) * np.asarray(curvature, float)
    sq = np.sqrt(b.astype(complex) ** 2 - 4.0 * a * beta1)
    return (b + sq) / 2.0, (b - sq) / 2.0


def curved_gradient_influence(eta, weight_decay, lag, curvature, beta1=0.0, gain=1.0):
    """G_L with Delta W_{s+L} = -G_L delta on the noisy quadratic (module docstring, P13.curved), signed:
    eta gain (1-beta1)(r1^L - r2^L)/(r1 - r2); = eta (1 - eta(lambda + h))^(L-1) for SGD + WD (beta1 = 0);
    at critical damping (r1 = r2 = r) the limit eta gain (1-beta1) L r^(L-1)."""
    r1, r2 = influence_roots(eta, weight_decay, curvature, beta1, gain)
    L = np.asarray(lag, float)
    diff = r1 - r2
    crit = np.abs(diff) < 1e-12 * np.maximum(np.abs(r1), 1e-300)
    safe = np.where(crit, 1.0, diff)
    ratio = np.where(crit, L * r1 ** (L - 1.0), (r1**L - r2**L) / safe)
    return eta * gain * (1.0 - beta1) * np.real(ratio)


def stationary_mean_gradient(weight_decay, curvature, w_star, gain=1.0):
    """E grad L(W) at stationarity on the noisy quadratic: gbar = -lambda h W* / (lambda + gain h)
    (eta lambda Wbar = -eta gain gbar, gbar = h (Wbar - W*)); exact for SGD + WD (gain 1). Plain arithmetic:
    numpy or JAX arrays (also traced) pass through."""
    return -weight_decay * curvature * w_star / (weight_decay + gain * curvature)


def loss_influence(eta, weight_decay, lag, curvature, grad_dot_delta, delta_sq=0.0, beta1=0.0, gain=1.0):
    """E Delta L_{s+L} = -G_L <gbar, delta> + (h/2) G_L^2 ||delta||^2 (P13.loss): the expected change of the loss
    at step s + L after the gradient of step s changed by delta; ``grad_dot_delta`` = <gbar, delta>. The first
    term is the first-order change <E grad L, Delta W>; the second is exact second order (quadratic loss)."""
    G = curved_gradient_influence(eta, weight_decay, lag, curvature, beta1, gain)
    return -G * np.asarray(grad_dot_delta, float) + 0.5 * np.asarray(curvature, float) * G**2 * delta_sq


def adam_signal_gain(beta1, beta2):
    """kappa = sigma E[m/sqrt(v)] / E[g] for a weak signal in Gaussian noise of variance sigma^2, stationary, first
    order in 1 - beta2 (P13.gain): 1 + (3/4)(1-b2)/(1+b2) - (1-b1)(1-b2)/(1-b1 b2)."""
    b1, b2 = np.asarray(beta1, float), np.asarray(beta2, float)
    return 1.0 + 0.75 * (1.0 - b2) / (1.0 + b2) - (1.0 - b1) * (1.0 - b2) / (1.0 - b1 * b2)


def loss_memory_time(eta, weight_decay, curvature, beta1=0.0, gain=1.0):
    """Decay time of the loss influence for L >> 1/(1-beta1): 1/(-ln|r1|) (SGD + WD: 1/(-ln(1 - eta(lambda + h))));
    <= max(wd_timescale_exact, 1/(-ln beta1)), i.e. <= tau while beta1 < 1 - eta lambda (equal at h = 0)."""
    r1, _ = influence_roots(eta, weight_decay, curvature, beta1, gain)
    return -1.0 / np.log(np.abs(r1))
