"""Helpers of toyproblems.claims_rotational (the claims themselves run in `scaleinv verify`)."""
import numpy as np
import pytest

from toyproblems import claims_rotational as R


def test_time_to_band_is_last_exit():
    eq = np.array([1.0, 1.0])
    norm = np.array([[3.0, 2.0, 1.05, 1.2, 1.0, 1.0],      # re-exits the band at step 3
                     [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_array_equal(R._time_to_band(norm, eq, band=0.1), [4, 0])


def test_grids_respect_the_model_regime():
    """eta*lambda << 1 - beta for every EMA (stated assumption of the claims) and no
    under-damped SGDM norm dynamics."""
    for quick in (True, False):
        C, steps, grids = R._setup(quick)
        assert C >= 256
        for name, cfgs in grids.items():
            for eta, wd, beta, sigma, beta2 in cfgs:
                el = eta * wd
                assert steps * el >= 6.0, (name, eta, wd)          # >= 6 time constants per run
                if name == "sgdm":
                    assert el < (1 - beta) ** 2 / (2 * (1 + beta))
                if name in ("adamw", "lion", "adam_l2"):
                    assert el <= 0.1 * (1 - beta), (name, el, beta)
                if name == "lion":
                    assert el <= 0.1 * (1 - beta2)


def test_unknown_optimizer_is_rejected():
    with pytest.raises(ValueError, match="optimizer must be one of"):
        R.simulate_equilibrium("rmsprop", 0, True)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        R.predict("rmsprop", 0.1, 0.01, 0.9, 1.0, 0.99, 256)
