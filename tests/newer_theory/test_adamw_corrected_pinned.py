"""Pinned values of the corrected AdamW stationary norm used by S1 / S2 / S3 (issue 27: the leading-order
eta d/(2 lambda) was 1.8 % off at eta lambda = 0.01, beta1 = 0.5, beta2 = 0.99; the corrected form is
``defazio2025.adamw_source_factor`` / ``steady_sq_norm_adamw_corrected``)."""
import numpy as np
import pytest

from scaleinv.theory import adamw_noise as AN
from scaleinv.theory import defazio2025 as TS


def test_source_factor_pinned_by_hand():
    # (1 - b1)(1 + a b1)/((1 + b1)(1 - a b1)) at a = 0.99, b1 = 0.5: 0.7475 / 0.7575
    assert TS.adamw_source_factor(0.01, 1.0, 0.5) == pytest.approx(0.7475 / 0.7575, rel=1e-14)
    assert TS.adamw_source_factor(0.01, 1.0, 0.5, 0.99) == pytest.approx(0.98679868 * 0.99021349, rel=1e-7)
    assert TS.steady_sq_norm_adamw_corrected(0.01, 1.0, 256, 0.5, 0.99) == pytest.approx(1.2570261, rel=1e-7)
    assert TS.steady_grad_ratio_adamw_corrected(0.01, 1.0, 1.0, 256, 0.5, 0.99) == pytest.approx(0.7955284, rel=1e-7)


def test_momentum_factor_from_an_independent_lag_sum():
    """E||W||^2 = eta^2 d sum_{j,k} alpha^(j+k) Cov(m_j, m_k), Cov = b1^|j-k| (1-b1)/(1+b1): a truncated double sum,
    not the closed form; / (eta^2 d / (1 - alpha^2)) is the source factor (beta2 -> 1)."""
    for el, b1 in ((0.01, 0.5), (0.05, 0.9)):
        a = 1.0 - el
        j = np.arange(4000)
        cov = b1 ** np.abs(j[:, None] - j[None, :]) * (1 - b1) / (1 + b1)
        s = float(np.sum(a ** (j[:, None] + j[None, :]) * cov))
        assert TS.adamw_source_factor(el, 1.0, b1) == pytest.approx(s * (1 - a**2), rel=1e-9)


def test_corrected_norm_is_the_n1_n3_product_and_limits():
    for eta, wd, b1, b2 in ((0.01, 1.0, 0.5, 0.99), (0.001, 20.0, 0.9, 0.999)):
        want = AN.adamw_noise_sq_norm(eta, wd, b1, 64) * AN.adamw_noise_beta2_factor(eta, wd, b1, b2)
        assert TS.steady_sq_norm_adamw_corrected(eta, wd, 64, b1, b2) == pytest.approx(want, rel=1e-12)
    # eta lambda -> 0, beta1 -> 0, beta2 -> 1: the leading-order 2 lambda sigma/(eta d)
    assert TS.steady_grad_ratio_adamw_corrected(1e-6, 1.0, 1.0, 256, 0.0) == pytest.approx(
        TS.steady_grad_ratio_adamw(1e-6, 1.0, 1.0, 256), rel=1e-5)
    assert np.isfinite(TS.adamw_source_factor(0.0, 1.0, 0.5, 0.99))        # eta_t = 0 at the end of a schedule


def test_mean_field_with_beta1_relaxes_to_the_corrected_norm():
    T = 3000
    s = TS.adamw_norm_mean_field(np.full(T, 0.01), np.full(T, 1.0), 1.0, 256, 1.0, 0.99, beta1=0.5)
    assert s[-1] == pytest.approx(TS.steady_sq_norm_adamw_corrected(0.01, 1.0, 256, 0.5, 0.99), rel=1e-6)
    s0 = TS.adamw_norm_mean_field(np.full(T, 0.01), np.full(T, 1.0), 1.0, 256, 1.0, 0.99)
    assert s0[-1] == pytest.approx(0.01 * 256 / (1.0 * (2 - 0.01)), rel=1e-6)       # beta1 omitted: unchanged
