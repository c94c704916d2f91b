"""scaleinv.diagnostics: angular update, effective LR, per-group masks."""
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from scaleinv.diagnostics import angular_update, group_masks_by_prefix, step_diagnostics, tree_norm
from scaleinv.optim import sgd_wd_rgc


@given(theta=st.floats(1e-6, 3.0), r1=st.floats(1e-3, 1e3), r2=st.floats(1e-3, 1e3))
def test_angular_update_recovers_known_angle(theta, r1, r2):
    with jax.enable_x64(True):
        a = {"u": jnp.array([r1, 0.0, 0.0])}
        b = {"u": jnp.array([r2 * np.cos(theta), r2 * np.sin(theta), 0.0])}
        np.testing.assert_allclose(float(angular_update(a, b)), theta, rtol=1e-9)


def test_angular_update_is_accurate_for_tiny_angles_float32():
    a = jnp.array([1.0, 0.0], jnp.float32)
    b = jnp.array([np.cos(1e-5), np.sin(1e-5)], jnp.float32)
    np.testing.assert_allclose(float(angular_update(a, b)), 1e-5, rtol=1e-3)


def test_step_diagnostics_values_and_clip_flag():
    x = {"w": jnp.array([3.0, 4.0]), "h": jnp.array([1.0])}
    g = {"w": jnp.array([1000.0, 0.0]), "h": jnp.array([0.0])}
    mask = {"w": True, "h": False}
    opt = sgd_wd_rgc(0.1, 0.01, C=2.0, mask=mask)
    u, s = opt.update(g, opt.init(x), x)
    new = jax.tree.map(lambda a, b: a + b, x, u)
    d = step_diagnostics(x, new, g, 0.1, s, mask)
    np.testing.assert_allclose(float(d["x_norm"]), 5.0, rtol=1e-6)
    np.testing.assert_allclose(float(d["grad_norm"]), 1000.0, rtol=1e-6)
    np.testing.assert_allclose(float(d["lr_eff"]), 0.1 / 25.0, rtol=1e-6)
    assert bool(d["clipped"])
    np.testing.assert_allclose(float(d["angular_update"]), float(angular_update(x["w"], new["w"])), rtol=1e-5)


def test_group_masks_partition_the_leaves():
    p = {"enc": {"l0": {"w": jnp.ones(2)}, "l1": {"w": jnp.ones(3)}}, "head": {"w": jnp.ones(4)}}
    m1 = group_masks_by_prefix(p, depth=1)
    assert set(m1) == {"enc", "head"}
    m2 = group_masks_by_prefix(p, depth=2)
    assert set(m2) == {"enc/l0", "enc/l1", "head/w"}
    total = sum(float(tree_norm(p, m) ** 2) for m in m2.values())
    np.testing.assert_allclose(total, float(tree_norm(p) ** 2))
