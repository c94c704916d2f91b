"""scaleinv.optim behaviour no other test touches (issue 18):

* weight-decay masks: leaves outside the mask are not decayed (their update is exactly -eta g,
  bit for bit; with a zero gradient they do not move at all);
* relative global clipping under a learning-rate SCHEDULE: the threshold of step t uses eta_t
  (the schedule at that step), alone and chained in ``sgd_wd_rgc``;
* zero parameters / zero gradients / inf / NaN in the clipped group: the defined results of
  :func:`scaleinv.optim.relative_global_clip`'s docstring (no NaN for an all-zero group, finite
  derivatives; any non-finite entry poisons the whole group with NaN, never silently passes).
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaleinv import theory
from scaleinv import optim
from scaleinv.optim import clip_stats, masked_tree_norm, relative_global_clip, sgd_wd, sgd_wd_rgc

KEYS = ("w", "b", "head")


def _tree(seed, scale=1.0):
    ks = jax.random.split(jax.random.PRNGKey(seed), 3)
    shapes = {"w": (3, 4), "b": (5,), "head": (2,)}
    return {k: scale * jax.random.normal(kk, shapes[k]) for k, kk in zip(KEYS, ks)}


masks = st.fixed_dictionaries({k: st.booleans() for k in KEYS})


# ------------------------------------------------------------------ weight-decay masks
@settings(deadline=None)
@given(mask=masks, eta=st.floats(1e-3, 1.0), lam=st.floats(1e-3, 0.5), seed=st.integers(0, 2**16))
def test_sgd_wd_mask_leaves_outside_are_not_decayed_bit_for_bit(mask, eta, lam, seed):
    x, g = _tree(seed), _tree(seed + 1)
    u, _ = sgd_wd(eta, lam, mask=mask).update(g, sgd_wd(eta, lam, mask=mask).init(x), x)
    plain, _ = optax.sgd(eta).update(g, optax.sgd(eta).init(x), x)
    decayed, _ = sgd_wd(eta, lam).update(g, sgd_wd(eta, lam).init(x), x)
    for k in KEYS:
        if mask[k]:
            np.testing.assert_array_equal(u[k], decayed[k])
        else:
            np.testing.assert_array_equal(u[k], plain[k])          # -eta g, bit for bit
    # zero gradient: masked-out leaves do not move at all, masked-in ones shrink by (1 - eta lam)
    zero = jax.tree.map(jnp.zeros_like, g)
    u0, _ = sgd_wd(eta, lam, mask=mask).update(zero, sgd_wd(eta, lam, mask=mask).init(x), x)
    new = optax.apply_updates(x, u0)
    for k in KEYS:
        if mask[k]:
            np.testing.assert_allclose(new[k], (1 - eta * lam) * x[k], rtol=1e-6)
        else:
            np.testing.assert_array_equal(new[k], x[k])


@settings(deadline=None)
@given(mask=masks, seed=st.integers(0, 2**16), gscale=st.floats(1e-2, 1e4))
def test_sgd_wd_rgc_mask_leaves_outside_are_neither_clipped_nor_decayed(mask, seed, gscale):
    eta, lam = 0.1, 0.01
    x, g = _tree(seed), _tree(seed + 1, gscale)
    opt = sgd_wd_rgc(eta, lam, C=2.0, mask=mask)
    u, s = opt.update(g, opt.init(x), x)
    plain, _ = optax.sgd(eta).update(g, optax.sgd(eta).init(x), x)
    for k in KEYS:
        if not mask[k]:
            np.testing.assert_array_equal(u[k], plain[k])
    # the callable form of the mask gives the same result
    opt2 = sgd_wd_rgc(eta, lam, C=2.0, mask=lambda p: mask)
    u2, _ = opt2.update(g, opt2.init(x), x)
    for k in KEYS:
        np.testing.assert_array_equal(u[k], u2[k])


# ------------------------------------------------------------------ clipping under a schedule
def _schedules():
    return {
        "warmup-cosine": optax.warmup_cosine_decay_schedule(0.01, 0.5, 3, 12, 0.05),
        "linear-up": optax.linear_schedule(0.05, 0.5, 10),
        "exponential": optax.exponential_decay(0.4, 1, 0.7),
    }


def test_clip_threshold_uses_the_lr_of_the_step_itself():
    lam, C = 0.02, 2.0
    for name, sched in _schedules().items():
        x = _tree(0)
        opt = relative_global_clip(sched, lam, C=C)
        s = opt.init(x)
        for t in range(10):
            g = _tree(100 + t, scale=50.0)                        # always large: clipping fires
            out, s = opt.update(g, s, x)
            want = float(theory.clip_threshold(float(sched(t)), lam, float(masked_tree_norm(x)), C))
            wrong = [float(theory.clip_threshold(float(sched(t + d)), lam, float(masked_tree_norm(x)), C))
                     for d in (-1, 1) if t + d >= 0]
            assert bool(s.clipped), (name, t)
            np.testing.assert_allclose(float(s.threshold), want, rtol=1e-5, err_msg=f"{name} step {t}")
            np.testing.assert_allclose(float(masked_tree_norm(out)), want, rtol=1e-5, err_msg=f"{name} step {t}")
            for w in wrong:   # the neighbours' LRs give a different threshold: the test can tell them apart
                assert abs(w / want - 1) > 1e-3, (name, t)


def test_sgd_wd_rgc_with_schedule_is_the_stated_update_every_step():
    """x(t+1) = (1 - eta_t lam) x(t) - eta_t clip_t(g), with clip_t at sqrt(2 C lam / eta_t) ||x(t)||."""
    lam, C = 0.02, 2.0
    sched = optax.warmup_cosine_decay_schedule(0.01, 0.5, 3, 12, 0.05)
    x = _tree(1)
    opt = sgd_wd_rgc(sched, lam, C=C)
    s = opt.init(x)
    with jax.enable_x64(False):
        for t in range(12):
            g = _tree(200 + t, scale=30.0 if t % 2 else 1e-3)      # alternate: clipped / not clipped
            u, s = opt.update(g, s, x)
            eta = float(sched(t))
            gn, xn = float(masked_tree_norm(g)), float(masked_tree_norm(x))
            thr = np.sqrt(2 * C * lam / eta) * xn
            f = min(1.0, thr / gn)
            assert bool(clip_stats(s).clipped) == (gn > thr), t
            new = optax.apply_updates(x, u)
            for k in KEYS:
                np.testing.assert_allclose(new[k], (1 - eta * lam) * x[k] - eta * f * g[k], rtol=2e-5, atol=1e-6,
                                           err_msg=f"step {t}")
            x = new


# ------------------------------------------------------------------ zero / inf / NaN
def test_all_zero_group_gives_zero_update_and_finite_derivatives():
    x = jax.tree.map(jnp.zeros_like, _tree(0))
    g = jax.tree.map(jnp.zeros_like, x)
    for lr in (0.1, optax.linear_schedule(0.0, 0.1, 10)):          # eta_0 = 0: inf * 0 in the formula
        opt = sgd_wd_rgc(lr, 0.01)
        u, s = opt.update(g, opt.init(x), x)
        cs = clip_stats(s)
        for k in KEYS:
            assert np.all(np.asarray(u[k]) == 0), k
        assert not bool(cs.clipped) and float(cs.threshold) == 0.0 and float(cs.grad_norm) == 0.0
        # reverse-mode derivative of the update w.r.t. the parameters at 0 (was NaN: d sqrt at 0)
        d = jax.grad(lambda p: sum(jnp.sum(v) for v in jax.tree.leaves(opt.update(g, opt.init(p), p)[0])))(x)
        assert all(np.all(np.isfinite(np.asarray(v))) for v in jax.tree.leaves(d))
    assert np.isfinite(np.asarray(jax.grad(masked_tree_norm)(x)["w"])).all()


@settings(deadline=None)
@given(seed=st.integers(0, 2**16), gscale=st.floats(1e-6, 1e6))
def test_zero_params_nonzero_grad_clips_to_zero(seed, gscale):
    x = jax.tree.map(jnp.zeros_like, _tree(0))
    g = _tree(seed, gscale)
    opt = relative_global_clip(0.1, 0.01)
    out, s = opt.update(g, opt.init(x), x)
    assert bool(s.clipped) and float(s.threshold) == 0.0
    for k in KEYS:
        assert np.all(np.asarray(out[k]) == 0)


@pytest.mark.parametrize("where", ["grad", "param"])
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
@settings(deadline=None, max_examples=5)
@given(seed=st.integers(0, 2**16), leaf=st.sampled_from(["w", "b"]),
       mask=st.fixed_dictionaries({"w": st.just(True), "b": st.just(True), "head": st.booleans()}))
def test_non_finite_entry_poisons_the_whole_group_with_nan(seed, bad, where, leaf, mask):
    x, g = _tree(seed), _tree(seed + 1)
    tgt = g if where == "grad" else x
    tgt[leaf] = tgt[leaf].at[0].set(bad)
    opt = relative_global_clip(0.1, 0.01, mask=mask)
    out, s = opt.update(g, opt.init(x), x)
    for k in KEYS:
        if mask[k]:
            assert np.all(np.isnan(np.asarray(out[k]))), (k, where, bad)
        else:
            np.testing.assert_array_equal(out[k], g[k])          # outside the group: untouched
    assert not bool(s.clipped) and int(s.num_clipped) == 0


@settings(deadline=None)
@given(seed=st.integers(0, 2**16), xscale=st.floats(1e-30, 1e15), gscale=st.floats(1e-30, 1e15),
       eta=st.floats(1e-4, 1.0), lam=st.floats(1e-5, 0.5), C=st.floats(1.001, 16.0))
def test_finite_inputs_give_finite_updates_at_most_the_threshold(seed, xscale, gscale, eta, lam, C):
    with jax.enable_x64(True):
        x, g = _tree(seed, xscale), _tree(seed + 1, gscale)
        x, g = jax.tree.map(lambda v: v.astype(jnp.float64), x), jax.tree.map(lambda v: v.astype(jnp.float64), g)
        opt = relative_global_clip(eta, lam, C=C)
        out, s = opt.update(g, opt.init(x), x)
        on = float(masked_tree_norm(out))
        thr = float(theory.clip_threshold(eta, lam, float(masked_tree_norm(x)), C))
        assert all(np.all(np.isfinite(np.asarray(v))) for v in jax.tree.leaves(out))
        gn = float(masked_tree_norm(g))
        if bool(s.clipped):
            assert gn > thr
            np.testing.assert_allclose(on, thr, rtol=1e-10)
        else:
            assert gn <= thr * (1 + 1e-12)
            np.testing.assert_allclose(on, gn, rtol=1e-12)


# ----------------------------------------------------------------------------- hyper-parameter contract
# Each factory's stated domain (docstrings): learning_rate > 0; weight_decay >= 0 where a zero WD is
# meaningful (sgd_wd = plain SGD, exponential_lr = constant LR), > 0 where it divides (the clip
# threshold sqrt(2 C lambda / eta), the equilibrium of sgd_wd_rgc); numbers or schedules only.
_DOMAIN = [
    # (factory, kwargs, field, allow_zero)
    (optim.sgd_wd, dict(learning_rate=0.1, weight_decay=0.01), "learning_rate", False),
    (optim.sgd_wd, dict(learning_rate=0.1, weight_decay=0.01), "weight_decay", True),
    (optim.relative_global_clip, dict(learning_rate=0.1, weight_decay=0.01), "learning_rate", False),
    (optim.relative_global_clip, dict(learning_rate=0.1, weight_decay=0.01), "weight_decay", False),
    (optim.sgd_wd_rgc, dict(learning_rate=0.1, weight_decay=0.01), "learning_rate", False),
    (optim.sgd_wd_rgc, dict(learning_rate=0.1, weight_decay=0.01), "weight_decay", False),
    (optim.exponential_lr, dict(learning_rate=0.1, weight_decay=0.01), "learning_rate", False),
    (optim.exponential_lr, dict(learning_rate=0.1, weight_decay=0.01), "weight_decay", True),
]


@pytest.mark.parametrize("factory, kwargs, field, allow_zero", _DOMAIN,
                         ids=[f"{f.__name__}-{k}" for f, _, k, _ in _DOMAIN])
def test_hyper_parameter_domain_and_messages(factory, kwargs, field, allow_zero):
    bound = ">= 0" if allow_zero else "> 0"
    for bad in (-1.0, float("nan")) + (() if allow_zero else (0.0,)):
        with pytest.raises(ValueError, match=f"^{field} must be {bound}, got "):
            factory(**{**kwargs, field: bad})
    # not a number: TypeError naming the field (float() raises ValueError for "abc", TypeError for
    # None / a list; a numeric string is refused too: the factories use the value as given)
    for bad in ("abc", "0.5", None, [0.1]):
        with pytest.raises(TypeError, match=f"^{field} must be a number or a schedule"):
            factory(**{**kwargs, field: bad})
    if allow_zero:
        factory(**{**kwargs, field: 0.0})  # accepted
    factory(**{**kwargs, field: np.float32(0.05)})


def test_sgd_wd_with_zero_weight_decay_is_plain_sgd():
    x = {"w": jnp.array([1.0, -2.0, 3.0]), "b": jnp.array(0.5)}
    g = {"w": jnp.array([0.3, 0.1, -0.2]), "b": jnp.array(-1.0)}
    opt = optim.sgd_wd(0.1, 0.0)
    u, _ = opt.update(g, opt.init(x), x)
    for k in x:
        np.testing.assert_array_equal(u[k], -0.1 * g[k])


def test_eps_is_a_floor_added_to_the_threshold():
    """threshold = sqrt(2 C lambda / eta) ||x_S|| + eps, exactly: at x = 0 a gradient of norm 5 is
    scaled to norm eps along -g's direction (factor eps / 5 in [0, 1], never negative)."""
    x = {"w": jnp.zeros(2, jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)}
    g = {"w": jnp.array([3.0, 4.0], x["w"].dtype)}
    eps = 0.25
    opt = relative_global_clip(0.1, 0.01, C=2.0, eps=eps)
    out, s = opt.update(g, opt.init(x), x)
    assert bool(s.clipped) and float(s.threshold) == pytest.approx(eps, rel=1e-6)
    np.testing.assert_allclose(np.asarray(out["w"]), np.array([3.0, 4.0]) * eps / 5.0, rtol=1e-6)
    x1 = {"w": jnp.array([0.6, 0.8], x["w"].dtype)}             # ||x|| = 1: sqrt(2*2*0.01/0.1) + eps
    _, s1 = opt.update(g, opt.init(x1), x1)
    assert float(s1.threshold) == pytest.approx(np.sqrt(0.4) + eps, rel=1e-6)


def test_exponential_lr_domain_is_the_product_and_traced_values_pass():
    """exponential_lr needs eta * lambda < 1 (the base 1 - eta lambda of the power), not a sum:
    (0.9, 0.5) is fine (0.45), (2.0, 0.6) is refused (1.2, stated); a vmapped LR (traced) with a
    fixed lambda is the caller's to check and gives the formula eta (1 - eta lambda)^(-2t-1)."""
    sched = optim.exponential_lr(0.9, 0.5)
    assert float(sched(0)) == pytest.approx(0.9 / 0.55, rel=1e-6)
    with pytest.raises(ValueError, match=r"learning_rate \* weight_decay must be < 1, got 1.2"):
        optim.exponential_lr(2.0, 0.6)
    lrs = jnp.array([0.1, 0.2])
    out = jax.vmap(lambda lr: optim.exponential_lr(lr, 0.01)(3))(lrs)
    np.testing.assert_allclose(np.asarray(out), np.asarray(lrs * (1 - lrs * 0.01) ** -7.0), rtol=1e-6)
    out2 = jax.vmap(lambda wd: optim.exponential_lr(0.1, wd)(3))(jnp.array([0.01, 0.02]))
    assert out2.shape == (2,)


# ------------------------------------------------------------------ mutation survivors (issue 27)
# Each test states the defining property a surviving cosmic-ray mutant of scaleinv/optim.py broke
# (docs/results/mutation/cosmic_ray_optim.md).

def test_exponential_lr_refuses_the_boundary_product_one():
    """eta lambda = 1 makes the base 1 - eta lambda of the power 0 (eta_t = eta / 0): refused, like any
    product above 1; just below it is accepted."""
    with pytest.raises(ValueError, match=r"learning_rate \* weight_decay must be < 1, got 1.0"):
        optim.exponential_lr(2.0, 0.5)
    assert np.isfinite(float(optim.exponential_lr(2.0, 0.499)(0)))


def test_num_clipped_counts_every_clipped_step():
    """RelativeClipState.num_clipped is the number of clipped steps so far (a counter, not a parity):
    k clipped steps then one unclipped step give k."""
    x = {"w": jnp.array([0.6, 0.8])}                   # ||x|| = 1, threshold sqrt(2 C lambda / eta) = 0.2
    big, small = {"w": jnp.array([3.0, 4.0])}, {"w": jnp.array([0.0, 0.01])}
    opt = relative_global_clip(0.1, 0.01)
    s = opt.init(x)
    for k in range(1, 6):
        _, s = opt.update(big, s, x)
        assert bool(s.clipped) and int(s.num_clipped) == k
    _, s = opt.update(small, s, x)
    assert not bool(s.clipped) and int(s.num_clipped) == 5


def test_C_may_be_traced_and_gives_each_configuration_its_threshold():
    """A vmapped C (a grid of clipping constants in one program) is accepted and each lane uses its own
    C: threshold = sqrt(2 C lambda / eta) ||x||."""
    x, g = {"w": jnp.array([0.6, 0.8])}, {"w": jnp.array([3.0, 4.0])}
    Cs = jnp.array([2.0, 4.0, 8.0])

    def thr(C):
        opt = relative_global_clip(0.1, 0.01, C=C)
        return opt.update(g, opt.init(x), x)[1].threshold

    np.testing.assert_allclose(np.asarray(jax.jit(jax.vmap(thr))(Cs)), np.sqrt(2 * np.asarray(Cs) * 0.01 / 0.1),
                               rtol=1e-6)


@pytest.mark.parametrize("C", ["abc", None, [2.0]])
def test_C_that_is_not_a_number_is_one_type_error_naming_it(C):
    with pytest.raises(TypeError, match=r"C must be a number > 1, got "):
        relative_global_clip(0.1, 0.01, C=C)
