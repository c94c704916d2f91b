"""Toy problems: scale invariance, norm growth of GD, equilibrium, exp-LR equivalence."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scaleinv import theory
from scaleinv.homogeneity import scale_params
from scaleinv.optim import exponential_lr, sgd_wd
from toyproblems import problems as P
from toyproblems.run import run, sweep


@given(c=st.floats(1e-4, 1e4), group=st.sampled_from(["A", "B"]), d=st.integers(2, 4), r=st.integers(1, 2),
       seed=st.integers(0, 2**16))
def test_normalized_mf_scale_invariant_in_each_factor(c, group, d, r, seed):
    with jax.enable_x64(True):
        prob = P.normalized_mf(d=d, r=r)
        k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
        p = {"A": jax.random.normal(k1, (d, r)), "B": jax.random.normal(k2, (d, r))}
        np.testing.assert_allclose(float(prob.loss(scale_params(p, c, prob.groups[group]))), float(prob.loss(p)),
                                   rtol=1e-10)


@given(eta=st.floats(1e-3, 10.0), seed=st.integers(0, 2**16),
       which=st.sampled_from(["nmf", "linreg", "const"]))
def test_gd_step_never_decreases_norm_on_scale_invariant_loss(eta, seed, which):
    """<x, grad L> = 0  =>  ||x - eta grad L||^2 = ||x||^2 + eta^2 ||grad L||^2 >= ||x||^2."""
    with jax.enable_x64(True):
        key = jax.random.PRNGKey(seed)
        if which == "nmf":
            prob = P.normalized_mf(d=3, r=2)
            k1, k2 = jax.random.split(key)
            x = {"A": jax.random.normal(k1, (3, 2)), "B": jax.random.normal(k2, (3, 2))}
        elif which == "linreg":
            prob = P.normalized_linreg(dim=8, n=16, noise=0.1)
            x = prob.init(1.0, key)
        else:
            prob = P.constant_sigma(dim=8)
            x = prob.init(1.0, key)
        g = jax.grad(prob.loss)(x, key)
        new = jax.tree.map(lambda a, b: a - eta * b, x, g)
        sq = lambda t: float(sum(jnp.sum(v**2) for v in jax.tree.leaves(t)))
        np.testing.assert_allclose(sq(new), sq(x) + eta**2 * sq(g), rtol=1e-9)
        assert sq(new) >= sq(x)


@given(seed=st.integers(0, 2**16), scale=st.floats(1e-3, 1e3))
def test_constant_sigma_gradient_norm_is_exact(seed, scale):
    with jax.enable_x64(True):
        prob = P.constant_sigma(dim=16, sigma=0.7)
        x = prob.init(scale, jax.random.PRNGKey(seed))
        g = jax.grad(prob.loss)(x, jax.random.PRNGKey(seed + 1))
        np.testing.assert_allclose(float(jnp.linalg.norm(g)), 0.7 / scale, rtol=1e-8)
        assert abs(float(jnp.vdot(g, x))) < 1e-10 * float(jnp.linalg.norm(g) * scale)


@pytest.mark.parametrize("eta, lam, sigma", [(0.1, 0.05, 1.0), (0.5, 0.01, 2.0), (0.02, 0.2, 0.5)])
def test_sgd_wd_reaches_derived_equilibrium(eta, lam, sigma):
    """||x||^2 -> sqrt(eta/(lam(2-eta lam))) sigma (within 1e-6) -- and NOT the talk's sqrt(2) larger value."""
    with jax.enable_x64(True):
        prob = P.constant_sigma(dim=32, sigma=sigma)
        T = int(30 / (eta * lam))
        tr = jax.jit(lambda x: run(prob.loss, sgd_wd(eta, lam), x, T, jax.random.PRNGKey(1)))(
            prob.init(5.0, jax.random.PRNGKey(0)))
        meas = float(tr.sq_norm[-1])
        np.testing.assert_allclose(meas, float(theory.equilibrium_sq_norm(eta, lam, sigma)), rtol=1e-6)
        assert abs(meas / float(theory.equilibrium_sq_norm_as_stated(eta, lam, sigma)) - 1) > 0.25
        ratio = float(tr.grad_norm[-1] / np.sqrt(tr.sq_norm[-1]))
        np.testing.assert_allclose(ratio, float(theory.equilibrium_grad_ratio(eta, lam)), rtol=1e-5)


@given(eta=st.floats(0.01, 0.2), lam=st.floats(1e-3, 0.02), seed=st.integers(0, 2**10))
def test_wd_equals_exponential_lr(eta, lam, seed):
    """Exact in exact arithmetic for any (eta, lam); the range keeps the angular step
    (~sqrt(2 eta lam)) small so float64 rounding is not amplified by chaotic dynamics."""
    with jax.enable_x64(True):
        prob = P.normalized_linreg(dim=6, n=12, noise=0.2, data_seed=seed)
        x0 = prob.init(1.0, jax.random.PRNGKey(seed))
        T = 200
        a = run(prob.loss, sgd_wd(eta, lam), x0, T, jax.random.PRNGKey(0))
        b = run(prob.loss, optax.sgd(exponential_lr(eta, lam)), x0, T, jax.random.PRNGKey(0))
        c = theory.wd_to_exp_lr_rescale(T, eta, lam)
        np.testing.assert_allclose(np.asarray(b.final), c * np.asarray(a.final), rtol=1e-9)
        # identical directions at every step => identical losses
        np.testing.assert_allclose(np.asarray(a.loss), np.asarray(b.loss), rtol=1e-9)


def test_ex1_divergence_threshold_sharp():
    """Just above the formula GD diverges; just below (X0 >> X*) it does not."""
    with jax.enable_x64(True):
        k, X0 = 3, 50.0
        prob = P.ex1(k)
        eta = float(theory.ex1_divergence_lr(X0, float(P.ex1_tilde_grad(X0)), k))
        x0 = prob.init(X0 ** (1 / (2 * k)))
        out = {m: float(jnp.prod(run(prob.loss, optax.sgd(m * eta), x0, 300, jax.random.PRNGKey(0)).final))
               for m in (0.99, 1.01)}
        assert np.isfinite(out[0.99]) and abs(out[0.99]) < 10 * X0
        assert not (np.isfinite(out[1.01]) and abs(out[1.01]) < 10 * X0)


def test_sweep_matches_individual_runs():
    with jax.enable_x64(True):
        prob = P.constant_sigma(dim=8)
        x0 = jnp.stack([prob.init(s, jax.random.PRNGKey(0)) for s in (0.1, 1.0, 10.0)])
        etas = jnp.array([0.1, 0.2, 0.3])
        tr = sweep(lambda eta: sgd_wd(eta, 0.01), prob.loss, x0, 50, jax.random.PRNGKey(3), {"eta": etas})
        keys = jax.random.split(jax.random.PRNGKey(3), 3)
        for i in range(3):
            one = run(prob.loss, sgd_wd(float(etas[i]), 0.01), x0[i], 50, keys[i])
            np.testing.assert_allclose(np.asarray(tr.sq_norm[i]), np.asarray(one.sq_norm), rtol=1e-10)
        with pytest.raises(ValueError, match="hparams"):
            sweep(lambda eta: sgd_wd(eta, 0.01), prob.loss, x0, 5, jax.random.PRNGKey(0), {"eta": etas[:2]})


def test_problem_bad_input():
    with pytest.raises(ValueError, match="k"):
        P.ex1(0)
    with pytest.raises(ValueError, match="heavy_tail"):
        P.constant_sigma(heavy_tail=1.5)
    with pytest.raises(ValueError, match="steps"):
        run(P.constant_sigma().loss, sgd_wd(0.1, 0.1), jnp.ones(64), 0, jax.random.PRNGKey(0))
