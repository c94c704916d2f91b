"""Closed forms of the rotational equilibrium (Kosson et al. 2024) in scaleinv.theory: special
cases, the identities linking angle and norm, and one short simulation per key optimizer."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from scaleinv import theory as T
from scaleinv.theory import kosson2024
from toyproblems import problems as P


def test_special_cases_reduce_to_sgd():
    eta, wd = 0.1, 0.01
    sgd = T.equilibrium_angle_sgd(eta, wd)
    assert sgd == pytest.approx(np.sqrt(2 * eta * wd), rel=1e-15)
    assert T.equilibrium_angle_sgdm(eta, wd, 0.0) == pytest.approx(sgd, rel=1e-15)
    assert T.equilibrium_angle_adamw(eta, wd, 0.0) == pytest.approx(sgd, rel=1e-15)
    # exact fixed-point angle of the constant-sigma map: arccos(1 - eta lambda) = sqrt(2 eta lambda)(1 + eta lambda/12 + ...)
    ex = T.equilibrium_angle_sgd_exact(eta, wd)
    assert ex / sgd - 1 == pytest.approx(eta * wd / 12, rel=1e-2)
    assert T.equilibrium_angle("adamw", eta, wd, beta1=0.9) == T.equilibrium_angle_adamw(eta, wd, 0.9)
    with pytest.raises(ValueError, match="optimizer"):
        T.equilibrium_angle("rmsprop", eta, wd)


@pytest.mark.parametrize("eta,wd,beta1,sigma,dim", [(1e-3, 0.1, 0.9, 1.0, 256), (3e-2, 0.5, 0.5, 7.0, 1024)])
def test_angle_equals_update_rms_over_norm(eta, wd, beta1, sigma, dim):
    """eta_r^2 = E||eta u_perp||^2 / ||p*||^2 with the model's update RMS, for every optimizer."""
    a = beta1
    n = T.equilibrium_norm_sgdm(eta, wd, a, sigma)
    assert T.equilibrium_angle_sgdm(eta, wd, a) ** 2 == pytest.approx(eta**2 * sigma**2 / n**4 / (1 - a**2), rel=1e-12)
    n = T.equilibrium_norm_adamw(eta, wd, dim)
    assert T.equilibrium_angle_adamw(eta, wd, beta1) ** 2 == pytest.approx(
        eta**2 * dim * (1 - beta1) / (1 + beta1) / n**2, rel=1e-12)
    n = T.equilibrium_norm_lion(eta, wd, beta1, 0.99, dim)
    assert T.equilibrium_angle_lion(eta, wd, beta1, 0.99) ** 2 == pytest.approx(eta**2 * dim / n**2, rel=1e-12)
    n = T.equilibrium_norm_lion_arcsin(eta, wd, beta1, 0.99, dim)
    assert T.equilibrium_angle_lion_arcsin(eta, wd, beta1, 0.99) ** 2 == pytest.approx(eta**2 * dim / n**2, rel=1e-12)
    # Adam+L2: the AdamW formula with the effective LR eta sqrt(dim) ||p|| / sigma (gradient-dependent)
    n = T.equilibrium_norm_adam_l2(eta, wd, sigma, dim)
    eff = eta * np.sqrt(dim) * n / sigma
    assert T.equilibrium_angle_adam_l2(eta, wd, beta1, sigma, dim) == pytest.approx(
        T.equilibrium_angle_adamw(eff, wd, beta1), rel=1e-12)
    # larger gradients rotate more slowly: eta_r ~ sigma^(-1/3)
    assert T.equilibrium_angle_adam_l2(eta, wd, beta1, 8 * sigma, dim) == pytest.approx(
        T.equilibrium_angle_adam_l2(eta, wd, beta1, sigma, dim) / 2, rel=1e-12)


def test_lion_arcsin_vs_linearised_form():
    """The two Lion forms agree (< 1 %) at the default betas and differ (> 5 %) at beta1 = 0.5."""
    r = T.equilibrium_angle_lion_arcsin(1e-4, 1.0, 0.9, 0.99) / T.equilibrium_angle_lion(1e-4, 1.0, 0.9, 0.99)
    assert abs(r - 1) < 0.01
    r = T.equilibrium_angle_lion_arcsin(1e-4, 1.0, 0.5, 0.9) / T.equilibrium_angle_lion(1e-4, 1.0, 0.5, 0.9)
    assert r < 0.95
    # K_eff reduces to 1 without momentum (beta1 = 0: independent signs)
    assert kosson2024._lion_sign_correlation_sum(0.0, 0.9) == pytest.approx(1.0, abs=1e-12)


def test_jax_inputs_and_approach_steps():
    v = T.equilibrium_angle_sgdm(jnp.array([0.1, 0.2]), 0.01, 0.9)
    np.testing.assert_allclose(np.asarray(v), np.sqrt(2 * np.array([0.1, 0.2]) * 0.01 / 1.9), rtol=1e-6)
    # the SGD approach time from 3x is ~c/(eta lambda) with the same c on the grid
    c = [T.equilibrium_approach_steps("sgd", e, w, start=3.0) * e * w for e, w in [(0.1, 0.01), (0.2, 0.02), (0.1, 0.005)]]
    assert max(c) / min(c) < 1.02
    with pytest.raises(ValueError, match="optimizer"):
        T.equilibrium_approach_steps("lion", 0.1, 0.01)


@pytest.mark.parametrize("name", ["sgd", "sgdm", "adamw"])
def test_short_simulation_matches(name):
    """Constant-sigma toy (dim = 512, random-walk gradients): RMS angle at equilibrium within 3 %."""
    dim, steps, eta, wd, beta = 512, 2500, {"sgd": 0.2, "sgdm": 0.2, "adamw": 0.02}[name], \
        {"sgd": 0.02, "sgdm": 0.02, "adamw": 0.2}[name], 0.8
    prob = P.constant_sigma(dim, 1.0)
    opt = {"sgd": optax.chain(optax.add_decayed_weights(wd), optax.sgd(eta)),
           "sgdm": optax.chain(optax.add_decayed_weights(wd), optax.sgd(eta, momentum=beta)),
           "adamw": optax.adamw(eta, b1=beta, b2=0.99, eps=1e-12, weight_decay=wd)}[name]
    pred = {"sgd": T.equilibrium_angle_sgd(eta, wd), "sgdm": T.equilibrium_angle_sgdm(eta, wd, beta),
            "adamw": T.equilibrium_angle_adamw(eta, wd, beta)}[name]
    with jax.enable_x64(True):
        x0 = prob.init(1.0, jax.random.PRNGKey(0))
        g = jax.grad(prob.loss)

        def step(c, t):
            x, s = c
            u, s = opt.update(g(x, jax.random.fold_in(jax.random.PRNGKey(1), t)), s, x)
            xn = x + u
            cos = jnp.vdot(x, xn) / (jnp.linalg.norm(x) * jnp.linalg.norm(xn))
            return (xn, s), jnp.arccos(jnp.clip(cos, -1, 1))

        ang = np.asarray(jax.jit(lambda x: jax.lax.scan(step, (x, opt.init(x)), jnp.arange(steps))[1])(x0))
    rms = np.sqrt(np.mean(ang[steps // 2:] ** 2))
    assert abs(rms / pred - 1) < 0.03, (name, rms, pred)
