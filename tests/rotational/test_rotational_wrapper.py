"""The rotational optax wrapper (Kosson et al. 2024, REQ algorithm): fixed norms, angle = target,
masks, schedules, descent direction, errors."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from scaleinv import theory
from scaleinv.angular import neuron_angles, neuron_norms
from scaleinv.rotational import (center_params, rotational, rotational_adamw, rotational_lion,
                                 rotational_sgdm)


def _params(key, rows=6, fan=64):
    k1, k2 = jax.random.split(key)
    scales = jnp.logspace(-1, 1, rows)[:, None]
    w = jax.random.normal(k1, (rows, fan))
    return {"w": scales * w / jnp.linalg.norm(w, axis=1, keepdims=True), "b": jax.random.normal(k2, (rows,))}


def _run(opt, params, steps, key):
    """Random isotropic gradients; returns per-step per-neuron angles/norms of 'w' and final params."""
    state = opt.init(params)

    def step(carry, t):
        p, s = carry
        g = jax.tree.map(lambda x: jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, t), x.ndim),
                                                     x.shape, x.dtype), p)
        u, s = opt.update(g, s, p)
        q = optax.apply_updates(p, u)
        return (q, s), (neuron_angles(p["w"], q["w"]), neuron_norms(q["w"]))

    (pf, _), (ang, nrm) = jax.jit(lambda p, s: jax.lax.scan(step, (p, s), jnp.arange(steps)))(params, state)
    return np.asarray(ang), np.asarray(nrm), pf


@pytest.mark.parametrize("make,target", [
    (lambda: rotational_adamw(1e-3, 0.1, b1=0.9, update_norm_decay=0.0), theory.equilibrium_angle_adamw(1e-3, 0.1, 0.9)),
    (lambda: rotational_sgdm(0.1, 1e-2, momentum=0.9, update_norm_decay=0.0), theory.equilibrium_angle_sgdm(0.1, 1e-2, 0.9)),
    (lambda: rotational_lion(1e-4, 1.0, update_norm_decay=0.0), theory.equilibrium_angle_lion(1e-4, 1.0, 0.9, 0.99)),
])
def test_exact_angle_and_fixed_norm_without_ema(make, target):
    """decay 0: every neuron rotates by exactly arctan(eta_r) per step (after the step-0 centring)
    and keeps its initial norm."""
    with jax.enable_x64(True):
        p0 = _params(jax.random.PRNGKey(0))
        ang, nrm, _ = _run(make(), p0, 30, jax.random.PRNGKey(1))
        n0 = np.linalg.norm(np.asarray(p0["w"]), axis=1)
        np.testing.assert_allclose(ang[1:], np.arctan(target), rtol=1e-7)   # eps = 1e-8 vs ||u|| = O(1)
        np.testing.assert_allclose(nrm, np.broadcast_to(n0, nrm.shape), rtol=1e-12)


def test_rms_angle_matches_target_with_ema():
    """REQ default (EMA 0.9 of ||u||^2, bias-corrected): RMS angle per neuron = eta_r within 3 %."""
    with jax.enable_x64(True):
        p0 = _params(jax.random.PRNGKey(2), fan=256)
        ang, nrm, _ = _run(rotational_adamw(1e-3, 0.1), p0, 300, jax.random.PRNGKey(3))
        target = theory.equilibrium_angle_adamw(1e-3, 0.1, 0.9)
        rms = np.sqrt(np.mean(ang[20:] ** 2, axis=0))
        assert np.all(np.abs(rms / target - 1) < 0.03), rms / target
        n0 = np.linalg.norm(np.asarray(p0["w"]), axis=1)
        assert np.max(np.abs(nrm / n0 - 1)) < 1e-12


def test_centring_and_non_rotational_leaves():
    """Rows become zero-mean; the bias (ndim 1) gets exactly the inner AdamW update."""
    with jax.enable_x64(True):
        p0 = _params(jax.random.PRNGKey(4))
        opt = rotational_adamw(1e-3, 0.1)
        g = {"w": jax.random.normal(jax.random.PRNGKey(40), p0["w"].shape), "b": jnp.ones_like(p0["b"])}
        u, _ = opt.update(g, opt.init(p0), p0)
        ref, _ = optax.adamw(1e-3, weight_decay=0.1).update(g, optax.adamw(1e-3, weight_decay=0.1).init(p0), p0)
        np.testing.assert_allclose(u["b"], ref["b"], rtol=1e-14)
        q = optax.apply_updates(p0, u)
        assert np.max(np.abs(np.asarray(q["w"]).mean(axis=1))) < 1e-12
        c = center_params(p0)
        np.testing.assert_allclose(np.linalg.norm(c["w"], axis=1), np.linalg.norm(p0["w"], axis=1), rtol=1e-12)
        assert np.max(np.abs(np.asarray(c["w"]).mean(axis=1))) < 1e-12


def test_per_tensor_mode_fixes_only_the_tensor_norm():
    with jax.enable_x64(True):
        p0 = _params(jax.random.PRNGKey(5))
        opt = rotational_sgdm(0.1, 1e-2, per_neuron=False, zero_mean=False, update_norm_decay=0.0)
        _, nrm, pf = _run(opt, p0, 20, jax.random.PRNGKey(6))
        np.testing.assert_allclose(np.linalg.norm(pf["w"]), np.linalg.norm(p0["w"]), rtol=1e-12)
        assert np.max(np.abs(nrm[-1] / np.linalg.norm(p0["w"], axis=1) - 1)) > 1e-3  # rows do change


def test_composes_with_multi_transform_and_masked():
    with jax.enable_x64(True):
        p0 = {"enc": _params(jax.random.PRNGKey(7)), "head": jnp.ones((3, 4))}
        labels = {"enc": {"w": "rot", "b": "rot"}, "head": "frozen"}
        rv = rotational_adamw(1e-3, 0.1, update_norm_decay=0.0)
        opt = optax.multi_transform({"rot": rv, "frozen": optax.set_to_zero()}, labels)
        g = jax.tree.map(jnp.ones_like, p0)
        g["enc"]["w"] = jax.random.normal(jax.random.PRNGKey(8), p0["enc"]["w"].shape)
        s = opt.init(p0)
        p = center_params(p0, rotate={"enc": {"w": True, "b": False}, "head": False})
        for _ in range(3):
            u, s = opt.update(g, s, p)
            q = optax.apply_updates(p, u)
            np.testing.assert_allclose(np.asarray(neuron_angles(p["enc"]["w"], q["enc"]["w"])),
                                       np.arctan(theory.equilibrium_angle_adamw(1e-3, 0.1, 0.9)), rtol=1e-7)
            p = q
        np.testing.assert_array_equal(p["head"], p0["head"])
        np.testing.assert_allclose(np.linalg.norm(p["enc"]["w"], axis=1), np.linalg.norm(p0["enc"]["w"], axis=1),
                                   rtol=1e-12)
        # optax.masked: only "w" is wrapped; masked-out leaves pass their gradient through unchanged
        m = optax.masked(rotational(optax.sgd(0.1), 0.05, update_norm_decay=0.0),
                         {"enc": {"w": True, "b": False}, "head": False})
        u, _ = m.update(g, m.init(p0), p0)
        np.testing.assert_array_equal(u["head"], g["head"])
        q = optax.apply_updates(p0, u)
        np.testing.assert_allclose(np.linalg.norm(q["enc"]["w"], axis=1), np.linalg.norm(p0["enc"]["w"], axis=1),
                                   rtol=1e-12)


def test_target_follows_learning_rate_schedule():
    with jax.enable_x64(True):
        sched = optax.linear_schedule(1e-3, 1e-4, 10)
        p0 = center_params(_params(jax.random.PRNGKey(9)))
        ang, _, _ = _run(rotational_adamw(sched, 0.1, update_norm_decay=0.0), p0, 10, jax.random.PRNGKey(10))
        want = np.arctan([theory.equilibrium_angle_adamw(float(sched(t)), 0.1, 0.9) for t in range(10)])
        np.testing.assert_allclose(ang, np.broadcast_to(want[:, None], ang.shape), rtol=1e-7)



@pytest.mark.parametrize("name", ["sgdm", "adamw", "lion"])
def test_step_rotation_follows_the_scheduled_lr_at_each_step(name):
    """Under a step schedule (eta = 0.1 for steps 0-4, then 0.01) step t rotates every neuron by
    arctan(eta_r(eta_t)), eta_r the equilibrium angle of the *current* step's LR: for RV-SGDM
    sqrt(2 eta_t lambda / (1 + alpha)), for RV-AdamW sqrt(2 eta_t lambda (1 - b1)/(1 + b1))
    (Kosson et al. 2024, docs/PAPER_NOTES.md), for RV-Lion scaleinv.theory.equilibrium_angle_lion.
    The two schedule points differ by sqrt(10) in eta_r, so reading the LR of another step (e.g.
    the next one at the jump, step 4) is off by a factor ~3; tolerance rtol 1e-7 (eps = 1e-8
    against ||u|| = O(1), update_norm_decay = 0 makes every step exact)."""
    lam, alpha, b1 = 1e-2, 0.9, 0.9
    sched = optax.piecewise_constant_schedule(0.1, {5: 0.1})
    make, eta_r = {
        "sgdm": (lambda: rotational_sgdm(sched, lam, momentum=alpha, update_norm_decay=0.0),
                 lambda eta: np.sqrt(2 * eta * lam / (1 + alpha))),
        "adamw": (lambda: rotational_adamw(sched, lam, b1=b1, update_norm_decay=0.0),
                  lambda eta: np.sqrt(2 * eta * lam * (1 - b1) / (1 + b1))),
        "lion": (lambda: rotational_lion(sched, lam, b1=b1, b2=0.99, update_norm_decay=0.0),
                 lambda eta: theory.equilibrium_angle_lion(eta, lam, b1, 0.99)),
    }[name]
    with jax.enable_x64(True):
        p0 = center_params(_params(jax.random.PRNGKey(11)))
        ang, nrm, _ = _run(make(), p0, 10, jax.random.PRNGKey(12))
    assert [float(sched(t)) for t in (0, 4, 5, 9)] == pytest.approx([0.1, 0.1, 0.01, 0.01])
    want = np.arctan([eta_r(0.1)] * 5 + [eta_r(0.01)] * 5)
    np.testing.assert_allclose(ang, np.broadcast_to(want[:, None], ang.shape), rtol=1e-7)
    np.testing.assert_allclose(nrm[-1], np.linalg.norm(np.asarray(p0["w"]), axis=1), rtol=1e-12)

def test_descends_a_scale_invariant_loss():
    """Sign convention: RV-AdamW aligns every neuron with its target direction."""
    with jax.enable_x64(True):
        key = jax.random.PRNGKey(11)
        tgt = jax.random.normal(key, (4, 32))
        tgt = tgt - tgt.mean(axis=1, keepdims=True)
        tgt = tgt / jnp.linalg.norm(tgt, axis=1, keepdims=True)

        def loss(w):
            return -jnp.sum(w / jnp.linalg.norm(w, axis=1, keepdims=True) * tgt)

        w = jax.random.normal(jax.random.fold_in(key, 1), (4, 32))
        opt = rotational_adamw(0.05, 0.1)
        l0 = float(loss(w))

        def step(c, _):
            w, s = c
            u, s = opt.update(jax.grad(loss)(w), s, w)
            return (optax.apply_updates(w, u), s), None

        w = jax.jit(lambda w: jax.lax.scan(step, (w, opt.init(w)), None, length=200)[0][0])(w)
        assert float(loss(w)) < l0 - 1.0 and float(loss(w)) < -3.5, (l0, float(loss(w)))


def test_vmap_over_traced_target():
    with jax.enable_x64(True):
        p0 = center_params(_params(jax.random.PRNGKey(12))["w"])
        g = jax.random.normal(jax.random.PRNGKey(13), p0.shape)

        def angle(target):
            opt = rotational(optax.sgd(1.0), target, update_norm_decay=0.0)
            u, _ = opt.update(g, opt.init(p0), p0)
            return neuron_angles(p0, p0 + u)

        targets = jnp.array([0.01, 0.1])
        out = np.asarray(jax.vmap(angle)(targets))
        np.testing.assert_allclose(out, np.broadcast_to(np.arctan(targets)[:, None], out.shape), rtol=1e-7)


def test_errors_name_the_field():
    with pytest.raises(ValueError, match="weight_decay"):
        rotational_adamw(1e-3, 0.0)
    with pytest.raises(ValueError, match="update_norm_decay"):
        rotational(optax.sgd(0.1), 0.1, update_norm_decay=1.0)
    with pytest.raises(ValueError, match="target"):
        rotational(optax.sgd(0.1), -0.1)
    with pytest.raises(ValueError, match="momentum"):
        rotational_sgdm(0.1, 0.01, momentum=1.5)
    opt = rotational(optax.sgd(0.1), 0.1)
    p = {"w": jnp.ones((2, 3))}
    with pytest.raises(ValueError, match="params"):
        opt.update(p, opt.init(p))


def test_neuron_axis_for_flax_kernels():
    """neuron_axis=-1: the columns of an (in, out) kernel are the neurons; same result as the
    transposed (out, in) weight with neuron_axis=0."""
    with jax.enable_x64(True):
        p0 = _params(jax.random.PRNGKey(14))["w"]
        g = jax.random.normal(jax.random.PRNGKey(15), p0.shape)
        a = rotational_adamw(1e-3, 0.1)
        b = rotational_adamw(1e-3, 0.1, neuron_axis=-1)
        ua, _ = a.update(g, a.init(p0), p0)
        ub, _ = b.update(g.T, b.init(p0.T), p0.T)
        np.testing.assert_allclose(np.asarray(ub).T, np.asarray(ua), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(np.linalg.norm(p0.T + ub, axis=0), np.linalg.norm(p0, axis=1), rtol=1e-12)
        c = center_params(p0.T, neuron_axis=-1)
        assert np.max(np.abs(np.asarray(c).mean(axis=0))) < 1e-12
