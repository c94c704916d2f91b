"""proofs_check: the checker detects wrong formulas; the derivations agree with scaleinv.theory
(lambdified and compared at random points), so `verify`'s predictions and the algebra cannot drift."""
import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from proofs_check import dynamics, toy_examples
from proofs_check.derivation import compare
from proofs_check.report import all_derivations, by_id, to_latex
from scaleinv import theory


@pytest.fixture(scope="module")
def derivs():
    return by_id(all_derivations())


def test_every_item_has_a_row_and_none_fails(derivs):
    prefixes = {i.split(".")[0] for i in derivs}
    assert prefixes >= {f"P{i}" for i in range(1, 11)}
    assert all(d.status in ("pass", "erratum") for d in derivs.values()), \
        [(d.id, d.status) for d in derivs.values() if d.status == "fail"]


def test_known_errata_are_found(derivs):
    assert derivs["P6.norm"].status == "erratum" and "sqrt(2)" in derivs["P6.norm"].discrepancy
    assert derivs["P5.exp_lr"].status == "erratum"
    assert derivs["P6.ratio"].status == "pass" and derivs["P2.threshold"].status == "pass"


def test_checker_reports_a_deliberately_wrong_formula():
    eta, lam, sigma = dynamics.eta, dynamics.lam, dynamics.sigma
    right = sp.sqrt(eta / (lam * (2 - eta * lam))) * sigma
    assert compare(right, right)[0] == "pass"
    status, _, disc = compare(right * 3, right, dynamics.RANGES)
    assert status == "erratum" and "3" in disc
    # a non-constant discrepancy goes through the numeric path and is caught too
    status, method, _ = compare(right * (1 + eta), right, dynamics.RANGES)
    assert status == "erratum" and "numeric" in method
    # and a numerically-equal but differently written form passes
    alt = sp.sqrt(eta) * sigma / sp.sqrt(lam * (2 - eta * lam))
    assert compare(alt, right, dynamics.RANGES)[0] == "pass"


def _f(expr, *syms):
    return sp.lambdify(syms, expr, "numpy")


@given(eta=st.floats(1e-3, 1.0), lam=st.floats(1e-4, 0.9), sigma=st.floats(0.1, 10.0))
def test_theory_equilibrium_matches_derivation(derivs, eta, lam, sigma):
    e, l, s = dynamics.eta, dynamics.lam, dynamics.sigma
    d = derivs["P6.norm"]
    np.testing.assert_allclose(theory.equilibrium_sq_norm(eta, lam, sigma), _f(d.derived, e, l, s)(eta, lam, sigma), rtol=1e-12)
    np.testing.assert_allclose(theory.equilibrium_sq_norm_as_stated(eta, lam, sigma), _f(d.stated, e, l, s)(eta, lam, sigma), rtol=1e-12)
    r = derivs["P6.ratio"]
    np.testing.assert_allclose(theory.equilibrium_grad_ratio(eta, lam), _f(r.derived, e, l, s)(eta, lam, sigma), rtol=1e-12)
    c = derivs["P7.clip"]
    np.testing.assert_allclose(theory.clip_never_fires_min_C(eta, lam), _f(c.derived, e, l)(eta, lam), rtol=1e-12)
    # the one-step norm map in theory.py is the map proofs_check derives
    u = sp.Symbol("u", positive=True)
    m = _f(dynamics.norm_map(), dynamics.u, e, l, s)
    np.testing.assert_allclose(theory.norm_sq_update_orthogonal(2.5, eta, lam, sigma), m(2.5, eta, lam, sigma), rtol=1e-12)


@given(eta=st.floats(1e-3, 1.0), lam=st.floats(1e-4, 0.9), t=st.integers(0, 100))
def test_theory_exp_lr_matches_derivation(derivs, eta, lam, t):
    d = derivs["P5.exp_lr"]
    q, tt = sp.Symbol("q", positive=True), sp.Symbol("t", integer=True, nonnegative=True)
    derived = _f(d.derived, dynamics.eta, q, tt)(eta, 1 - eta * lam, t)
    stated = _f(d.stated, dynamics.eta, q, tt)(eta, 1 - eta * lam, t)
    np.testing.assert_allclose(theory.exp_lr_schedule(t, eta, lam), derived, rtol=1e-10)
    np.testing.assert_allclose(theory.exp_lr_schedule_as_stated(t, eta, lam), stated, rtol=1e-10)


@given(X=st.floats(1.2, 1e4), Lp=st.floats(1e-3, 1.0), k=st.integers(2, 6))
def test_theory_ex1_threshold_matches_derivation(derivs, X, Lp, k):
    d = derivs["P2.threshold"]
    syms = sorted(d.derived.free_symbols, key=lambda s: s.name)
    vals = {"X": X, "Lp": Lp, "k": k}
    np.testing.assert_allclose(theory.ex1_divergence_lr(X, Lp, k), _f(d.derived, *syms)(*[vals[s.name] for s in syms]), rtol=1e-10)


def test_latex_and_cli(tmp_path, derivs):
    tex = to_latex(list(derivs.values()))
    assert tex.count(r"\\") >= len(derivs) and r"\begin{longtable}" in tex
    from scaleinv.cli import main
    rc = main(["proofs", "--json", str(tmp_path / "p.json"), "--markdown", str(tmp_path / "p.md")])
    import json
    rows = json.loads((tmp_path / "p.json").read_text())["rows"]
    assert rc == 0 and len(rows) == len(derivs) and {r["status"] for r in rows} <= {"pass", "erratum"}
