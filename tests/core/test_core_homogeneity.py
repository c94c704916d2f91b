"""scaleinv.homogeneity: degrees, Euler's identity and gradient homogeneity on random models."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scaleinv.homogeneity import (estimate_degree, euler_residual, gradient_homogeneity_residual,
                                  scale_params)


def _monomial_model(k, shapes):
    """f(x) = prod_i sum(W_i) ... : a product of k linear forms of the leaves -> degree k."""
    def f(p):
        leaves = jax.tree.leaves(p)
        out = 1.0
        for i in range(k):
            out = out * jnp.sum(leaves[i % len(leaves)] * (1.0 + 0.1 * i))
        return out
    return f


@given(k=st.integers(0, 5), n=st.integers(1, 3), d=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_degree_and_euler_of_random_polynomials(k, n, d, seed):
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.PRNGKey(seed), n)
        params = {f"w{i}": 1.0 + jax.random.uniform(keys[i], (d,)) for i in range(n)}
        f = _monomial_model(k, None)
        r = estimate_degree(f, params, rtol=1e-9)
        assert r.homogeneous and r.rounded == k and abs(r.degree - k) < 1e-6
        assert euler_residual(f, params, k) < 1e-10
        if k >= 1:
            assert gradient_homogeneity_residual(f, params, k) < 1e-10


@given(c=st.floats(1e-3, 1e3), seed=st.integers(0, 2**16))
def test_normalized_mlp_is_scale_invariant_per_layer(c, seed):
    """x -> LN(relu(W2 LN(relu(W1 x)))) is 0-homogeneous in W1 and in W2 separately."""
    with jax.enable_x64(True):
        k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
        p = {"W1": jax.random.normal(k1, (8, 4)), "W2": jax.random.normal(k2, (6, 8))}
        x = jax.random.normal(k3, (4,))

        def ln(h):
            h = h - h.mean()
            return h / jnp.sqrt(jnp.mean(h**2))

        def f(p):
            return jnp.sum(jnp.sin(ln(jax.nn.relu(p["W2"] @ ln(jax.nn.relu(p["W1"] @ x))))))
        for m in ({"W1": True, "W2": False}, {"W1": False, "W2": True}, None):
            np.testing.assert_allclose(float(f(scale_params(p, c, m))), float(f(p)), rtol=1e-10, atol=1e-12)
            assert euler_residual(f, p, 0, m) < 1e-9


def test_non_homogeneous_reported_not_given_a_degree():
    with jax.enable_x64(True):
        r = estimate_degree(lambda p: jnp.sum(jax.nn.softplus(p)), jnp.array([0.3, -0.2, 1.0]))
        assert not r.homogeneous and r.residual > 1e-2


def test_degree_with_float32_tolerance():
    r = estimate_degree(lambda p: jnp.sum(p["a"] ** 3), {"a": jnp.array([0.5, 1.2, 0.7], jnp.float32)}, rtol=1e-4)
    assert r.homogeneous and r.rounded == 3


def test_euler_detects_wrong_degree():
    with jax.enable_x64(True):
        f = lambda p: jnp.sum(p**2)
        x = jnp.array([1.0, 2.0])
        assert euler_residual(f, x, 2) < 1e-12
        assert euler_residual(f, x, 1) > 0.4


def test_bad_input():
    with pytest.raises(ValueError, match="scales"):
        estimate_degree(lambda p: p, jnp.ones(2), scales=[1.0])
    with pytest.raises(ValueError, match="scales"):
        estimate_degree(lambda p: p, jnp.ones(2), scales=[1.0, -2.0])
    with pytest.raises(ValueError, match="zero"):
        estimate_degree(lambda p: 0.0 * p, jnp.ones(2))
    with pytest.raises(ValueError, match="not finite at scales"):
        estimate_degree(lambda p: jnp.exp(1e3 * p), jnp.full(2, 0.01, jnp.float32), scales=[1.0, 100.0])
