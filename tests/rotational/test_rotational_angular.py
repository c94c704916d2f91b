"""Per-group / per-layer / per-neuron angular diagnostics (scaleinv.angular)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaleinv.angular import angular_summary, group_angles, leaf_angle, neuron_angles, neuron_norms, neuron_rows
from scaleinv.diagnostics import angular_update, group_masks_by_prefix


def _rotate_rows(W, theta, key):
    """Rotate every row of W by the known angle theta[i] in a random plane containing it."""
    d = jax.random.normal(key, W.shape)
    u = W / jnp.linalg.norm(W, axis=1, keepdims=True)
    d = d - jnp.sum(d * u, axis=1, keepdims=True) * u
    d = d / jnp.linalg.norm(d, axis=1, keepdims=True)
    n = jnp.linalg.norm(W, axis=1, keepdims=True)
    return n * (jnp.cos(theta)[:, None] * u + jnp.sin(theta)[:, None] * d)


def test_known_rotation_per_neuron_and_scale_invariance():
    with jax.enable_x64(True):
        W = jax.random.normal(jax.random.PRNGKey(0), (5, 33))
        theta = jnp.array([1e-7, 1e-4, 0.01, 0.5, 2.0])
        V = _rotate_rows(W, theta, jax.random.PRNGKey(1))
        np.testing.assert_allclose(neuron_angles(W, V), theta, rtol=1e-8)
        # rescaling a neuron does not change its angle; norms are reported per row
        c = jnp.array([0.1, 1.0, 3.0, 10.0, 1e3])[:, None]
        np.testing.assert_allclose(neuron_angles(W, c * V), theta, rtol=1e-8)
        np.testing.assert_allclose(neuron_norms(c * V), np.asarray(c[:, 0]) * np.linalg.norm(W, axis=1), rtol=1e-12)


def test_neuron_axis_for_input_first_kernels():
    with jax.enable_x64(True):
        W = jax.random.normal(jax.random.PRNGKey(2), (4, 6))
        theta = jnp.linspace(0.01, 0.3, 4)
        V = _rotate_rows(W, theta, jax.random.PRNGKey(3))
        np.testing.assert_allclose(neuron_angles(W.T, V.T, neuron_axis=-1), theta, rtol=1e-8)
        assert neuron_rows(jnp.zeros((2, 3, 4)), neuron_axis=1).shape == (3, 8)
        with pytest.raises(ValueError, match="ndim >= 2"):
            neuron_rows(jnp.zeros(3))


def test_summary_consistent_with_diagnostics_and_jittable():
    with jax.enable_x64(True):
        k = jax.random.split(jax.random.PRNGKey(4), 4)
        old = {"enc": {"w": jax.random.normal(k[0], (8, 16)), "b": jax.random.normal(k[1], (8,))},
               "head": {"w": jax.random.normal(k[2], (3, 8))}}
        new = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(k[3], x.shape), old)
        masks = group_masks_by_prefix(old, depth=1)
        out = jax.jit(lambda a, b: angular_summary(a, b, masks))(old, new)
        assert float(out["model/angle"]) == pytest.approx(float(angular_update(old, new)), rel=1e-12)
        assert float(out["group/enc/angle"]) == pytest.approx(float(angular_update(old, new, masks["enc"])), rel=1e-12)
        assert float(out["layer/enc/w/angle"]) == pytest.approx(float(leaf_angle(old["enc"]["w"], new["enc"]["w"])),
                                                                rel=1e-12)
        ang = np.asarray(neuron_angles(old["head"]["w"], new["head"]["w"]))
        assert float(out["neuron/head/w/angle_rms"]) == pytest.approx(np.sqrt(np.mean(ang**2)), rel=1e-12)
        assert float(out["neuron/head/w/angle_max"]) == pytest.approx(ang.max(), rel=1e-12)
        assert "neuron/enc/b/angle_mean" not in out            # vectors have no neurons
        assert float(out["model/norm"]) == pytest.approx(
            np.sqrt(sum(float(jnp.sum(x**2)) for x in jax.tree.leaves(new))), rel=1e-12)
        g = group_angles(old, new, masks)
        assert set(g) == {"enc", "enc/norm", "head", "head/norm"}
