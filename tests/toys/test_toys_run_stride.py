"""toyproblems.run: a strided trace (record_every = k) is the full trace sampled every k steps,
bit for bit, with the same final iterate (the silent steps run the same update)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaleinv.optim import sgd_wd_rgc
from toyproblems.problems import normalized_mf
from toyproblems.run import run, sweep


def test_strided_trace_is_the_full_trace_sampled():
    prob = normalized_mf()
    with jax.enable_x64(True):
        p0 = jax.vmap(prob.init)(jnp.asarray(np.logspace(0, 3, 4)))
        hp = {"C": jnp.asarray([1.01, 1.5, 2.0, 4.0])}
        make = lambda C: sgd_wd_rgc(2.0, 0.01, C=C)
        full = sweep(make, prob.loss, p0, 60, jax.random.PRNGKey(0), hp)
        strided = sweep(make, prob.loss, p0, 60, jax.random.PRNGKey(0), hp, record_every=6)
    for field in ("loss", "sq_norm", "grad_norm", "angle", "clipped"):
        a, b = np.asarray(getattr(full, field)), np.asarray(getattr(strided, field))
        assert b.shape == (4, 10)
        np.testing.assert_array_equal(a[:, ::6], b, err_msg=field)
    assert np.asarray(full.clipped).any()   # the clip field is exercised, not all False
    for a, b in zip(jax.tree.leaves(full.final), jax.tree.leaves(strided.final)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("k", [0, 7, 2.5])
def test_record_every_must_divide_steps(k):
    prob = normalized_mf()
    with pytest.raises(ValueError, match="record_every"):
        run(prob.loss, sgd_wd_rgc(0.1, 0.1), prob.init(1.0), 20, jax.random.PRNGKey(0), record_every=k)
