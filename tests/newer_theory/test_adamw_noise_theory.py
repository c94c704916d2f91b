"""scaleinv.theory.adamw_noise (AdamW under pure noise, exact) against proofs_check.adamw_noise, its
small-eta-lambda limit (R2.3) and a direct NumPy simulation of the model it is exact for."""
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from proofs_check import adamw_noise as PA
from scaleinv import theory
from scaleinv.theory import adamw_noise as AN


FORMS = {k: (sorted(v.free_symbols, key=lambda s: s.name), v) for k, v in PA.closed_forms().items()}
FUNCS = {k: (syms, sp.lambdify(syms, v, "numpy")) for k, (syms, v) in FORMS.items()}


def ev(name, **vals):
    syms, f = FUNCS[name]
    return float(f(*[vals[s.name] for s in syms]))


@settings(deadline=None, max_examples=40)
@given(e=st.floats(1e-3, 1.0), l=st.floats(1e-3, 0.9), b=st.floats(0.0, 0.99), d=st.integers(1, 4096))
def test_closed_forms_match_derivation(e, l, b, d):
    a = 1 - e * l
    np.testing.assert_allclose(AN.adamw_noise_sq_norm(e, l, b, d),
                               d * e**2 * ev("sq_norm_over_d_eta2", alpha=a, beta=b), rtol=1e-10)
    cos = ev("cross_over_d_eta", alpha=a, beta=b) / np.sqrt(ev("sq_norm_over_d_eta2", alpha=a, beta=b)
                                                                * ev("ema_var", beta=b))
    np.testing.assert_allclose(AN.adamw_noise_cosine(e, l, b), cos, rtol=1e-10, atol=1e-15)
    assert -1.0 <= AN.adamw_noise_cosine(e, l, b) <= 0.0


@settings(deadline=None, max_examples=30)
@given(l=st.floats(0.01, 1.0), b=st.floats(0.0, 0.95), d=st.integers(1, 4096))
def test_small_eta_lambda_limit_is_r23(l, b, d):
    e = 1e-7 / l                                    # eta lambda = 1e-7
    np.testing.assert_allclose(AN.adamw_noise_sq_norm(e, l, b, d), theory.equilibrium_norm_adamw(e, l, d) ** 2,
                               rtol=1e-5)
    np.testing.assert_allclose(AN.adamw_noise_sq_norm_ratio_to_r23(e, l, b), 1.0, rtol=1e-5)
    # the cosine vanishes like -b sqrt(2 eta lambda/(1 - b^2))
    np.testing.assert_allclose(AN.adamw_noise_cosine(e, l, b), -b * np.sqrt(2e-7 / (1 - b**2)), rtol=1e-3, atol=1e-12)


def test_model_simulation_numpy():
    """The model itself (u = EMA of unit noise, no Adam v) simulated directly: E||W||^2 and the cosine."""
    rng = np.random.default_rng(0)
    eta, wd, b, d, T, burn = 0.01, 10.0, 0.9, 2000, 3000, 1000        # eta lambda = 0.1: R2.3 is 47 % off
    W, m = np.zeros(d), np.zeros(d)
    sq, cos = [], []
    for t in range(T):
        m = b * m + (1 - b) * rng.standard_normal(d)
        if t >= burn:
            sq.append(W @ W)
            cos.append(W @ m / np.linalg.norm(W) / np.linalg.norm(m))
        W = (1 - eta * wd) * W - eta * m
    assert np.mean(sq) == pytest.approx(AN.adamw_noise_sq_norm(eta, wd, b, d), rel=0.02)
    assert np.mean(cos) == pytest.approx(AN.adamw_noise_cosine(eta, wd, b), rel=0.02)
    assert AN.adamw_noise_sq_norm_ratio_to_r23(eta, wd, b) == pytest.approx(0.5277, abs=1e-3)


def test_eps_factor():
    assert AN.adamw_noise_eps_factor(0.0) == 1.0
    assert AN.adamw_noise_eps_factor(1.0) == pytest.approx(0.25)
    assert AN.adamw_noise_eps_factor(1.0, grad_rms=3.0) == pytest.approx(0.5625)


_B2 = PA.beta2_relative_change()
_B2SYMS = sorted(_B2.free_symbols, key=lambda s: s.name)
_B2F = sp.lambdify(_B2SYMS, _B2, "numpy")


@settings(deadline=None, max_examples=30)
@given(e=st.floats(0.05, 1.0), el=st.floats(0.02, 0.5), b=st.floats(0.0, 0.95), b2=st.floats(0.5, 0.9999))
def test_beta2_factor_matches_derivation_and_double_sum(e, el, b, b2):
    """theory.adamw_noise_beta2_factor = the sympy derivation (P12.beta2) = the double sum over lags it
    comes from, evaluated term by term (truncated where alpha^(j+k) < 1e-13; eta lambda >= 0.02 keeps it
    below 1500 x 1500 terms)."""
    l = el / e
    a = 1 - el
    got = AN.adamw_noise_beta2_factor(e, l, b, b2) - 1
    vals = {"alpha": a, "beta": b, "beta2": b2}
    np.testing.assert_allclose(got, float(_B2F(*[vals[s.name] for s in _B2SYMS])), rtol=1e-9, atol=1e-15)
    J = int(np.ceil(np.log(1e-13) / np.log(a))) + 1
    j = np.arange(J)
    A = a**j
    lag = np.abs(j[:, None] - j[None, :])
    later = j[None, :] - j[:, None] >= 0                     # a - b = k - j >= 0: delta at the later index
    R0 = (1 - b) / (1 + b) * b**lag
    second = (1 - b2) / (1 + b2) * R0 * (1.5 + 0.5 * b2**lag)
    T1 = 2 * (1 - b) ** 2 * (1 - b2) / (1 - b**2 * b2) * np.where(later, (b * b2) ** lag, b**lag)
    W = A[:, None] * A[None, :]
    np.testing.assert_allclose(got, (W * (second - 0.5 * (T1 + T1.T))).sum() / (W * R0).sum(), rtol=1e-6, atol=1e-12)
    assert AN.adamw_noise_beta2_factor(e, l, b, 1.0) == 1.0          # beta2 -> 1: v_hat = E g^2, the N1 model


def test_beta2_factor_monte_carlo_numpy():
    """The first-order beta2 factor against a direct NumPy run of Adam's direction m/sqrt(v) on Gaussian noise,
    paired with u = m on the same noise (eta lambda = 0.05, beta1 = 0.9, beta2 = 0.99: predicted -0.87 %)."""
    rng = np.random.default_rng(1)
    el, b, b2, d, burn, T = 0.05, 0.9, 0.99, 4000, 500, 2500
    m, v, W, Wm = np.zeros(d), np.ones(d), np.zeros(d), np.zeros(d)
    acc = accm = 0.0
    for t in range(T):
        g = rng.standard_normal(d)
        m = b * m + (1 - b) * g
        v = b2 * v + (1 - b2) * g * g
        W = (1 - el) * W - m / np.sqrt(v)
        Wm = (1 - el) * Wm - m
        if t >= burn:
            acc += W @ W
            accm += Wm @ Wm
    pred = AN.adamw_noise_beta2_factor(1.0, el, b, b2) - 1
    assert pred == pytest.approx(-0.00871, abs=1e-5)
    assert acc / accm - 1 == pytest.approx(pred, rel=0.15)


# ---------------------------------------------------------------- Wang & Aitchison timescale (M group)
from proofs_check import timescale as PT  # noqa: E402
from scaleinv.theory import wang2025 as W25  # noqa: E402

_I = PT.closed_forms()["influence"]
_ISYMS = sorted(_I.free_symbols, key=lambda s: s.name)
_IF = sp.lambdify(_ISYMS, _I, "numpy")


@settings(deadline=None, max_examples=40)
@given(e=st.floats(1e-3, 0.5), l=st.floats(1e-3, 0.9), b=st.floats(0.0, 0.95), L=st.integers(1, 300))
def test_gradient_influence_matches_derivation(e, l, b, L):
    a = 1 - e * l
    if abs(a - b) < 1e-3:
        return                                          # the alpha = beta branch is not the closed form's
    vals = {"alpha": a, "beta": b, "L": L}
    derived = e * float(_IF(*[vals[s.name] for s in _ISYMS]))
    np.testing.assert_allclose(W25.gradient_influence(e, l, L, beta1=b) if b > 0 else W25.gradient_influence(e, l, L),
                               derived if b > 0 else e * a ** (L - 1), rtol=1e-9)


def test_timescales():
    assert W25.wd_timescale(0.01, 1.0) == pytest.approx(100.0)
    assert W25.wd_timescale_exact(0.01, 1.0) == pytest.approx(99.4992, rel=1e-5)
    # SGD is the beta1 -> 0 limit of the AdamW form
    assert W25.gradient_influence(0.1, 0.1, 7, beta1=1e-12) == pytest.approx(W25.gradient_influence(0.1, 0.1, 7), rel=1e-9)


@settings(deadline=None, max_examples=40)
@given(eta=st.floats(1e-3, 1.0), B=st.integers(1, 512), n=st.integers(1, 10**6), s2=st.floats(0.01, 10.0),
       r2=st.floats(0.01, 10.0), d=st.integers(1, 1000))
def test_dataset_scaling_rule_closed_forms(eta, B, n, s2, r2, d):
    """P13.ridge: with the Bayes-optimal ridge lambda* = sigma^2 d/(N r^2) the timescale in epochs,
    B/(eta lambda* N), is B r^2/(eta sigma^2 d) for every N (the sympy derivation's value); AdamW's mean-field
    form is the SGD one with the penalty scaled by sqrt(v) = sigma/sqrt(B)."""
    lam = W25.ridge_optimal_weight_decay(n, s2, r2, d)
    lam_sym, tau_sym, syms = PT.ridge_tau()
    vals = dict(zip([s.name for s in syms], (s2, r2, d, n, B)))
    f = sp.lambdify(sorted(lam_sym.free_symbols, key=lambda s: s.name), lam_sym, "numpy")
    np.testing.assert_allclose(lam, f(*[vals[s.name] for s in sorted(lam_sym.free_symbols, key=lambda s: s.name)]),
                               rtol=1e-12)
    tau = W25.tau_epochs(eta, lam, B, n)
    np.testing.assert_allclose(tau, W25.optimal_tau_epochs_sgd(eta, B, s2, r2, d), rtol=1e-10)
    np.testing.assert_allclose(W25.tau_epochs(eta, lam / np.sqrt(s2 / B), B, n),
                               W25.optimal_tau_epochs_adamw(eta, B, s2, r2, d), rtol=1e-10)


def test_ridge_at_optimal_wd_is_the_posterior_mean():
    """The ridge solution at lambda* equals the posterior mean of Bayesian linear regression (numpy)."""
    rng = np.random.default_rng(0)
    n, d, s2, r2 = 40, 12, 0.7, 2.0
    X, y = rng.standard_normal((n, d)), rng.standard_normal(n)
    lam = W25.ridge_optimal_weight_decay(n, s2, r2, d)
    ridge = np.linalg.solve(X.T @ X / n + lam * np.eye(d), X.T @ y / n)
    post = np.linalg.solve(X.T @ X / s2 + (d / r2) * np.eye(d), X.T @ y / s2)
    np.testing.assert_allclose(ridge, post, rtol=1e-12)
