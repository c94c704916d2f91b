"""The generic checker `proofs_check.derivation.compare`: it must report deliberately wrong formulas
as mismatches (constant factor -> symbolic erratum with the factor; non-constant -> numeric
erratum), accept equal forms written differently, and fail (not pass) when it cannot evaluate."""
import sympy as sp

from proofs_check.derivation import compare, leq_on, numeric_max_rel_diff
from proofs_check.equilibrium import fixed_point
from proofs_check.symbols import RANGES, eta, lam, sigma


def test_identical_and_rewritten_forms_pass():
    right = sp.sqrt(eta / (lam * (2 - eta * lam))) * sigma
    assert compare(right, right)[0] == "pass"
    alt = sp.sqrt(eta) * sigma / sp.sqrt(lam * (2 - eta * lam))
    status, method, disc = compare(alt, right, RANGES)
    assert status == "pass" and disc == ""


def test_wrong_constant_factor_is_an_erratum_with_its_size():
    derived = fixed_point()                                  # the derived equilibrium ||x*||^2
    status, method, disc = compare(3 * derived, derived, RANGES)
    assert status == "erratum" and "symbolic" in method and "= 3" in disc
    status, _, disc = compare(sp.sqrt(2) * derived, derived, RANGES)
    assert status == "erratum" and "sqrt(2)" in disc


def test_wrong_non_constant_formula_is_caught_numerically():
    derived = fixed_point()
    status, method, disc = compare(derived * (1 + eta * lam / 10), derived, RANGES)
    assert status == "erratum" and "short non-constant" in method and "eta*lambda/10 + 1" in disc
    # a discrepancy whose ratio does not simplify to something short goes through the numeric path
    status, method, disc = compare(derived + sp.sin(eta) * lam**3 * sp.exp(sigma) / (1 + sigma**2), derived, RANGES)
    assert status == "erratum" and method.startswith("NUMERIC") and "max rel. diff" in disc
    # a typo in the exponent of the exp-LR schedule
    q, t = sp.symbols("q t", positive=True)
    status, _, _ = compare(eta * q ** (-2 * t), eta * q ** (-2 * t - 1), {q: (0.5, 0.99), t: (0, 30), eta: (0.01, 1)})
    assert status == "erratum"


def test_unevaluable_numeric_check_fails_instead_of_passing():
    x = sp.Symbol("x", real=True)
    # log of a negative number on the whole range: the check cannot be evaluated -> "fail"
    status, method, _ = compare(sp.log(x) + sp.sin(x) ** 2, sp.log(x) + 1 - sp.cos(x) ** 2 + x * 0, {x: (-3.0, -1.0)})
    assert status in ("pass", "fail")     # symbolic may already prove it; if not, numeric must not pass on NaN
    nan = numeric_max_rel_diff(sp.log(x), sp.log(x) + x**2, {x: (-3.0, -1.0)})
    assert nan != nan
    status, method, _ = compare(sp.log(x) * sp.exp(x), sp.log(x) * sp.exp(x) * (1 + x**3), {x: (-3.0, -1.0)})
    assert status == "fail" and "could not be evaluated" in method


def test_inequality_helper():
    s = sp.Symbol("s", positive=True)
    unit = sp.Interval.open(0, 1)
    assert leq_on(1, 2 / (2 - s), s, unit)
    assert not leq_on(2 / (2 - s), sp.Rational(3, 2), s, unit)


def test_agreement_threshold_a_small_non_constant_discrepancy_is_an_erratum():
    """Issue 27: the checker's agreement threshold (rtol = 1e-10). A stated form off by a NON-constant relative
    1e-4 (or 1e-8) is an erratum on every path (short ratio, numeric); only rounding-level agreement passes."""
    import inspect

    assert inspect.signature(compare).parameters["rtol"].default == 1e-10
    derived = fixed_point()
    for size in (1e-4, 1e-8):
        status, method, disc = compare(derived * (1 + size * eta), derived, RANGES)        # eta in (1e-3, 1)
        assert status == "erratum", (size, method)
        assert "short non-constant" in method and "max rel. diff" in disc
        # the same size through the numeric path (a ratio that does not simplify to a short expression)
        wiggle = size * sp.sin(eta) * sp.exp(lam) / (1 + sigma**2 + lam**3)
        status, method, disc = compare(derived * (1 + wiggle), derived, RANGES)
        assert status == "erratum" and "max rel. diff" in disc, (size, method)
    # the threshold itself, on the numeric path: 1e-12 passes, 1e-6 does not (rtol given explicitly)
    x = sp.Symbol("x", positive=True)
    messy = sp.sin(x) * sp.exp(x) / (1 + x**3)
    assert compare(1 + 1e-12 * messy, sp.Integer(1), {x: (0.1, 2.0)})[0] == "pass"
    assert compare(1 + 1e-6 * messy, sp.Integer(1), {x: (0.1, 2.0)}, rtol=1e-5)[0] == "pass"
    assert compare(1 + 1e-6 * messy, sp.Integer(1), {x: (0.1, 2.0)})[0] == "erratum"
