"""scaleinv.theory's closed forms must equal proofs_check's derivations: each derived sympy expression
is lambdified and compared with the theory.py function at hypothesis-drawn points (rtol 1e-10), so
the numbers `scaleinv verify` predicts and the algebra `scaleinv proofs` derives cannot drift apart.
A disagreement here means theory.py (or a derivation) is wrong -- report it, do not loosen the test."""
import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from proofs_check import clipping, effective_lr, equilibrium, gdwd, rotational
from proofs_check.report import all_derivations, by_id
from scaleinv import theory

RTOL = 1e-10
etas = st.floats(1e-3, 1.0)
lams = st.floats(1e-4, 0.9)
sigmas = st.floats(0.1, 10.0)


@pytest.fixture(scope="module")
def D():
    return by_id(all_derivations())


def ev(expr, **vals):
    """Evaluate a sympy expression at named values (every free symbol must be given)."""
    syms = sorted(sp.sympify(expr).free_symbols, key=lambda s: s.name)
    missing = [s.name for s in syms if s.name not in vals]
    assert not missing, f"no value for {missing} in {expr}"
    return float(sp.lambdify(syms, expr, "numpy")(*[vals[s.name] for s in syms]))


def close(a, b):
    np.testing.assert_allclose(float(a), float(b), rtol=RTOL)


@given(e=etas, l=lams, s=sigmas)
def test_equilibrium(D, e, l, s):
    v = dict(eta=e, **{"lambda": l}, sigma=s)
    close(theory.equilibrium_sq_norm(e, l, s), ev(D["P6.norm"].derived, **v))
    close(theory.equilibrium_sq_norm_as_stated(e, l, s), ev(D["P6.norm"].stated, **v))
    close(theory.equilibrium_grad_ratio(e, l), ev(D["P6.ratio"].derived, **v))
    close(theory.equilibrium_grad_norm(e, l, s), s / np.sqrt(ev(equilibrium.fixed_point(), **v)))
    close(theory.norm_sq_update_orthogonal(2.5, e, l, s), ev(equilibrium.norm_map(), u=2.5, **v))


@given(e=etas, l=lams, c=st.floats(0.5, 4.0))
def test_clipping(D, e, l, c):
    v = dict(eta=e, **{"lambda": l}, C=c)
    close(theory.clip_never_fires_min_C(e, l), ev(D["P7.clip"].derived, **v))
    close(theory.max_sq_norm_growth_with_clip(e, l, C=c), ev(clipping.clipped_growth_bound()[0], **v))


@given(e=etas, l=st.floats(1e-4, 0.5), tt=st.integers(0, 60))
def test_exp_lr(D, e, l, tt):
    qq = 1 - e * l
    close(theory.exp_lr_schedule(tt, e, l), ev(D["P5.exp_lr"].derived, eta=e, q=qq, t=tt))
    close(theory.exp_lr_schedule_as_stated(tt, e, l), ev(D["P5.exp_lr"].stated, eta=e, q=qq, t=tt))
    close(theory.wd_to_exp_lr_rescale(tt, e, l), ev(D["P5.rescale"].derived, q=qq, t=tt))


@given(X=st.floats(1.2, 1e4), Lp=st.floats(1e-3, 1.0), k=st.integers(2, 6))
def test_ex1_threshold(D, X, Lp, k):
    close(theory.ex1_divergence_lr(X, Lp, k), ev(D["P2.threshold"].derived, X=X, Lp=Lp, k=k))
    close(theory.ex1_divergence_lr(X, -Lp, k), ev(D["P2.threshold"].derived, X=X, Lp=Lp, k=k))   # uses |L~'|


@given(e=etas, r=st.floats(1e-2, 1e2))
def test_effective_lr(e, r):
    expr, rsym = effective_lr.effective_lr_expr()
    close(theory.effective_lr(e, r), ev(expr, eta=e, r=r))


@given(e=etas, l=lams, slo=sigmas, shi=sigmas)
def test_norm_band(e, l, slo, shi):
    u_lo, u_hi, _, _ = equilibrium.band_bounds()
    lo, hi = theory.sgd_wd_norm_band(e, l, slo, shi)
    v = dict(eta=e, **{"lambda": l}, sigma_lo=slo, sigma_hi=shi)
    close(lo, ev(u_lo, **v))
    close(hi, ev(u_hi, **v))


@given(e=etas, l=st.floats(1e-4, 0.5), rho=st.floats(0.1, 10.0), x2=st.floats(0.1, 100.0), g2=st.floats(0.0, 10.0))
def test_gdwd(D, e, l, rho, x2, g2):
    close(theory.descent_lemma_lower_bound(e, rho, x2, g2), ev(D["P8.descent"].stated, eta=e, rho=rho, r2=x2, g2=g2) if g2 else 0.0)
    if not gdwd.T0_SLOPE:
        gdwd.derivations()
    close(theory.t0_slope(e, l), ev(gdwd.T0_SLOPE["leading"], eta=e, **{"lambda": l}))
    # the leading-order slope approximates the exact one to relative O(eta lambda)
    exact = ev(gdwd.T0_SLOPE["exact"], eta=e, **{"lambda": l})
    assert abs(theory.t0_slope(e, l) / exact - 1) <= e * l


@given(e=st.floats(1e-4, 0.5), l=st.floats(1e-3, 0.9), a=st.floats(0.0, 0.99), b1=st.floats(0.0, 0.99),
       s=sigmas, dim=st.integers(1, 10_000))
def test_rotational(e, l, a, b1, s, dim):
    F = rotational.closed_forms()
    v = dict(eta=e, **{"lambda": l}, alpha=a, beta=b1, sigma=s, D=dim, C_d=dim)
    close(theory.equilibrium_angle_sgd(e, l), ev(F["sgd"], **v))
    close(theory.equilibrium_angle_sgd_exact(e, l), ev(F["sgd_exact"], **v))
    close(theory.equilibrium_norm_sgd(e, l, s), ev(F["sgd_norm"], **v))
    close(theory.equilibrium_angle_sgdm(e, l, a), ev(F["sgdm"], **v))
    close(theory.equilibrium_norm_sgdm(e, l, a, s), ev(F["sgdm_norm"], **v))
    close(theory.equilibrium_angle_adamw(e, l, b1), ev(F["adamw"], **v))
    close(theory.equilibrium_norm_adamw(e, l, dim), np.sqrt(ev(F["adamw_norm_sq"], **v)))
    close(theory.equilibrium_angle_adam_l2(e, l, b1, s, dim), ev(F["adam_l2"], **v))
    close(theory.equilibrium_norm_adam_l2(e, l, s, dim), ev(F["adam_l2_norm"], **v))


def test_a_drifted_theory_function_would_be_caught(D):
    """The comparison above is sharp: the talk's sqrt(2)-too-large equilibrium, substituted for the
    derived one, fails it."""
    v = dict(eta=0.1, **{"lambda": 0.01}, sigma=1.0)
    with pytest.raises(AssertionError):
        close(theory.equilibrium_sq_norm_as_stated(0.1, 0.01, 1.0), ev(D["P6.norm"].derived, **v))
    with pytest.raises(AssertionError):
        close(theory.exp_lr_schedule_as_stated(5, 0.1, 0.01), ev(D["P5.exp_lr"].derived, eta=0.1, q=0.999, t=5))
