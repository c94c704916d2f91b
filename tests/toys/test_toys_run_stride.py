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


def test_chunked_sweep_runs_every_configuration_like_one_vmap():
    """sweep(batch_size=b) vectorises b configurations at a time (jax.lax.map); every config runs
    the same steps as in one wide vmap: equal up to float64 rounding while the loss is O(1),
    including a remainder chunk (10 configs in chunks of 4), and the per-config hyper-parameters
    and keys stay attached to their configuration (the hparams differ per config)."""
    prob = normalized_mf()
    with jax.enable_x64(True):
        p0 = jax.vmap(prob.init)(jnp.asarray(np.logspace(0, 3, 10)))
        hp = {"C": jnp.asarray(np.linspace(1.01, 4.0, 10))}
        make = lambda C: sgd_wd_rgc(2.0, 0.01, C=C)
        wide = sweep(make, prob.loss, p0, 40, jax.random.PRNGKey(0), hp, batch_size=None)
        chunked = sweep(make, prob.loss, p0, 40, jax.random.PRNGKey(0), hp, batch_size=4)
        # the same configs in reverse order: the rows follow their configuration
        rev = sweep(make, prob.loss, jax.tree.map(lambda x: x[::-1], p0), 40, jax.random.PRNGKey(0),
                    {"C": hp["C"][::-1]}, batch_size=4)
    for field in ("loss", "sq_norm", "angle"):
        a, b = np.asarray(getattr(wide, field)), np.asarray(getattr(chunked, field))
        assert b.shape == a.shape == (10, 40)
        np.testing.assert_allclose(b, a, rtol=1e-12, err_msg=field)
    np.testing.assert_array_equal(np.asarray(wide.clipped), np.asarray(chunked.clipped))
    assert len(set(np.round(np.asarray(chunked.sq_norm)[:, -1], 6))) > 5   # configs really differ
    # keys are split per position, so reversing the configs changes only which key each gets;
    # the deterministic full-batch loss ignores the key: rows reverse exactly with their configs
    np.testing.assert_allclose(np.asarray(rev.sq_norm)[::-1], np.asarray(chunked.sq_norm), rtol=1e-12)


@pytest.mark.parametrize("b", [0, -1, 2.5])
def test_sweep_batch_size_must_be_positive_integer(b):
    prob = normalized_mf()
    p0 = jax.vmap(prob.init)(jnp.asarray([1.0, 2.0]))
    with pytest.raises(ValueError, match="batch_size"):
        sweep(lambda: sgd_wd_rgc(0.1, 0.1), prob.loss, p0, 10, jax.random.PRNGKey(0), {}, batch_size=b)


def test_sweep_with_given_keys_merges_smaller_sweeps_exactly():
    """sweep(keys=...) gives each configuration its key as is: two sweeps of a noisy loss (each
    splitting its own key) run as one sweep with the concatenated keys give the same iterates;
    a gradient scale of 2 in the optimizer is the loss scaled by 2 (how claim C5 merges its
    sigma sweeps), bit for bit."""
    from toyproblems.problems import constant_sigma
    import optax
    from scaleinv.optim import sgd_wd

    one, two = constant_sigma(dim=8, sigma=1.0), constant_sigma(dim=8, sigma=2.0)
    with jax.enable_x64(True):
        p0 = jax.vmap(lambda k: one.init(1.0, k))(jax.random.split(jax.random.PRNGKey(3), 3))
        hp = {"eta": jnp.asarray([0.1, 0.2, 0.4]), "weight_decay": jnp.asarray([0.01, 0.02, 0.05])}
        make = lambda eta, weight_decay: sgd_wd(eta, weight_decay)
        a = sweep(make, one.loss, p0, 30, jax.random.PRNGKey(5), hp)
        b = sweep(make, two.loss, p0, 30, jax.random.PRNGKey(5), hp)
        ks = jax.random.split(jax.random.PRNGKey(5), 3)
        merged = sweep(lambda eta, weight_decay, s: optax.chain(optax.scale(s), sgd_wd(eta, weight_decay)),
                       one.loss, jax.tree.map(lambda x: jnp.concatenate([x, x]), p0), 30, None,
                       {**{k: jnp.concatenate([v, v]) for k, v in hp.items()}, "s": jnp.asarray([1.0] * 3 + [2.0] * 3)},
                       keys=jnp.concatenate([ks, ks]))
    want = np.concatenate([np.asarray(a.sq_norm), np.asarray(b.sq_norm)])
    np.testing.assert_array_equal(np.asarray(merged.sq_norm), want)
    assert not np.array_equal(np.asarray(a.sq_norm), np.asarray(b.sq_norm))   # sigma matters
    with pytest.raises(ValueError, match="exactly one of key"):
        sweep(make, one.loss, p0, 5, jax.random.PRNGKey(0), hp, keys=ks)
    with pytest.raises(ValueError, match="exactly one of key"):
        sweep(make, one.loss, p0, 5, None, hp)
    with pytest.raises(ValueError, match="leading axis of 3"):
        sweep(make, one.loss, p0, 5, None, hp, keys=ks[:2])
