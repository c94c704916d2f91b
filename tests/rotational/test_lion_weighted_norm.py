"""Lion's equilibrium norm at finite eta lambda (issue 27 item R2.4): the alpha^k weighting of the lag
correlations (K_eff(alpha), kosson2024.equilibrium_norm_lion_weighted) checked against c's impulse-response
derivation (the impulse response as in test_lion_constant_pinned, independent of the helper's closed-form covariance), pinned
values, and a Monte-Carlo of Lion's sign updates with weight decay (the model itself, not the helper)."""
import numpy as np
import pytest

from scaleinv.theory import kosson2024 as K24
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _lion_impulse import impulse  # noqa: E402

# (eta lambda, beta1, beta2): K_eff(alpha), from impulse(b1, b2, weights=alpha^k)
PINNED = {(1e-3, 0.9, 0.99): 41.85772083277451, (1e-3, 0.5, 0.99): 2.724526773194217,
          (0.01, 0.9, 0.99): 23.43067150515926, (6e-3, 0.5, 0.9): 2.6831771082236893}


@pytest.mark.parametrize("cfg", sorted(PINNED))
def test_weighted_constant_matches_the_impulse_response_and_pins(cfg):
    el, b1, b2 = cfg
    a = 1.0 - el
    _, keff = impulse(b1, b2, weights=lambda k: a**k)
    np.testing.assert_allclose(keff, PINNED[cfg], rtol=1e-9)
    np.testing.assert_allclose(K24._lion_sign_correlation_sum(b1, b2, alpha=a), PINNED[cfg], rtol=1e-9)
    eta, d = el / 2.0, 64                  # lambda = 2
    np.testing.assert_allclose(K24.equilibrium_norm_lion_weighted(eta, 2.0, b1, b2, d),
                               np.sqrt(eta**2 * d * PINNED[cfg] / (1 - a**2)), rtol=1e-9)
    np.testing.assert_allclose(K24.equilibrium_angle_lion_weighted(eta, 2.0, b1, b2),
                               np.sqrt((1 - a**2) / PINNED[cfg]), rtol=1e-9)


def test_small_eta_lambda_limit_is_the_arcsine_form():
    np.testing.assert_allclose(K24.equilibrium_norm_lion_weighted(1e-8, 1.0, 0.9, 0.99, 256),
                               K24.equilibrium_norm_lion_arcsin(1e-8, 1.0, 0.9, 0.99, 256), rtol=1e-5)


def test_weighted_norm_by_monte_carlo_of_sign_updates():
    """p_{t+1} = alpha p_t - eta sign(c_t) per coordinate, Gaussian gradients independent of p (the model):
    E p^2 / eta^2 = K_eff(alpha) / (1 - alpha^2). At eta lambda = 0.01, beta = (0.9, 0.99) the unweighted arcsine
    form is 60 % off; the weighted one must hold to 2 % (standard error ~0.5 %)."""
    el, b1, b2 = 0.01, 0.9, 0.99
    a = 1.0 - el
    coords, burn, steps = 4000, 3000, 20000
    rng = np.random.default_rng(1)
    m = rng.normal(size=coords) * np.sqrt((1 - b2) / (1 + b2))
    p = np.zeros(coords)
    acc = 0.0
    for t in range(burn + steps):
        g = rng.normal(size=coords)
        c = b1 * m + (1 - b1) * g
        m = b2 * m + (1 - b2) * g
        p = a * p - np.sign(c)
        if t >= burn:
            acc += float(np.mean(p**2))
    measured = acc / steps
    weighted = K24._lion_sign_correlation_sum(b1, b2, alpha=a) / (1 - a**2)
    unweighted = K24._lion_sign_correlation_sum(b1, b2) / (2 * el)
    assert abs(measured / weighted - 1) < 0.02, (measured, weighted)
    assert abs(measured / unweighted - 1) > 0.3, (measured, unweighted)
