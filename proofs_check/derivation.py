"""The Derivation record and the checker that compares a stated formula with a derived one.

``compare(stated, derived, ranges, assumptions)`` decides, in this order:

1. symbolic equality: ``simplify(stated - derived) == 0`` under the symbols' sympy assumptions
   (positive, integer, ...) -> ``pass``;
2. constant ratio: ``simplify(stated / derived)`` is a number != 1 -> ``erratum``, the ratio is
   the size of the discrepancy;
2b. equal squares: ``simplify(stated^2 - derived^2) == 0`` and the same sign at the random points of
   step 3 -> ``pass`` (square roots whose sign sympy cannot decide);
3. numeric fallback (labelled as such): both sides are lambdified and evaluated at random points
   drawn from ``ranges`` ({symbol: (lo, hi)}, which encode the assumptions, e.g. eta*lambda < 1
   via eta in (1e-3, 1), lambda in (1e-4, 0.9)); max relative difference < ``rtol`` -> ``pass``,
   otherwise ``erratum`` with the max relative difference;
4. a numeric check that cannot be evaluated (NaN / complex at the sampled points: the ranges
   violate the formulas' domain) is ``fail`` -- a defect of the check, not a finding.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np
import sympy as sp

from scaleinv.report import TALK, Row

PAPER = "Li et al. ICML 2022 (arXiv 2202.00980)"


@dataclass
class Derivation:
    """One checked statement.

    ``stated``: the formula as the seed states it; ``derived``: the formula derived from the
    definitions (sympy expressions, or text for a qualitative statement); ``assumptions``: under
    which they are compared; ``status``: pass | erratum | fail; ``method``: how agreement was
    established (symbolic, or numeric at random points -- labelled so); ``discrepancy``: for an
    erratum, its size (e.g. "stated / derived = sqrt(2)"); ``corrected``: the corrected statement.
    """

    id: str
    slide: str
    statement: str
    stated: object
    derived: object
    assumptions: str
    status: str
    method: str
    note: str = ""
    discrepancy: str = ""
    corrected: str = ""
    source: str = TALK

    def as_row(self) -> Row:
        note = self.note
        if self.corrected:
            note = f"CORRECTED: {self.corrected}. " + note
        if self.discrepancy:
            note = note + f" | discrepancy: {self.discrepancy}"
        return Row(id=self.id, source=f"{self.source}, {self.slide}", statement=self.statement,
                   predicted=show(self.stated), measured=show(self.derived),
                   tolerance=f"{self.method}; assumptions: {self.assumptions}", status=self.status,
                   note=note.strip(" |"),
                   extra={"discrepancy": self.discrepancy, "corrected": self.corrected})


def show(x) -> str:
    """A formula as text (sympy's ``sstr`` for expressions)."""
    return sp.sstr(x) if isinstance(x, sp.Basic) else str(x)


def is_zero(expr) -> bool:
    """True iff ``expr`` simplifies to 0 (under the symbols' assumptions).

    A cheap exact rewrite is tried first -- ``cancel(powsimp(expand(expr)))``, each step an
    identity under the symbols' assumptions, so reaching 0 proves ``expr`` = 0; it settles almost
    every check here at a quarter of the cost -- and ``sp.simplify`` decides the rest."""
    if sp.cancel(sp.powsimp(sp.expand(expr))) == 0:
        return True
    return sp.simplify(expr) == 0


def _sample(sym: sp.Symbol, rng, ranges, n):
    lo, hi = ranges.get(sym, (0, 20) if sym.is_integer else (0.1, 2.0))
    if sym.is_integer:
        return rng.integers(int(lo), int(hi) + 1, n).astype(float)
    return rng.uniform(float(lo), float(hi), n)


def numeric_max_rel_diff(a: sp.Expr, b: sp.Expr, ranges: Optional[Dict] = None, n_points: int = 200,
                         seed: int = 0) -> float:
    """max |a - b| / |b| over ``n_points`` random points (ranges {symbol: (lo, hi)}); NaN if either
    side is not a finite real number somewhere."""
    ranges = ranges or {}
    syms = sorted(sp.sympify(a).free_symbols | sp.sympify(b).free_symbols, key=lambda s: s.name)
    rng = np.random.default_rng(seed)
    pts = [_sample(s, rng, ranges, n_points) for s in syms]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        va = np.broadcast_to(np.asarray(sp.lambdify(syms, a, "numpy")(*pts)), (n_points,))
        vb = np.broadcast_to(np.asarray(sp.lambdify(syms, b, "numpy")(*pts)), (n_points,))
        if np.iscomplexobj(va) or np.iscomplexobj(vb):
            if np.max(np.abs(np.imag(va))) > 0 or np.max(np.abs(np.imag(vb))) > 0:
                return float("nan")
            va, vb = np.real(va), np.real(vb)
        va, vb = va.astype(float), vb.astype(float)
        if not (np.all(np.isfinite(va)) and np.all(np.isfinite(vb))):
            return float("nan")
        return float(np.max(np.abs(va - vb) / np.maximum(np.abs(vb), 1e-300)))


def compare(stated, derived, ranges: Optional[Dict] = None, assumptions: str = "", n_points: int = 200,
            rtol: float = 1e-10, seed: int = 0) -> Tuple[str, str, str]:
    """Compare the stated formula with the derived one. Returns ``(status, method, discrepancy)``
    (see the module docstring for the decision order). ``assumptions`` is free text appended to
    the method; the assumptions themselves live in the symbols (positive=True, ...) and in
    ``ranges``."""
    stated, derived = sp.sympify(stated), sp.sympify(derived)
    suffix = f" [{assumptions}]" if assumptions else ""
    diff = sp.simplify(sp.expand(stated - derived))
    if diff == 0:
        return "pass", "symbolic: simplify(stated - derived) = 0" + suffix, ""
    ratio = sp.simplify(stated / derived) if derived != 0 else sp.nan
    if ratio.is_number and ratio.is_finite and ratio != 1:
        return ("erratum", "symbolic: stated / derived is a constant" + suffix,
                f"stated / derived = {sp.nsimplify(ratio)} (= {float(sp.re(ratio)):.6g})")
    rel = numeric_max_rel_diff(stated, derived, ranges, n_points, seed)
    if np.isfinite(rel) and rel < rtol and sp.simplify(sp.expand(stated**2 - derived**2)) == 0:
        return ("pass", "symbolic: simplify(stated^2 - derived^2) = 0, same sign at "
                        f"{n_points} random points (max rel. diff {rel:.1e})" + suffix, "")
    if not np.isfinite(rel):
        return ("fail", f"NUMERIC check at {n_points} random points could not be evaluated (NaN/complex): "
                        "the sampled ranges leave the formulas' domain" + suffix, "")
    if rel < rtol:
        return ("pass", f"NUMERIC at {n_points} random points, max rel. diff {rel:.1e} < {rtol:g} "
                        "(symbolic simplify inconclusive)" + suffix, "")
    if sp.count_ops(ratio) <= 8:
        return ("erratum", "symbolic: stated / derived simplifies to a short non-constant expression (!= 1, "
                           f"confirmed at {n_points} random points)" + suffix,
                f"stated / derived = {ratio}; max rel. diff over the sampled ranges {rel:.3g}")
    return ("erratum", f"NUMERIC at {n_points} random points" + suffix,
            f"stated / derived = {ratio}; max rel. diff {rel:.3g}")


def leq_on(expr_lo, expr_hi, var: sp.Symbol, interval: sp.Interval) -> bool:
    """True iff ``expr_lo <= expr_hi`` for every ``var`` in ``interval`` (sympy inequality solver;
    all other symbols must be absent)."""
    sol = sp.solve_univariate_inequality(sp.simplify(expr_hi - expr_lo) >= 0, var, relational=False,
                                         domain=interval)
    return interval.is_subset(sol)
