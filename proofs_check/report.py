"""Collect every derivation into report rows; LaTeX and markdown renderings (full table, errata).

``all_derivations()`` is computed once per process (sympy work of ~15 s) and copied on return.
With ``PROOFS_CHECK_SHARE=<file>`` set, processes share one computation through that file: the
first writes the derivations (pickled, keyed by the sympy version and the text of every
``proofs_check`` module), the others read them if the key matches and compute afresh otherwise.
The test suite sets it to a file in a fresh temporary folder (tests/conftest.py), so the
notebook kernel that renders the table reuses the test process's derivations (or the other way
round) instead of deriving everything twice; nothing is shared across sessions.
"""
from __future__ import annotations

import copy
import hashlib
import os
import pickle
from pathlib import Path
from typing import List, Optional

import sympy as sp

from proofs_check import (adamw_noise, clipping, eos, effective_lr, equilibrium, ex1, exp_lr, factorization, gdwd,
                          homogeneity, rotational, schedules, timescale)
from proofs_check.derivation import Derivation

# talk order: items 1, 2, 3, 4, 5, 6+9, 7, 8, 10
TOPICS = (homogeneity, ex1, factorization, effective_lr, exp_lr, equilibrium, clipping, gdwd, rotational,
          schedules, adamw_noise, timescale, eos)   # 11-14: beyond the talk (issue 12)


_CACHE: List[tuple] = []
SHARE_ENV = "PROOFS_CHECK_SHARE"


def _share_key() -> str:
    """sympy's version and the source text of every proofs_check module."""
    h = hashlib.sha256(sp.__version__.encode())
    for f in sorted(Path(__file__).parent.glob("*.py")):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def _load_shared(path: Path) -> Optional[tuple]:
    try:
        with open(path, "rb") as f:
            key, derivs = pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError):
        return None
    return tuple(derivs) if key == _share_key() else None


def _save_shared(path: Path, derivs: tuple) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        pickle.dump((_share_key(), derivs), f)
    os.replace(tmp, path)   # atomic: a reader sees the old file or the whole new one


def _cached(progress=None) -> tuple:
    """Every derivation, computed once per process (or read from ``$PROOFS_CHECK_SHARE``);
    ``progress`` (a :class:`scaleinv.progress.Progress` or None) is told each topic as it starts
    and finishes."""
    share = Path(os.environ[SHARE_ENV]) if os.environ.get(SHARE_ENV) else None
    if not _CACHE and share is not None:
        shared = _load_shared(share)
        if shared is not None:
            _CACHE.append(shared)
    if not _CACHE:
        out: List[Derivation] = []
        for mod in TOPICS:
            if progress is not None:
                progress.item(mod.__name__.rsplit(".", 1)[-1])
            out += mod.derivations()
            if progress is not None:
                progress.update(1)
        _CACHE.append(tuple(out))
        if share is not None:
            _save_shared(share, _CACHE[0])
    elif progress is not None:
        progress.update(len(TOPICS))
    return _CACHE[0]


def all_derivations(progress=None) -> List[Derivation]:
    """Every derivation, in talk order (fresh copies: callers may mutate them)."""
    return [copy.copy(d) for d in _cached(progress)]


def by_id(derivs: List[Derivation]):
    return {d.id: d for d in derivs}


def _tex(x) -> str:
    if isinstance(x, sp.Basic):
        return f"${sp.latex(x)}$"
    s = str(x).replace("\\", "/")
    for a, b in (("{", r"\{"), ("}", r"\}"), ("_", r"\_"), ("^", r"\^{}"), ("%", r"\%"), ("&", r"\&"),
                 ("#", r"\#"), ("$", r"\$"), ("~", r"\~{}"), ("<", r"\textless{}"), (">", r"\textgreater{}"),
                 ("|", r"\textbar{}")):
        s = s.replace(a, b)
    return s


def to_latex(derivs: List[Derivation]) -> str:
    """A longtable (booktabs) for a paper appendix: id, statement, as stated, derived, status; then
    an errata table with the corrected forms."""
    lines = [r"\begin{longtable}{p{0.09\linewidth}p{0.3\linewidth}p{0.22\linewidth}p{0.22\linewidth}p{0.07\linewidth}}",
             r"\toprule id & statement & as stated & derived & status \\ \midrule \endhead"]
    for d in derivs:
        lines.append(f"{_tex(d.id)} & {_tex(d.statement)} & {_tex(d.stated)} & {_tex(d.derived)} & {d.status} \\\\")
    lines += [r"\bottomrule", r"\end{longtable}"]
    errata = [d for d in derivs if d.status == "erratum"]
    if errata:
        lines += [r"\begin{longtable}{p{0.1\linewidth}p{0.28\linewidth}p{0.34\linewidth}p{0.2\linewidth}}",
                  r"\toprule id & as stated & corrected & discrepancy \\ \midrule \endhead"]
        for d in errata:
            lines.append(f"{_tex(d.id)} & {_tex(d.stated)} & {_tex(d.corrected)} & {_tex(d.discrepancy)} \\\\")
        lines += [r"\bottomrule", r"\end{longtable}"]
    return "\n".join(lines) + "\n"


def errata_markdown(derivs: List[Derivation]) -> str:
    """The errata as a GitHub-markdown table (for the README)."""
    def cell(x) -> str:
        return (sp.sstr(x) if isinstance(x, sp.Basic) else str(x)).replace("|", "\\|").replace("\n", " ")

    lines = ["| id | talk slide | as stated | corrected | size of the discrepancy |", "|---|---|---|---|---|"]
    for d in derivs:
        if d.status == "erratum":
            lines.append(f"| {d.id} | {cell(d.slide)} | {cell(d.stated)} | {cell(d.corrected)} | {cell(d.discrepancy)} |")
    return "\n".join(lines) + "\n"
