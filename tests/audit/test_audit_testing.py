"""scaleinv.testing: the strategies produce what they promise and the assertions pass on
homogeneous functions of the stated degree and fail (with a useful message) otherwise."""
import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from scaleinv.testing import (assert_euler_identity, assert_homogeneous, assert_scale_invariant_loss,
                              group_masks, param_trees, params_like, scale_lists, scales)

SCALES = (1e-2, 1e-1, 1.0, 1e1, 1e2)


def prod_of_norms(p):
    """prod_i ||leaf_i||: homogeneous of degree (number of leaves in the group) in every group."""
    out = jnp.ones(())
    for leaf in jax.tree.leaves(p):
        out = out * jnp.sqrt(jnp.sum(leaf * leaf))
    return out


@settings(max_examples=5)
@given(data=st.data())
def test_degree_equals_number_of_selected_leaves(data):
    p = data.draw(param_trees(max_leaves=4))
    mask = data.draw(group_masks(p))
    k = sum(jax.tree.leaves(mask))
    assert_homogeneous(prod_of_norms, p, k, groups={"S": mask}, scales=SCALES)
    assert_euler_identity(prod_of_norms, p, float(k), mask=mask)
    wrong = k + 1
    with pytest.raises(AssertionError, match=rf"group 'S': expected degree {wrong}, fitted slope"):
        assert_homogeneous(prod_of_norms, p, wrong, groups={"S": mask}, scales=SCALES)
    with pytest.raises(AssertionError, match="Euler identity"):
        assert_euler_identity(prod_of_norms, p, float(wrong), mask=mask)


@given(c=scales(), cs=scale_lists())
def test_scale_strategies_span_the_requested_range(c, cs):
    assert 1e-2 * (1 - 1e-12) <= c <= 1e2 * (1 + 1e-12)
    assert 3 <= len(cs) <= 7 and list(cs) == sorted(cs) and len(set(cs)) == len(cs)


_TEMPLATE = {"enc": {"w": jnp.ones((3, 4)), "b": jnp.ones((4,))}, "head": jnp.ones((4, 2), jnp.float32)}


@given(p=params_like(_TEMPLATE), q=params_like(_TEMPLATE, std=0.1, relative=True))
def test_params_like_keeps_structure_shapes_dtypes(p, q):
    for tree in (p, q):
        assert jax.tree.structure(tree) == jax.tree.structure(_TEMPLATE)
        for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(_TEMPLATE)):
            assert a.shape == b.shape and a.dtype == b.dtype
    # relative=True: a point near the template (all-ones leaves, 10% noise)
    assert max(float(jnp.max(jnp.abs(a - 1.0))) for a in jax.tree.leaves(q)) < 1.0


def _si_loss(p):
    """Cross-entropy of logits (w / ||w||) x: 0-homogeneous in w, not in the bias b."""
    x = jnp.asarray(np.linspace(-1, 1, 12).reshape(4, 3), jnp.float32)
    logits = x @ (p["w"] / jnp.sqrt(jnp.sum(p["w"] ** 2))) + p["b"]
    return -jnp.mean(jax.nn.log_softmax(logits)[:, 0])


@given(p=params_like({"w": jnp.ones((3, 5)), "b": jnp.ones((5,))}))
def test_assert_scale_invariant_loss(p):
    mask = {"w": True, "b": False}
    assert_scale_invariant_loss(_si_loss, p, mask=mask, scales=SCALES)
    with pytest.raises(AssertionError, match="not homogeneous as asserted"):
        assert_scale_invariant_loss(_si_loss, p, mask={"w": False, "b": True}, scales=SCALES)


def test_softplus_fails_with_residual_in_message():
    p = {"w": jnp.asarray([0.5, -1.0, 2.0])}
    f = lambda q: jax.nn.softplus(q["w"])
    for k in (0, 1):
        with pytest.raises(AssertionError, match=r"residual vs c\^\d: [0-9.e+-]+ \(rtol 0.0001\)"):
            assert_homogeneous(f, p, k, scales=SCALES)


def test_float64_tolerance_is_tighter():
    with jax.enable_x64(True):
        p = {"w": jnp.asarray([0.5, -1.0, 2.0], jnp.float64)}
        assert_homogeneous(lambda q: q["w"] ** 3, p, 3, scales=SCALES)   # residual ~1e-16 <= 1e-9
        # a 1e-7 relative perturbation passes in float32's tolerance (1e-4) but not in float64's
        f = lambda q: q["w"] ** 3 * (1 + 1e-7 * jnp.log(jnp.sum(q["w"] ** 2)))
        with pytest.raises(AssertionError):
            assert_homogeneous(f, p, 3, scales=SCALES)
        assert_homogeneous(f, p, 3, scales=SCALES, rtol=1e-4)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="min_exponent < max_exponent"):
        scales(2.0, 1.0)
    with pytest.raises(ValueError, match="degree has no entry for group"):
        assert_homogeneous(prod_of_norms, {"a": jnp.ones(2)}, {"x": 1}, groups={"g": {"a": True}})
    with pytest.raises(TypeError, match="groups must be None"):
        assert_homogeneous(prod_of_norms, {"a": jnp.ones(2)}, 1, groups="a")


def test_example_user_file_runs():
    """examples/test_my_model_homogeneity.py is importable and its plain tests pass."""
    path = Path(__file__).resolve().parents[2] / "examples" / "test_my_model_homogeneity.py"
    spec = importlib.util.spec_from_file_location("example_user_tests", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.test_block_signature_is_2_2()
    mod.test_audit_finds_no_break()
