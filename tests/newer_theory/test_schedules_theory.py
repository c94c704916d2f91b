"""scaleinv.theory.defazio2025 (Defazio 2025 + the norm ODE derived here) against proofs_check.schedules,
its special cases, and the corrected-weight-decay optax factories (scaleinv.corrected_wd)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from proofs_check import schedules as PS
from scaleinv import theory
from scaleinv.theory import defazio2025 as TS
from scaleinv.corrected_wd import adamc, corrected_wd_schedule, sgdc

etas = st.floats(1e-3, 1.0)
lams = st.floats(1e-4, 0.9)


FORMS = PS.closed_forms()          # sympy once per module (it is slow), lambdified once per form
FUNCS = {k: (sorted(v.free_symbols, key=lambda s: s.name), v) for k, v in FORMS.items()}
FUNCS = {k: (syms, sp.lambdify(syms, v, "numpy")) for k, (syms, v) in FUNCS.items()}


def ev(name, **vals):
    syms, f = FUNCS[name]
    return float(f(*[vals[s.name] for s in syms]))


@settings(deadline=None, max_examples=30)
@given(e=etas, l=lams)
def test_ratio_closed_forms_match_derivation(e, l):
    np.testing.assert_allclose(TS.steady_grad_ratio_sgd(e, l), ev("ratio_leading", eta=e, **{"lambda": l}), rtol=1e-12)
    np.testing.assert_allclose(theory.equilibrium_grad_ratio(e, l), ev("ratio_exact", eta=e, **{"lambda": l}),
                               rtol=1e-12)
    # leading order vs exact: relative size sqrt(1 - eta lambda/2)
    np.testing.assert_allclose(theory.equilibrium_grad_ratio(e, l) / TS.steady_grad_ratio_sgd(e, l),
                               np.sqrt(1 - e * l / 2), rtol=1e-12)


@settings(deadline=None, max_examples=30)
@given(e=etas, l=lams, emax=st.floats(1e-3, 1.0), sigma=st.floats(0.1, 10.0), dim=st.integers(2, 4096))
def test_corrected_ratio_is_schedule_free_and_adamw_ratio(e, l, emax, sigma, dim):
    lt = TS.corrected_weight_decay(e, l, emax)
    np.testing.assert_allclose(TS.steady_grad_ratio_sgd(e, lt), np.sqrt(2 * l / emax), rtol=1e-12)
    np.testing.assert_allclose(TS.steady_grad_ratio_adamw(e, lt, sigma, dim), 2 * l * sigma / (emax * dim), rtol=1e-12)
    # AdamW ratio = sigma / ||x*||^2 with the rotational-equilibrium norm of scaleinv.theory
    np.testing.assert_allclose(TS.steady_grad_ratio_adamw(e, l, sigma, dim),
                               sigma / theory.equilibrium_norm_adamw(e, l, dim) ** 2, rtol=1e-12)


@settings(deadline=None, max_examples=20)
@given(K=st.floats(5.0, 1e4), c=st.sampled_from(["sgd", "adamw"]), delta=st.floats(0.02, 0.5))
def test_lag_onset_solves_first_order_condition(K, c, delta):
    cc, _ = TS.norm_ode_coefficients(c)
    eps = (1 + delta) ** 2 - 1 if c == "sgd" else delta
    a = TS.lag_onset_fraction("linear", K, c, delta)
    np.testing.assert_allclose(ev("eps_linear", c=cc, K=K, a=a), eps, rtol=1e-10)
    a = TS.lag_onset_fraction("cosine", K, c, delta)
    if a < 1.0:
        e_cos = 2 * np.pi * np.sin(np.pi * a) / (cc * K * (1 - np.cos(np.pi * a)) ** 2)
        np.testing.assert_allclose(e_cos, eps, rtol=1e-8)
    # the first-order lag of the ratio at that point is exactly 1/(1 + delta)
    np.testing.assert_allclose(TS.lag_first_order(c, eps), 1 / (1 + delta), rtol=1e-12)


def test_lag_onset_exponents_at_large_K():
    Ks = np.array([1e5, 1e6])
    for kind in ("linear", "cosine"):
        a = TS.lag_onset_fraction(kind, Ks)
        slope = np.diff(np.log(a)) / np.diff(np.log(Ks))
        assert slope[0] == pytest.approx(TS.lag_onset_exponent(kind), abs=1e-3)


@settings(deadline=None, max_examples=15)
@given(e=st.floats(0.05, 0.5), l=st.floats(0.05, 0.5), opt=st.sampled_from(["sgd", "adamw"]))
def test_norm_ode_constant_schedule_relaxes_to_quasi_static(e, l, opt):
    c, b = TS.norm_ode_coefficients(opt, sigma=2.0, dim=64)
    T = int(40 / (c * e * l)) + 2
    y = TS.norm_ode_solution(opt, np.full(T, e), np.full(T, l), 10 * b * e / (c * l), sigma=2.0, dim=64)
    np.testing.assert_allclose(y[-1], b * e / (c * l), rtol=1e-12)
    # corrected weight decay started at y_qs of eta_max stays there exactly, for any schedule
    eta = TS.lr_schedule("cosine", np.arange(500), e, 500)
    y = TS.norm_ode_solution(opt, eta, TS.corrected_weight_decay(eta, l, e), b * e / (c * l), sigma=2.0, dim=64)
    np.testing.assert_allclose(y, b * e / (c * l), rtol=1e-10)


def test_norm_ode_lag_matches_first_order_in_the_slow_part():
    """Linear decay, K = 300: where eps <= 2 % the ODE's y/y_qs - 1 equals eps to first order."""
    T, emax, l = 30000, 0.1, 0.1
    t = np.arange(T)
    eta = TS.lr_schedule("linear", t, emax, T)
    y = TS.norm_ode_solution("sgd", eta, l, 2 * emax / (4 * l) * (1 + TS.adiabaticity("sgd", emax, -emax / T, l)))
    eps = TS.adiabaticity("sgd", eta, TS.lr_schedule_slope("linear", t, emax, T), l)
    slow = eps <= 0.02
    ratio = y[slow] / (2 * eta[slow] / (4 * l)) - 1
    np.testing.assert_allclose(ratio, eps[slow], rtol=0.05, atol=2e-4)


def test_schedules_and_bad_input():
    t = np.array([0.0, 50.0, 100.0])
    np.testing.assert_allclose(TS.lr_schedule("linear", t, 2.0, 100), [2.0, 1.0, 0.0])
    np.testing.assert_allclose(TS.lr_schedule("cosine", t, 2.0, 100), [2.0, 1.0, 0.0], atol=1e-15)
    h = 1e-4
    for kind in TS.SCHEDULES:
        num = (TS.lr_schedule(kind, 37.0 + h, 2.0, 100) - TS.lr_schedule(kind, 37.0 - h, 2.0, 100)) / (2 * h)
        assert TS.lr_schedule_slope(kind, 37.0, 2.0, 100) == pytest.approx(num, rel=1e-6, abs=1e-12)
    with pytest.raises(ValueError, match="schedule must be one of"):
        TS.lr_schedule("exponential", t, 1.0, 10)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TS.norm_ode_coefficients("lion")


def test_sgdc_and_adamc_updates():
    with jax.enable_x64(True):
        lr = lambda t: 0.5 * (1.0 - t / 100.0)  # noqa: E731 (float64; optax's schedules use float32 constants)
        x = jnp.array([1.0, -2.0, 3.0])
        g = jnp.array([0.3, 0.1, -0.2])
        opt = sgdc(lr, 0.1)
        s = opt.init(x)
        for step in range(3):
            u, s = opt.update(g, s, x)
            et = float(lr(step))
            np.testing.assert_allclose(u, -et * (g + 0.1 * et / 0.5 * x), rtol=1e-14)
        # AdamC with a constant schedule is AdamW
        const = optax.constant_schedule(0.01)
        a1, a2 = adamc(const, 0.1), optax.adamw(0.01, weight_decay=0.1)
        s1, s2 = a1.init(x), a2.init(x)
        for _ in range(3):
            u1, s1 = a1.update(g, s1, x)
            u2, s2 = a2.update(g, s2, x)
            np.testing.assert_allclose(u1, u2, rtol=1e-14)
        assert float(corrected_wd_schedule(lr, 0.1)(50)) == pytest.approx(0.1 * 0.25 / 0.5)
    with pytest.raises(TypeError, match="learning_rate must be a schedule"):
        sgdc(0.1, 0.1)
    with pytest.raises(ValueError, match="weight_decay must be > 0"):
        adamc(optax.constant_schedule(0.1), -1.0)


@pytest.mark.parametrize("e,l,dim,b2", [(0.005, 2.0, 16, 0.9), (0.05, 1.0, 64, 0.999), (0.01, 2.0, 256, 0.99)])
def test_adamw_mean_field_fixed_point_and_corrected_schedule(e, l, dim, b2):
    """Constant eta: the mean-field AdamW recursion (with Adam's v) settles at eta C/(lambda (2 - eta lambda));
    corrected weight decay under a cosine schedule keeps it within eta lambda of that value (the exact fixed
    point drifts by the (2 - eta_t lambda_t) factor, <= eta lambda/2, plus the v-lag transient)."""
    T = int(40 / (e * l)) + int(20 / (1 - b2))
    s_eq = e * dim / (l * (2 - e * l))
    s = TS.adamw_norm_mean_field(np.full(T, e), np.full(T, l), 2 * s_eq, dim, beta2=b2)
    np.testing.assert_allclose(s[-1], s_eq, rtol=1e-3)
    eta = TS.lr_schedule("cosine", np.arange(2000), e, 2000)
    s = TS.adamw_norm_mean_field(eta, TS.corrected_weight_decay(eta, l, e), s_eq, dim, beta2=b2)
    assert np.max(np.abs(s / s_eq - 1)) <= e * l


@settings(deadline=None, max_examples=30)
@given(K=st.floats(1.0, 1e3), a=st.floats(0.01, 1.0), opt=st.sampled_from(["sgd", "adamw"]), emax=st.floats(0.01, 1.0))
def test_adiabaticity_of_linear_decay(K, a, opt, emax):
    """eps_t = -eta'/(c lambda eta^2) = 1/(c K a^2) for eta = eta_max (1 - t/T), K = eta_max lambda T."""
    l = 0.1
    T = K / (emax * l)
    t = (1 - a) * T
    c, _ = TS.norm_ode_coefficients(opt)
    eps = TS.adiabaticity(opt, TS.lr_schedule("linear", t, emax, T), TS.lr_schedule_slope("linear", t, emax, T), l)
    np.testing.assert_allclose(eps, ev("eps_linear", c=c, K=K, a=a), rtol=1e-9)
    # corrected weight decay: the quasi-static target does not move, eps = 0
    et, sl = TS.lr_schedule("linear", t, emax, T), TS.lr_schedule_slope("linear", t, emax, T)
    corrected = TS.adiabaticity(opt, et, sl, TS.corrected_weight_decay(et, l, emax),
                                TS.corrected_weight_decay(sl, l, emax))
    assert abs(corrected) <= 1e-10 * eps                     # zero up to rounding of eta'/eta - lambda'/lambda
