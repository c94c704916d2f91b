"""Relative global clipping when some parameter of a group has no gradient (issue 27): ||x_S|| is over ALL
parameters of the group, as in the JAX twin (scaleinv.optim.relative_global_clip, where such a leaf has a zero
gradient); ||g_S|| over those with one. A norm over the parameters with a gradient only would set the threshold
from ||a|| = 1 instead of ||(a, b)|| = sqrt(26) here."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch not installed: the scaleinv[torch] extra is needed")

from scaleinv.torch.optim import SGDWD, RelativeGlobalClip, relative_clip_  # noqa: E402

LR, WD, C = 0.1, 0.1, 2.0
THRESHOLD = math.sqrt(2 * C * WD / LR) * math.sqrt(1.0 + 9.0 + 16.0)     # ||x_S|| = ||(1, 0, 3, 4)||


def _group():
    a = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([3.0, 4.0], dtype=torch.float64, requires_grad=True)     # no gradient this step
    a.grad = torch.tensor([100.0, 0.0], dtype=torch.float64)
    return a, b


def _jax_clipped():
    import jax
    import jax.numpy as jnp

    from scaleinv.optim import relative_global_clip

    with jax.enable_x64(True):
        params = {"a": jnp.array([1.0, 0.0]), "b": jnp.array([3.0, 4.0])}
        grads = {"a": jnp.array([100.0, 0.0]), "b": jnp.zeros(2)}
        t = relative_global_clip(LR, WD, C)
        u, _ = t.update(grads, t.init(params), params)
        return np.asarray(u["a"]), np.asarray(u["b"])


def test_relative_clip_norm_is_over_every_parameter_of_the_group():
    a, b = _group()
    clipped, g_norm, threshold = relative_clip_([a, b], LR, WD, C)
    assert clipped and g_norm == 100.0
    assert threshold == pytest.approx(THRESHOLD, rel=1e-14)
    np.testing.assert_allclose(a.grad.numpy(), [THRESHOLD, 0.0], rtol=1e-14)
    assert b.grad is None                                      # untouched: still no gradient
    ja, jb = _jax_clipped()                                    # the JAX twin, b's gradient = 0
    np.testing.assert_allclose(a.grad.numpy(), ja, rtol=1e-12)
    assert np.all(jb == 0)


@pytest.mark.parametrize("make", ["SGDWD", "RelativeGlobalClip(SGD)"])
def test_optimizer_step_clips_with_the_whole_group_norm(make):
    a, b = _group()
    if make == "SGDWD":
        opt = SGDWD([a, b], lr=LR, weight_decay=WD, C=C)
    else:
        opt = RelativeGlobalClip(torch.optim.SGD([a, b], lr=LR, weight_decay=WD), C=C)
    opt.step()
    st = opt.clip_stats()[0]
    assert st.clipped and st.threshold == pytest.approx(THRESHOLD, rel=1e-14)
    # x <- x - eta (g_clipped + lambda x) for a; b has no gradient: not stepped (torch's convention)
    np.testing.assert_allclose(a.detach().numpy(), [1.0 - LR * (THRESHOLD + WD * 1.0), 0.0], rtol=1e-14)
    np.testing.assert_array_equal(b.detach().numpy(), [3.0, 4.0])
