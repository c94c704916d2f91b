"""scaleinv.theory.lyu2022 (edge of stability of GD + WD) against proofs_check.eos, and the valley toy's
sharpness formula against JAX's Hessian."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from proofs_check import eos as PE
from scaleinv.theory import lyu2022 as LY
from toyproblems import claims_eos as E


D = {d.id: d for d in PE.derivations()}


@settings(deadline=None, max_examples=40)
@given(e=st.floats(1e-3, 0.5), l=st.floats(1e-3, 0.5), s0=st.floats(0.5, 5.0), S=st.floats(0.1, 2.0))
def test_onset_reaches_two(e, l, s0, S):
    t = LY.eos_onset_steps(e, l, s0, S)
    # (1 - eta lambda)^(2t) with t up to ~1e6 steps: rounding ~1e-10
    assert LY.effective_sharpness(e, LY.wd_only_sq_norm(s0, e, l, t), S) == pytest.approx(2.0, rel=1e-8)
    d = D["P14.onset"]
    syms = sorted(d.derived.free_symbols, key=lambda s: s.name)
    vals = {"eta": e, "q": 1 - e * l, "s0": s0, "S": S}
    assert float(sp.lambdify(syms, d.derived)(*[vals[s.name] for s in syms])) == pytest.approx(t, rel=1e-10)


@settings(deadline=None, max_examples=20)
@given(phi=st.floats(0.0, 6.28), r=st.floats(0.2, 3.0))
def test_valley_sharpness_matches_jax_hessian(phi, r):
    with jax.enable_x64(True):
        x = jnp.array([r * np.cos(phi), r * np.sin(phi), 0.0])
        top = float(jnp.linalg.eigvalsh(jax.hessian(E.valley_loss)(x))[-1])
    assert top == pytest.approx((1 + E.C_VALLEY * np.cos(phi) ** 2) / r**2, rel=1e-10)


def test_derivations_pass():
    assert {k: d.status for k, d in D.items()} == {"P14.stability": "pass", "P14.valley_sharpness": "pass",
                                                          "P14.onset": "pass"}
