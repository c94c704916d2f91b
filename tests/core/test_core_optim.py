"""scaleinv.optim: SGD+WD is exactly x <- (1 - eta lam) x - eta g; relative global clipping
never raises the norm and lands exactly on sqrt(2 C lam/eta)||x_S|| when it fires."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scaleinv.optim import (clip_stats, exponential_lr, masked_tree_norm, relative_global_clip,
                            sgd_wd, sgd_wd_rgc)
from scaleinv import theory


def _tree(key, scale=1.0):
    k1, k2, k3 = jax.random.split(key, 3)
    return {"w": scale * jax.random.normal(k1, (3, 4)), "b": scale * jax.random.normal(k2, (5,)),
            "head": scale * jax.random.normal(k3, (2,))}


@given(eta=st.floats(1e-4, 1.0), lam=st.floats(0.0, 0.5), seed=st.integers(0, 2**16))
def test_sgd_wd_is_the_stated_update(eta, lam, seed):
    x, g = _tree(jax.random.PRNGKey(seed)), _tree(jax.random.PRNGKey(seed + 1))
    opt = sgd_wd(eta, lam)
    u, _ = opt.update(g, opt.init(x), x)
    new = optax.apply_updates(x, u)
    for k in x:
        np.testing.assert_allclose(new[k], (1 - eta * lam) * x[k] - eta * g[k], rtol=1e-5, atol=1e-6)


def test_sgd_wd_uses_the_scheduled_lr_in_both_terms():
    sched = lambda t: 0.1 * (t + 1.0)
    x, g = _tree(jax.random.PRNGKey(0)), _tree(jax.random.PRNGKey(1))
    opt = sgd_wd(sched, 0.2)
    s = opt.init(x)
    _, s = opt.update(g, s, x)             # step 0, eta = 0.1
    u, _ = opt.update(g, s, x)             # step 1, eta = 0.2
    np.testing.assert_allclose(x["w"] + u["w"], (1 - 0.2 * 0.2) * x["w"] - 0.2 * g["w"], rtol=1e-5)


@given(eta=st.floats(1e-3, 1.0), lam=st.floats(1e-4, 0.5), C=st.floats(1.01, 8.0),
       gscale=st.floats(1e-3, 1e3), seed=st.integers(0, 2**16))
def test_relative_clip_never_raises_norm_and_hits_threshold(eta, lam, C, gscale, seed):
    x, g = _tree(jax.random.PRNGKey(seed)), _tree(jax.random.PRNGKey(seed + 7), gscale)
    mask = {"w": True, "b": True, "head": False}
    opt = relative_global_clip(eta, lam, C=C, mask=mask)
    out, state = opt.update(g, opt.init(x), x)
    g_norm, out_norm = masked_tree_norm(g, mask), masked_tree_norm(out, mask)
    thr = float(theory.clip_threshold(eta, lam, masked_tree_norm(x, mask), C))
    assert float(out_norm) <= float(g_norm) * (1 + 1e-6)
    np.testing.assert_array_equal(out["head"], g["head"])  # outside the group: untouched
    if float(g_norm) > thr:
        assert bool(state.clipped)
        np.testing.assert_allclose(float(out_norm), thr, rtol=1e-5)
        # direction unchanged
        np.testing.assert_allclose(out["w"] / out_norm, g["w"] / g_norm, rtol=1e-4, atol=1e-6)
    else:
        assert not bool(state.clipped)
        np.testing.assert_allclose(out["w"], g["w"])
    assert int(state.num_clipped) == int(bool(state.clipped))


def test_clip_stats_found_in_chain_and_counts():
    x = _tree(jax.random.PRNGKey(0))
    opt = sgd_wd_rgc(0.1, 0.01, C=2.0)
    s = opt.init(x)
    huge = jax.tree.map(lambda v: 1e6 * v, x)
    _, s = opt.update(huge, s, x)
    _, s = opt.update(jax.tree.map(jnp.zeros_like, x), s, x)
    cs = clip_stats(s)
    assert cs is not None and int(cs.num_clipped) == 1 and not bool(cs.clipped)


@pytest.mark.parametrize("kwargs, field", [
    (dict(learning_rate=0.1, weight_decay=0.01, C=1.0), "C"),
    (dict(learning_rate=0.1, weight_decay=0.01, C=0.5), "C"),
    (dict(learning_rate=-0.1, weight_decay=0.01), "learning_rate"),
    (dict(learning_rate=0.1, weight_decay=0.0), "weight_decay"),
    (dict(learning_rate=0.1, weight_decay="x"), "weight_decay"),
])
def test_relative_clip_bad_input_names_field(kwargs, field):
    with pytest.raises((ValueError, TypeError), match=field):
        relative_global_clip(**kwargs)


def test_sgd_wd_bad_input():
    with pytest.raises(ValueError, match="weight_decay"):
        sgd_wd(0.1, -1.0)
    with pytest.raises(ValueError, match="learning_rate"):
        sgd_wd(0.0, 0.1)


def test_relative_clip_requires_params():
    opt = relative_global_clip(0.1, 0.01)
    x = _tree(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="params"):
        opt.update(x, opt.init(x))


def test_exponential_lr_values():
    s = exponential_lr(0.1, 0.5)
    np.testing.assert_allclose(float(s(3)), 0.1 * 0.95 ** (-7), rtol=1e-6)
    s2 = exponential_lr(0.1, 0.5, as_stated=True)
    np.testing.assert_allclose(float(s2(3)), 0.1 * 0.95 ** (-6), rtol=1e-6)
    with pytest.raises(ValueError, match="learning_rate \\* weight_decay"):
        exponential_lr(1.0, 2.0)


def test_sgd_wd_rgc_follows_a_weight_decay_schedule_exactly():
    """x(t+1) = (1 - eta_t lambda_t) x(t) - eta_t clip(g) with lambda_t a schedule: the decay
    term and the clipping threshold sqrt(2 C lambda_t / eta_t) ||x|| both read lambda_t (a
    transform that kept the initial lambda fails both checks after the drop)."""
    import numpy as np
    import optax as _optax
    from scaleinv.optim import sgd_wd, sgd_wd_rgc, clip_stats

    lam = _optax.piecewise_constant_schedule(0.2, {2: 0.1})     # 0.2, 0.2, 0.02, 0.02
    eta = _optax.piecewise_constant_schedule(0.5, {2: 0.1})     # 0.5, 0.5, 0.05, 0.05
    x = {"w": jnp.array([3.0, 4.0])}
    g = {"w": jnp.array([0.3, -0.1])}
    for tx in (sgd_wd(eta, lam), sgd_wd_rgc(eta, lam, C=2.0)):
        p, st = x, tx.init(x)
        for t in range(4):
            u, st = tx.update(g, st, p)
            expect = (1 - float(eta(t)) * float(lam(t))) * np.asarray(p["w"]) - float(eta(t)) * np.asarray(g["w"])
            p = _optax.apply_updates(p, u)
            np.testing.assert_allclose(np.asarray(p["w"]), expect, rtol=1e-6)
    # threshold after the drop: sqrt(2 C lambda_t / eta_t) ||x|| with lambda_t / eta_t = 0.4 at every t
    tx = sgd_wd_rgc(eta, lam, C=2.0)
    st = tx.init(x)
    for t in range(3):
        _, st = tx.update(g, st, x)
    np.testing.assert_allclose(float(clip_stats(st).threshold), np.sqrt(2 * 2.0 * 0.02 / 0.05) * 5.0, rtol=1e-6)
    lam2 = _optax.piecewise_constant_schedule(0.2, {2: 0.01})   # lambda / eta changes at t = 2
    tx = sgd_wd_rgc(eta, lam2, C=2.0)
    st = tx.init(x)
    for t in range(3):
        _, st = tx.update(g, st, x)
    np.testing.assert_allclose(float(clip_stats(st).threshold), np.sqrt(2 * 2.0 * 0.002 / 0.05) * 5.0, rtol=1e-6)
