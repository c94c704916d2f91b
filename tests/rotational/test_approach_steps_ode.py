"""R3.1's prediction (issue 27): the closed form of the linear norm ODE for SGD+WD's approach time, pinned and against
the exact norm recursion (a different path: the toy follows the recursion, the row predicts with the ODE)."""
import numpy as np
import pytest

from scaleinv import theory as T


def test_pinned_closed_form():
    # ln((3^4 - 1)/(1.1^4 - 1)) / 4 = ln(80 / 0.4641) / 4 = 1.2872...
    assert T.equilibrium_approach_steps_sgd_ode(1.0, 1.0) == pytest.approx(np.log(80 / 0.4641) / 4, rel=1e-12)
    assert T.equilibrium_approach_steps_sgd_ode(0.025, 0.01) == pytest.approx(5149.6819, abs=1e-3)
    with pytest.raises(ValueError):
        T.equilibrium_approach_steps_sgd_ode(0.1, 0.1, start=1.05)


@pytest.mark.parametrize("eta, wd", [(0.15, 0.01), (0.3, 0.02), (0.05, 0.01)])
def test_ode_matches_the_recursion_to_one_step(eta, wd):
    rec = T.equilibrium_approach_steps("sgd", eta, wd, start=3.0, band=0.1, sigma=2.0)
    ode = T.equilibrium_approach_steps_sgd_ode(eta, wd, start=3.0, band=0.1)
    assert abs(rec - ode) <= 1.0 + 2 * eta * wd * ode, (rec, ode)
