"""Learning-rate schedules versus the weight-decay equilibrium, and the corrected weight decay.

Source: A. Defazio, *Why Gradients Rapidly Increase Near the End of Training*, 2025
(arXiv 2506.02285), building on van Laarhoven (2017). For a scale-invariant (normalized) weight x
with gradient g (so <x, g> = 0), SGD + WD obeys ||x'||^2 = (1 - eta lambda)^2 ||x||^2 + eta^2 ||g||^2
and its steady state is

    ||g|| / ||x|| = sqrt(2 lambda / eta)                      (Defazio, Eq. for SGD; leading order)

(exact fixed point of the recursion: sqrt(lambda (2 - eta lambda) / eta), see
:func:`scaleinv.theory.equilibrium_grad_ratio`). Under a schedule eta_t the target moves; with the
corrected weight decay lambda_t = lambda eta_t / eta_max ("SGDC" / "AdamC") lambda_t / eta_t is
constant and so is the target.

Derived here (``proofs_check.schedules`` has the sympy derivations), on the constant-sigma toy
(||grad L(x_bar)|| = sigma, so ||g||/||x|| = sigma/||x||^2) and in continuous time:

* SGD:   y = ||x||^4 obeys the LINEAR ODE  dy/dt = -4 lambda_t eta_t y + 2 sigma^2 eta_t^2;
* AdamW: y = ||x||^2 obeys                 dy/dt = -2 lambda_t eta_t y + d eta_t^2
  (random-walk model of the rotational equilibrium: each normalised update has long-run squared
  length d = number of coordinates; Adam's eps neglected, its v in steady state).

Both are y' = -c lambda_t eta_t y + b eta_t^2 with (c, b) = (4, 2 sigma^2) or (2, d). Their
quasi-static solution y_qs = b eta_t / (c lambda_t) gives the steady ratios; the relaxation rate
is c lambda_t eta_t per step, so the ratio tracks the schedule while the adiabaticity

    eps_t = |d ln y_qs / dt| / (c lambda_t eta_t)   (= -eta_t' / (c lambda eta_t^2), uncorrected)

is small, and LAGS (norm too large, ratio below target) where it is not: to first order
y = y_qs (1 + eps_t), i.e. ratio / target = (1 + eps_t)^(-1/2) (SGD) or (1 + eps_t)^(-1) (AdamW).
With a schedule that decays to 0, eps_t -> infinity at the end of training, so the lag always
sets in; the final fraction a = 1 - t/T of training where it exceeds a given size scales as
K^(-1/2) for linear decay and K^(-1/3) for cosine decay, K = eta_max lambda T.
"""
from __future__ import annotations

import numpy as np

from scaleinv.theory.adamw_noise import adamw_noise_beta2_factor

__all__ = [
    "SCHEDULES",
    "lr_schedule",
    "lr_schedule_slope",
    "corrected_weight_decay",
    "steady_grad_ratio_sgd",
    "steady_grad_ratio_adamw",
    "norm_ode_coefficients",
    "adiabaticity",
    "lag_first_order",
    "norm_ode_solution",
    "grad_ratio_from_norm_ode",
    "adamw_norm_mean_field",
    "adamw_source_factor",
    "steady_sq_norm_adamw_corrected",
    "steady_grad_ratio_adamw_corrected",
    "lag_onset_fraction",
    "lag_onset_exponent",
]

SCHEDULES = ("constant", "linear", "cosine")
OPTIMIZERS = ("sgd", "adamw")


def _check(kind, allowed, name):
    if kind not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {kind!r}")


def lr_schedule(kind: str, t, eta_max, T):
    """eta_t for t in [0, T]: ``constant`` eta_max; ``linear`` eta_max (1 - t/T);
    ``cosine`` eta_max (1 + cos(pi t/T)) / 2 (both decay to 0 at t = T, no warm-up)."""
    _check(kind, SCHEDULES, "schedule")
    a = np.clip(np.asarray(t, float) / T, 0.0, 1.0)
    if kind == "constant":
        return eta_max * np.ones_like(a)
    if kind == "linear":
        return eta_max * (1.0 - a)
    return eta_max * 0.5 * (1.0 + np.cos(np.pi * a))


def lr_schedule_slope(kind: str, t, eta_max, T):
    """d eta_t / dt of :func:`lr_schedule`."""
    _check(kind, SCHEDULES, "schedule")
    a = np.clip(np.asarray(t, float) / T, 0.0, 1.0)
    if kind == "constant":
        return np.zeros_like(a)
    if kind == "linear":
        return -eta_max / T * np.ones_like(a)
    return -eta_max * np.pi / (2.0 * T) * np.sin(np.pi * a)


def corrected_weight_decay(eta_t, weight_decay, eta_max):
    """Defazio's corrected weight decay (AdamC / SGDC): lambda_t = lambda eta_t / eta_max, so the
    decay applied per step is eta_t lambda_t = lambda eta_t^2 / eta_max and lambda_t / eta_t is constant."""
    return weight_decay * np.asarray(eta_t, float) / eta_max


def steady_grad_ratio_sgd(eta, weight_decay):
    """Defazio (2025), SGD steady state of a normalized layer: ||g|| / ||x|| = sqrt(2 lambda / eta)
    (leading order in eta lambda; the exact fixed point of the norm recursion is
    sqrt(lambda (2 - eta lambda) / eta), smaller by sqrt(1 - eta lambda / 2))."""
    return np.sqrt(2.0 * weight_decay / np.asarray(eta, float))


def steady_grad_ratio_adamw(eta, weight_decay, sigma, dim):
    """AdamW steady ratio on the constant-sigma toy (derived here, not in Defazio's note): the
    rotational-equilibrium norm ||x||^2 = eta d / (2 lambda) (:func:`scaleinv.theory.equilibrium_norm_adamw`)
    and ||g|| = sigma / ||x|| give ||g|| / ||x|| = 2 lambda sigma / (eta d) -- it scales as lambda/eta,
    not sqrt(lambda/eta) as for SGD, so a decaying eta_t blows it up faster; lambda_t proportional
    to eta_t (AdamC) again keeps it constant."""
    return 2.0 * weight_decay * sigma / (np.asarray(eta, float) * dim)


def adamw_source_factor(eta, weight_decay, beta1, beta2=None):
    """Factor f by which AdamW's momentum and its finite-beta2 second moment scale the per-step source
    eta^2 d of the norm recursion s' = alpha^2 s + f eta^2 d (alpha = 1 - eta lambda), stationary:

        f = (1 - beta1)(1 + alpha beta1) / ((1 + beta1)(1 - alpha beta1)) * F2(eta, lambda, beta1, beta2)

    The first factor is exact in the pure-noise model (:func:`scaleinv.theory.adamw_noise_sq_norm`, N1:
    E||W||^2 = f eta^2 d / (1 - alpha^2) with beta2 -> 1), the second is Adam's finite-beta2 correction
    F2 = :func:`scaleinv.theory.adamw_noise_beta2_factor` (N3, first order in 1 - beta2; 1 if ``beta2`` is
    None). Both are in docs/ and ``proofs_check.adamw_noise``; e.g. eta lambda = 0.01, beta1 = 0.5,
    beta2 = 0.99: f = 0.98680 x 0.99021, stationary ||x||^2 = 1.25703 at d = 256 against eta d/(2 lambda) = 1.28
    (S1/S3: the leading-order ratio 2 lambda sigma/(eta d) = 0.78125 is 1.8 % below the corrected 0.79553)."""
    el = np.maximum(np.asarray(eta, float) * np.asarray(weight_decay, float), 1e-12)   # eta lambda -> 0: finite limit
    a = 1.0 - el
    b1 = float(beta1)
    f = (1.0 - b1) * (1.0 + a * b1) / ((1.0 + b1) * (1.0 - a * b1))
    if beta2 is not None:
        f = f * adamw_noise_beta2_factor(el, 1.0, b1, beta2)
    return f


def steady_sq_norm_adamw_corrected(eta, weight_decay, dim, beta1, beta2=None):
    """AdamW stationary ||x||^2 on the constant-sigma toy at finite eta lambda and beta2 (corrected form of
    eta d / (2 lambda)): f eta^2 d / (1 - alpha^2), f = :func:`adamw_source_factor`
    (= :func:`scaleinv.theory.adamw_noise_sq_norm` x :func:`scaleinv.theory.adamw_noise_beta2_factor`)."""
    eta, wd = np.asarray(eta, float), np.asarray(weight_decay, float)
    # eta^2 / (1 - alpha^2) = eta / (lambda (2 - eta lambda)): no cancellation when eta lambda underflows 1 - alpha^2
    return adamw_source_factor(eta, wd, beta1, beta2) * eta * dim / (wd * (2.0 - eta * wd))


def steady_grad_ratio_adamw_corrected(eta, weight_decay, sigma, dim, beta1, beta2=None):
    """||g||/||x|| = sigma / ||x||^2 at the corrected stationary norm (:func:`steady_sq_norm_adamw_corrected`);
    tends to :func:`steady_grad_ratio_adamw` (2 lambda sigma/(eta d)) as eta lambda -> 0, beta1 -> 0, beta2 -> 1."""
    return sigma / steady_sq_norm_adamw_corrected(eta, weight_decay, dim, beta1, beta2)


def norm_ode_coefficients(optimizer: str, sigma=1.0, dim=1):
    """(c, b) of the norm ODE y' = -c lambda_t eta_t y + b eta_t^2: SGD (y = ||x||^4): (4, 2 sigma^2);
    AdamW (y = ||x||^2): (2, d)."""
    _check(optimizer, OPTIMIZERS, "optimizer")
    return (4.0, 2.0 * sigma**2) if optimizer == "sgd" else (2.0, float(dim))


def adiabaticity(optimizer: str, eta_t, deta_dt, wd_t, dwd_dt=0.0):
    """eps_t = |d ln y_qs/dt| / (c lambda_t eta_t) with y_qs = b eta_t / (c lambda_t):
    (|eta'/eta - lambda'/lambda|) / (c lambda_t eta_t). Zero for the corrected weight decay."""
    c, _ = norm_ode_coefficients(optimizer)
    eta_t, wd_t = np.asarray(eta_t, float), np.asarray(wd_t, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        dlog = np.abs(np.asarray(deta_dt) / eta_t - np.asarray(dwd_dt) / wd_t)
        return dlog / (c * wd_t * eta_t)


def lag_first_order(optimizer: str, eps):
    """First-order adiabatic prediction of (measured ratio) / (quasi-static ratio):
    y = y_qs (1 + eps) and ratio = sigma / ||x||^2, so (1 + eps)^(-1/2) for SGD (y = ||x||^4) and
    (1 + eps)^(-1) for AdamW (y = ||x||^2)."""
    _check(optimizer, OPTIMIZERS, "optimizer")
    p = 0.5 if optimizer == "sgd" else 1.0
    return (1.0 + np.asarray(eps, float)) ** (-p)


def norm_ode_solution(optimizer: str, etas, wds, y0, sigma=1.0, dim=1):
    """Exact solution of the norm ODE with eta, lambda constant over each unit step t -> t+1:

        y_{t+1} = e^{-a_t} y_t + (b eta_t / (c lambda_t)) (1 - e^{-a_t}),  a_t = c lambda_t eta_t

    (the integrating-factor solution y(t) = e^{-A(t)} [y0 + int b eta^2 e^{A}], A = int c lambda eta).
    ``etas``, ``wds``: arrays [..., T]; returns y_t for t = 0..T-1 (same shape)."""
    c, b = norm_ode_coefficients(optimizer, sigma, dim)
    etas, wds = np.broadcast_arrays(np.asarray(etas, float), np.asarray(wds, float))
    a = c * wds * etas
    decay = np.exp(-a)
    with np.errstate(divide="ignore", invalid="ignore"):
        drive = np.where(a > 1e-12, b * etas / (c * wds) * (-np.expm1(-a)), b * etas**2)
    y = np.empty_like(etas)
    cur = np.broadcast_to(np.asarray(y0, float), etas.shape[:-1]).copy()
    for t in range(etas.shape[-1]):
        y[..., t] = cur
        cur = decay[..., t] * cur + drive[..., t]
    return y


def grad_ratio_from_norm_ode(optimizer: str, y, sigma=1.0):
    """||g|| / ||x|| = sigma / ||x||^2 on the constant-sigma toy, from the ODE variable y."""
    _check(optimizer, OPTIMIZERS, "optimizer")
    sq = np.sqrt(y) if optimizer == "sgd" else np.asarray(y)
    return sigma / sq


def adamw_norm_mean_field(etas, wds, sq0, dim, sigma=1.0, beta2=0.999, beta1=None):
    """AdamW ||x_t||^2 on the constant-sigma toy in mean field WITH the lag of Adam's v (the
    closed-form ODE assumes v in steady state, which fails when ||x|| changes within ~1/(1-beta2)
    steps; same recursion as :func:`scaleinv.theory.equilibrium_approach_steps`):

        q_t = sigma^2 / (d s_t)  (E g_i^2),  v_t = beta2 v_{t-1} + (1 - beta2) q_t,  v_hat = v_t/(1 - beta2^(t+1)),
        s_{t+1} = (1 - eta_t lambda_t)^2 s_t + f_t eta_t^2 d q_t / v_hat_t,

    f_t = 1, or with ``beta1`` given the corrected source :func:`adamw_source_factor` (eta_t, lambda_t, beta1,
    beta2): momentum correlations (N1, exact at constant eta lambda) and v's fluctuation (N3, first order in
    1 - beta2), applied quasi-statically (beta1's memory is a few steps; the v lag itself is the recursion).
    ``etas``, ``wds``: arrays [..., T]; returns s_t = ||x_t||^2, t = 0..T-1."""
    etas, wds = np.broadcast_arrays(np.asarray(etas, float), np.asarray(wds, float))
    s = np.broadcast_to(np.asarray(sq0, float), etas.shape[:-1]).copy()
    v = np.zeros_like(s)
    out = np.empty_like(etas)
    f = np.ones_like(etas) if beta1 is None else np.broadcast_to(adamw_source_factor(etas, wds, beta1, beta2), etas.shape)
    for t in range(etas.shape[-1]):
        out[..., t] = s
        q = sigma**2 / (dim * s)
        v = beta2 * v + (1.0 - beta2) * q
        s = (1.0 - etas[..., t] * wds[..., t]) ** 2 * s + f[..., t] * etas[..., t] ** 2 * dim * q / (v / (1.0 - beta2 ** (t + 1)))
    return out


def lag_onset_fraction(kind: str, K, optimizer: str = "sgd", delta: float = 0.1):
    """First-order adiabatic prediction of the final fraction a = 1 - t/T of a schedule decaying to
    0 in which the ratio lags more than ``delta`` below its quasi-static target
    (ratio / target < 1 / (1 + delta)), for K = eta_max lambda T (uncorrected weight decay).

    eps(a) = (1+delta)^2 - 1 (SGD) or delta (AdamW) with eps(a) = -eta'/(c lambda eta^2):
    linear  eps = 1 / (c K a^2)                         -> a = 1 / sqrt(c K eps);
    cosine  eps = 2 pi sin(pi a) / (c K (1 - cos pi a)^2) -> solved by bisection (~ K^(-1/3)).
    """
    _check(kind, ("linear", "cosine"), "schedule")
    c, _ = norm_ode_coefficients(optimizer)
    eps = (1.0 + delta) ** 2 - 1.0 if optimizer == "sgd" else delta
    K = np.asarray(K, float)
    if kind == "linear":
        return 1.0 / np.sqrt(c * K * eps)

    def e(a, k):
        return 2.0 * np.pi * np.sin(np.pi * a) / (c * k * (1.0 - np.cos(np.pi * a)) ** 2)

    out = []
    for k in np.atleast_1d(K):
        lo, hi = 1e-9, 1.0                         # e decreases in a on (0, 1]
        if e(hi, k) >= eps:
            out.append(1.0)
            continue
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if e(mid, k) >= eps else (lo, mid)
        out.append(0.5 * (lo + hi))
    out = np.asarray(out)
    return out if K.ndim else float(out[0])


def lag_onset_exponent(kind: str):
    """d ln(lag onset fraction) / d ln K for large K: -1/2 (linear decay, eta ~ a), -1/3 (cosine,
    eta ~ a^2 near the end). In general eta ~ a^p gives eps ~ 1/(K a^(p+1)), exponent -1/(p+1)."""
    _check(kind, ("linear", "cosine"), "schedule")
    return -0.5 if kind == "linear" else -1.0 / 3.0
