"""The Derivation record and the checker that compares a stated formula with a derived one."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, Optional

import numpy as np
import sympy as sp

from scaleinv.report import TALK, Row


@dataclass
class Derivation:
    """One checked statement. ``stated``/``derived`` are sympy expressions (or text for a
    qualitative statement); ``status`` is pass / erratum / fail; ``method`` says how agreement
    was established (symbolic, or numeric at random points -- labelled as such)."""

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

    def as_row(self) -> Row:
        return Row(id=self.id, source=f"{TALK}, {self.slide}", statement=self.statement,
                   predicted=_show(self.stated), measured=_show(self.derived),
                   tolerance=f"{self.method}; assumptions: {self.assumptions}", status=self.status,
                   note=(self.note + (f" | discrepancy: {self.discrepancy}" if self.discrepancy else "")).strip(" |"))


def _show(x) -> str:
    return sp.sstr(x) if isinstance(x, sp.Basic) else str(x)


def compare(stated: sp.Expr, derived: sp.Expr, symbols: Optional[Dict[sp.Symbol, tuple]] = None,
            n_points: int = 200, rtol: float = 1e-10, seed: int = 0):
    """Compare two expressions. Returns (status, method, discrepancy).

    1. symbolic: simplify(stated - derived) == 0  -> pass ("symbolic").
    2. otherwise the ratio stated/derived is simplified; a constant ratio != 1 is reported
       as the discrepancy (status erratum).
    3. otherwise both are evaluated at ``n_points`` random points drawn from the ranges in
       ``symbols`` ({sym: (lo, hi)}); agreement to ``rtol`` -> pass ("numeric, random points"),
       else erratum with the max relative difference.
    """
    diff = sp.simplify(sp.expand(stated - derived))
    if diff == 0:
        return "pass", "symbolic (simplify(stated - derived) = 0)", ""
    ratio = sp.simplify(stated / derived)
    if ratio.is_number:
        return "erratum", "symbolic", f"stated / derived = {sp.nsimplify(ratio)} (= {float(ratio):.6g})"
    syms = sorted((stated.free_symbols | derived.free_symbols), key=lambda s: s.name)
    ranges = symbols or {}
    rng = np.random.default_rng(seed)
    f_s = sp.lambdify(syms, stated, "numpy")
    f_d = sp.lambdify(syms, derived, "numpy")
    pts = [rng.integers(int(ranges.get(s, (0, 20))[0]), int(ranges.get(s, (0, 20))[1]) + 1, n_points).astype(float)
           if s.is_integer else rng.uniform(*ranges.get(s, (0.1, 2.0)), n_points) for s in syms]
    a, b = np.asarray(f_s(*pts), float), np.asarray(f_d(*pts), float)
    rel = float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))
    if rel < rtol:
        return "pass", f"numeric at {n_points} random points (max rel. diff {rel:.1e}); symbolic simplify inconclusive", ""
    return "erratum", f"numeric at {n_points} random points", f"stated / derived = {sp.simplify(ratio)}; max rel. diff {rel:.3g}"


def is_zero(expr: sp.Expr) -> bool:
    """True iff ``expr`` simplifies to 0."""
    return sp.simplify(expr) == 0


def all_rows(derivs: Iterable[Derivation]):
    return [d.as_row() for d in derivs]
