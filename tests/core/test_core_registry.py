"""The optimizer registry (scaleinv.registry): one step of every entry against its update rule
written out by hand, the predictions against their closed forms (computed here, not through
scaleinv.theory), and the refusals."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from scaleinv import registry as R

X = {"w": jnp.array([[3.0, -1.0, 2.0], [0.5, 1.5, -2.5]])}
G = {"w": jnp.array([[0.2, 0.1, -0.3], [-0.4, 0.05, 0.25]])}
ETA, WD = 0.1, 0.05


def _step(name, wd=WD, **hp):
    lr = (lambda t: ETA) if name in ("sgdc", "adamc") else ETA
    tx = R.make(name, lr, 0.0 if name == "sgd" else wd, **hp)
    u, _ = tx.update(G, tx.init(X), X)
    return np.asarray(u["w"], np.float64)


x, g = np.asarray(X["w"], np.float64), np.asarray(G["w"], np.float64)


def test_registered_names_are_the_documented_set():
    assert set(R.names()) == {"sgd", "sgd-wd", "sgd-wd-rgc", "sgdm", "adamw", "adam-l2", "lion", "sgdc",
                              "adamc", "rv-sgd-wd", "rv-sgdm", "rv-adamw", "rv-lion",
                              "hyperball-sgd", "hyperball-adam", "sgd-wd-brake"}


@pytest.mark.parametrize("name, expect", [
    ("sgd", -ETA * g),
    ("sgd-wd", -ETA * (g + WD * x)),
    ("sgdm", -ETA * (g + WD * x)),                 # first step: momentum buffer = the gradient
    ("sgdc", -ETA * (g + WD * x)),                 # eta_t = eta_max: lambda_t = lambda
    # Lion: sign(b1 m + (1 - b1) g) = sign(g) with m = 0, then decoupled WD
    ("lion", -ETA * (np.sign(g) + WD * x)),
])
def test_one_step_matches_the_update_rule(name, expect):
    np.testing.assert_allclose(_step(name), expect, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["adamw", "adamc", "adam-l2"])
def test_adam_family_first_step(name):
    """Adam's first step: m_hat / (sqrt(v_hat) + eps) = g / (|g| + eps) (float32 bias
    corrections: 1e-5 relative); AdamW / AdamC add lambda x after it, Adam + L2 before it."""
    eps = 1e-8
    gg = g + WD * x if name == "adam-l2" else g
    expect = -ETA * gg / (np.abs(gg) + eps)
    if name != "adam-l2":
        expect = expect - ETA * WD * x
    np.testing.assert_allclose(_step(name), expect, rtol=1e-5)


def test_sgd_wd_rgc_clips_to_the_relative_threshold():
    thr = math.sqrt(2 * 2.0 * WD / ETA) * np.linalg.norm(x)
    big = {"w": G["w"] * 100.0}
    tx = R.make("sgd-wd-rgc", ETA, WD, C=2.0)
    u, _ = tx.update(big, tx.init(X), X)
    gb = np.asarray(big["w"], np.float64)
    clipped = gb * thr / np.linalg.norm(gb)
    np.testing.assert_allclose(np.asarray(u["w"]), -ETA * (clipped + WD * x), rtol=2e-6)
    # C is honoured: a larger C raises the threshold
    tx4 = R.make("sgd-wd-rgc", ETA, WD, C=8.0)
    u4, _ = tx4.update(big, tx4.init(X), X)
    assert np.linalg.norm(np.asarray(u4["w"]) + ETA * WD * x) == pytest.approx(ETA * 2 * thr, rel=1e-5)


def test_mask_is_honoured_by_every_entry_that_takes_one():
    mask = {"w": False}
    for name in ("sgd-wd", "sgd-wd-rgc", "sgdm", "adamw", "adam-l2", "lion", "sgdc", "adamc"):
        wd = 1.0 if name == "adam-l2" else WD     # large enough that g + lambda x flips a sign
        with_mask, without = _step(name, wd=wd, mask=mask), _step(name, wd=wd)
        assert not np.allclose(with_mask, without), name   # the decay term is gone
        if name in ("sgd-wd", "sgdm", "sgdc", "sgd-wd-rgc"):
            np.testing.assert_allclose(with_mask, -ETA * g, rtol=2e-6, err_msg=name)


def test_rotational_entries_keep_the_norm_and_rotate_by_the_predicted_angle():
    key = jax.random.PRNGKey(0)
    w = jax.random.normal(key, (64,))
    p = {"w": w - jnp.mean(w)}      # zero mean: the wrappers' default centring leaves it unchanged
    gr = {"w": jax.random.normal(jax.random.fold_in(key, 1), (64,))}
    for name in ("rv-sgd-wd", "rv-sgdm", "rv-adamw", "rv-lion"):
        tx = R.make(name, ETA, WD, per_neuron=False, rotate=lambda q: {"w": True})
        u, _ = tx.update(gr, tx.init(p), p)
        new = np.asarray(p["w"] + u["w"], np.float64)
        old = np.asarray(p["w"], np.float64)
        assert np.linalg.norm(new) == pytest.approx(np.linalg.norm(old), rel=1e-5), name
        ang = math.acos(np.dot(new, old) / (np.linalg.norm(new) * np.linalg.norm(old)))
        # first step: the EMA of ||u||^2 is ||u||^2, so the step is exactly arctan(eta_r)
        assert ang == pytest.approx(math.atan(float(R.predict(name, ETA, WD)["angle"])), rel=1e-4), name


def test_predictions_are_the_closed_forms():
    eta, lam, sigma, d, b1, b2, mom = 0.01, 0.1, 2.0, 50, 0.9, 0.99, 0.9
    p = R.predict("sgd-wd", eta, lam, sigma=sigma)
    assert p["angle"] == pytest.approx(math.sqrt(2 * eta * lam))
    # exact constant-sigma fixed point of s' = (1 - eta lam)^2 s + eta^2 sigma^2 / s
    assert p["sq_norm"] == pytest.approx(sigma * math.sqrt(eta / (lam * (2 - eta * lam))))
    assert R.predict("sgdm", eta, lam, momentum=mom)["angle"] == pytest.approx(math.sqrt(2 * eta * lam / (1 + mom)))
    pa = R.predict("adamw", eta, lam, dim=d, b1=b1)
    assert pa["angle"] == pytest.approx(math.sqrt(2 * eta * lam * (1 - b1) / (1 + b1)))
    # the corrected stationary norm (N1 x N3): f eta d / (lambda (2 - eta lambda)), here with beta2 = 0.99
    assert pa["sq_norm"] == pytest.approx(eta * d / (2 * lam), rel=0.05)
    # pinned (theory.adamw_source_factor's docstring, from the N1 / N3 derivations of proofs_check.adamw_noise):
    # eta lambda = 0.01, beta1 = 0.5, beta2 = 0.99, d = 256: ||x||^2 = 1.25703 (leading order eta d/(2 lambda) = 1.28)
    assert R.predict("adamw", 0.01, 1.0, dim=256, b1=0.5, b2=0.99)["sq_norm"] == pytest.approx(1.25703, abs=5e-6)
    assert R.predict("adamc", 0.01, 1.0, dim=256, b1=0.5, b2=0.99)["sq_norm"] == pytest.approx(1.25703, abs=5e-6)
    assert R.predict("adamw", eta, lam)["sq_norm"] is None          # needs dim
    assert R.predict("sgd", eta, 0.0) == {"angle": None, "sq_norm": None}
    assert R.predict("rv-adamw", eta, lam, b1=0.5)["angle"] == pytest.approx(math.sqrt(2 * eta * lam / 3))
    assert R.predict("sgd-wd-rgc", eta, lam)["angle"] == R.predict("sgd-wd", eta, lam)["angle"]
    lion = R.predict("lion", eta, lam, dim=d, b1=b1, b2=b2)
    # the corrected (alpha^k-weighted arcsine) form: angle^2 ||p||^2 = eta^2 d, and it is smaller than
    # the unweighted form's norm at finite eta lambda (theory.equilibrium_norm_lion_weighted)
    assert lion["angle"] ** 2 * lion["sq_norm"] == pytest.approx(eta ** 2 * d, rel=1e-9)
    from scaleinv import theory as TH
    assert lion["sq_norm"] == pytest.approx(TH.equilibrium_norm_lion_weighted(eta, lam, b1, b2, d) ** 2, rel=1e-12)
    assert lion["sq_norm"] < TH.equilibrium_norm_lion_arcsin(eta, lam, b1, b2, d) ** 2
    # Adam + L2: a gradient-dependent angle, given only with sigma and dim:
    # sqrt((1-b1)/(1+b1)) (2 lambda)^(1/3) eta^(2/3) d^(1/3) sigma^(-1/3)
    al2 = R.predict("adam-l2", eta, lam, sigma=sigma, dim=d, b1=b1)
    assert al2["angle"] == pytest.approx(
        math.sqrt((1 - b1) / (1 + b1)) * (2 * lam) ** (1 / 3) * eta ** (2 / 3) * d ** (1 / 3) * sigma ** (-1 / 3), rel=1e-9)
    assert al2["sq_norm"] == pytest.approx((eta * sigma * math.sqrt(d) / (2 * lam)) ** (2 / 3), rel=1e-9)
    assert R.predict("adam-l2", eta, lam, sigma=sigma) == {"angle": None, "sq_norm": None}     # needs dim


def test_refusals():
    with pytest.raises(ValueError, match="optimizer: unknown value 'nope'; allowed: sgd, "):
        R.get("nope")
    with pytest.raises(TypeError, match="unknown hyper-parameter"):
        R.make("sgd-wd", 0.1, 0.1, momentum=0.9)
    with pytest.raises(ValueError, match="weight_decay"):
        R.make("sgd", 0.1, 0.1)
    with pytest.raises(ValueError, match="weight_decay: must be > 0"):
        R.make("sgd-wd-rgc", 0.1, 0.0)
    with pytest.raises(ValueError, match="already registered"):
        R.register(R.get("sgd"))
    with pytest.raises(ValueError, match="schedule"):
        R.register(R.OptimizerEntry("x", R.get("sgd").make, {}, "x", schedule="cosine"))
    assert "x" not in R.names()


def test_register_a_new_optimizer_and_train_the_toy_with_it():
    name = "test-signsgd"
    R.register(R.OptimizerEntry(name, lambda lr, wd: optax.chain(optax.add_decayed_weights(wd), optax.sign_sgd(lr)) if hasattr(optax, "sign_sgd") else optax.chain(optax.add_decayed_weights(wd), optax.scale_by_learning_rate(lr)), {}, "test"))
    try:
        tx = R.make(name, ETA, WD)
        u, _ = tx.update(G, tx.init(X), X)
        assert np.all(np.isfinite(np.asarray(u["w"])))
        assert R.predict(name, ETA, WD) == {"angle": None, "sq_norm": None}
    finally:
        R.REGISTRY.pop(name)


def test_sibert_trains_every_registered_name():
    from sibert.config import OPTIMIZERS, SGD_FAMILY
    assert tuple(OPTIMIZERS) == R.names()
    assert set(SGD_FAMILY) == {n for n in R.names() if R.get(n).schedule == "sgd"}
