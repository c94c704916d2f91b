"""Collect every derivation into report rows; LaTeX rendering for a paper appendix."""
from __future__ import annotations

from typing import List

import sympy as sp

from proofs_check import dynamics, gdwd, homogeneity, rotational, toy_examples
from proofs_check.derivation import Derivation

TOPICS = (homogeneity, toy_examples, dynamics, gdwd, rotational)


def all_derivations() -> List[Derivation]:
    out: List[Derivation] = []
    for mod in TOPICS:
        out += mod.derivations()
    return out


def by_id(derivs: List[Derivation]):
    return {d.id: d for d in derivs}


def _tex(x) -> str:
    if isinstance(x, sp.Basic):
        return f"${sp.latex(x)}$"
    return str(x).replace("_", r"\_").replace("^", r"\^{}").replace("%", r"\%").replace("&", r"\&").replace("#", r"\#")


def to_latex(derivs: List[Derivation]) -> str:
    lines = [r"\begin{longtable}{p{0.08\linewidth}p{0.3\linewidth}p{0.22\linewidth}p{0.22\linewidth}p{0.08\linewidth}}",
             r"\toprule id & statement & as stated & derived & status \\ \midrule"]
    for d in derivs:
        lines.append(f"{_tex(d.id)} & {_tex(d.statement)} & {_tex(d.stated)} & {_tex(d.derived)} & {d.status} \\\\")
    lines += [r"\bottomrule", r"\end{longtable}"]
    return "\n".join(lines) + "\n"
