"""scaleinv.radial: Hyperball and the radial brake against hand-computed values (2x2 / 3-vector),
Hyperball's exact angle arctan(eta) for an update orthogonal to W, and the registry entries."""
import math

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from scaleinv import registry as R
from scaleinv.radial import hyperball, hyperball_angle, radial_brake

ALL = lambda p: {"w": True}   # noqa: E731


def test_hyperball_exact_values_2x2():
    # W = diag(3, 4), ||W0|| = 5; G = [[0,1],[1,0]] (orthogonal to W), inner sgd(1): d = -G, Norm(d) = -G/sqrt2
    # V = W - 0.1 * 5 * G/sqrt2: off-diagonal a = 0.5/sqrt2 = 0.35355339; ||V||^2 = 25 + 2 a^2 = 25.25
    # W' = 5 V / sqrt(25.25): factor f = 0.99503719
    W = {"w": jnp.array([[3.0, 0.0], [0.0, 4.0]])}
    G = {"w": jnp.array([[0.0, 1.0], [1.0, 0.0]])}
    tx = hyperball(optax.sgd(1.0), 0.1, select=ALL)
    u, s = tx.update(G, tx.init(W), W)
    # float32: W' - W on the diagonal cancels 3 - 2.985 (ulp of 4 is 4.8e-7), so atol 1e-6 on the update,
    # and W' itself to 1e-6 relative
    np.testing.assert_allclose(np.asarray(u["w"]), [[-0.01488843, -0.35179877], [-0.35179877, -0.01985124]],
                               rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(W["w"] + u["w"]), [[2.98511157, -0.35179877], [-0.35179877, 3.98014876]],
                               rtol=1e-6)
    new = np.asarray(W["w"] + u["w"], np.float64)
    assert np.linalg.norm(new) == pytest.approx(5.0, rel=1e-6)
    cos = np.sum(new * np.asarray(W["w"])) / 25.0
    assert math.acos(min(cos, 1.0)) == pytest.approx(math.atan(0.1), rel=1e-3)   # arctan(0.1) = 0.0996687
    assert hyperball_angle(0.1) == pytest.approx(0.09966865249116204, rel=1e-12)
    # a second step keeps ||W|| = ||W0|| = 5, even with a gradient 100x larger
    u2, _ = tx.update({"w": 100 * G["w"]}, s, {"w": W["w"] + u["w"]})
    assert np.linalg.norm(np.asarray(W["w"] + u["w"] + u2["w"])) == pytest.approx(5.0, rel=1e-6)


def test_radial_brake_exact_values_3_vector():
    w = {"w": jnp.array([3.0, 0.0, 4.0])}                 # ||w|| = 5
    tx = radial_brake(optax.sgd(1.0), outward=0.5, inward=0.2, select=ALL)
    st = tx.init(w)
    # outward: w_new = (6, 0, 8), ||w_new|| = 10 -> 5 + 0.5 * 5 = 7.5 -> w' = (4.5, 0, 6)
    u, _ = tx.update({"w": -jnp.array([3.0, 0.0, 4.0])}, st, w)
    np.testing.assert_allclose(np.asarray(w["w"] + u["w"]), [4.5, 0.0, 6.0], rtol=1e-6)
    # inward: w_new = (1.5, 0, 2), ||w_new|| = 2.5 -> 5 + 0.2 * (-2.5) = 4.5 -> w' = (2.7, 0, 3.6)
    u, _ = tx.update({"w": jnp.array([1.5, 0.0, 2.0])}, st, w)
    np.testing.assert_allclose(np.asarray(w["w"] + u["w"]), [2.7, 0.0, 3.6], rtol=1e-6)
    # a turn: w_new = (0, 12, 0), ||.|| = 12 -> 5 + 0.5 * 7 = 8.5 -> w' = (0, 8.5, 0) (direction kept)
    u, _ = tx.update({"w": jnp.array([3.0, -12.0, 4.0])}, st, w)
    np.testing.assert_allclose(np.asarray(w["w"] + u["w"]), [0.0, 8.5, 0.0], atol=1e-6)
    with pytest.raises(ValueError, match="outward must be in"):
        radial_brake(optax.sgd(1.0), outward=1.5)


def test_registry_entries_of_the_norm_controlled_updates():
    assert R.predict("hyperball-sgd", 0.05, 0.0)["angle"] == pytest.approx(math.atan(0.05))
    assert R.predict("hyperball-adam", 0.05, 0.0) == {"angle": None, "sq_norm": None}
    p = R.predict("sgd-wd-brake", 0.1, 0.02, sigma=1.0)      # the brake keeps SGD + WD's fixed point
    assert p == R.predict("sgd-wd", 0.1, 0.02, sigma=1.0)
    assert R.predict_t_eq_slope("sgd-wd-brake", 0.1, 0.02) == pytest.approx(1 / (-2 * math.log(1 - 0.5 * 0.002)))
