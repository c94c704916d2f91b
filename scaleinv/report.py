"""Report rows shared by ``scaleinv verify`` and ``scaleinv proofs`` (format: docs/CONVENTIONS.md).

A row: id, source (paper or talk + slide/theorem, docs/PAPER_NOTES.md), statement, predicted, measured, tolerance,
status in {"pass", "fail", "erratum"}. "erratum" means the talk's formula disagrees with the
derivation/measurement and a corrected form is given (a finding, not a tool failure).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

STATUSES = ("pass", "fail", "erratum")
TALK = "Li et al. ICML 2022 talk (docs/PAPER_NOTES.md)"


@dataclass
class Row:
    id: str
    source: str
    statement: str
    predicted: Any
    measured: Any
    tolerance: str
    status: str
    note: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.status, Verdict):   # machine-readable checks travel in extra["check"]
            self.extra = {**self.extra, "check": self.status.checks}
            self.status = str(self.status)
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    def as_dict(self):
        return jsonable(asdict(self))


def jsonable(x):
    """``x`` with dict keys as str, tuples as lists, NumPy/JAX arrays and scalars as Python
    values and non-finite floats as strings, ready for ``json.dumps``."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if hasattr(x, "tolist"):
        return jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


def fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(fmt(v) for v in x) + "]"
    return str(x)


def budget(approx: float, noise: float, tolerance: float, basis: str) -> Dict[str, Any]:
    """A row's error budget (issue 27), for ``Row(extra={"budget": budget(...)})``: the known approximation
    error of the form the row uses (``approx``, in the units of its tolerance) plus the seed-to-seed noise of
    the measurement (``noise``, measured over >= 5 seeds by tools/seed_spread.py); ``basis`` says where both
    come from. The tolerance must lie in [budget, 3 x budget] (else ValueError): no tighter than what the
    row can honestly hold at every seed, no looser than three times it."""
    total = float(approx) + float(noise)
    if not (float(approx) >= 0 and float(noise) >= 0 and total > 0):
        raise ValueError(f"budget: approx and noise must be >= 0 with a positive sum, got {approx}, {noise}")
    if not total * (1 - 1e-12) <= float(tolerance) <= 3 * total * (1 + 1e-12):
        raise ValueError(f"budget: tolerance {tolerance} outside [budget, 3 x budget] = [{total:.4g}, {3 * total:.4g}]")
    return {"approx": float(approx), "noise": float(noise), "total": total, "tolerance": float(tolerance),
            "basis": basis}


def budget_cell(r: Row) -> str:
    """The report's budget cell: ``total = approx + noise``, empty for a row without a budget."""
    b = r.extra.get("budget")
    return f"{fmt(b['total'])} = {fmt(b['approx'])} approx. + {fmt(b['noise'])} noise" if b else ""


def _with_budget(rows) -> bool:
    return any(r.extra.get("budget") for r in rows)


def print_table(rows: Iterable[Row], title: str = "") -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    rows = list(rows)
    budgets = _with_budget(rows)
    table = Table(title=title or None, show_lines=False)
    for col in ("id", "claim", "predicted", "measured", "tolerance") + (("budget",) if budgets else ()) + ("status",):
        table.add_column(col, overflow="fold")
    colors = {"pass": "green", "fail": "red", "erratum": "yellow"}
    for r in rows:
        table.add_row(escape(r.id), escape(r.statement), escape(fmt(r.predicted)), escape(fmt(r.measured)),
                      escape(r.tolerance), *((escape(budget_cell(r)),) if budgets else ()),
                      f"[{colors[r.status]}]{r.status}[/]")
    Console(width=160).print(table)


def write_json(rows: List[Row], path, meta: Dict[str, Any] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"meta": jsonable(meta or {}), "rows": [r.as_dict() for r in rows]}
    path.write_text(json.dumps(payload, indent=2))
    return path


def to_markdown(rows: Iterable[Row]) -> str:
    """The rows as a GitHub-markdown table (id, claim, predicted, measured, tolerance, status; a budget column
    after the tolerance when some row states its error budget, :func:`budget`)."""
    def cell(x) -> str:
        return fmt(x).replace("|", "\\|").replace("\n", " ")

    rows = list(rows)
    budgets = _with_budget(rows)
    if budgets:
        lines = ["| id | claim | predicted | measured | tolerance | budget | status |", "|---|---|---|---|---|---|---|"]
    else:
        lines = ["| id | claim | predicted | measured | tolerance | status |", "|---|---|---|---|---|---|"]
    for r in rows:
        status = f"**{r.status}**" if r.status != "pass" else r.status
        lines.append(f"| {cell(r.id)} | {cell(r.statement)} | {cell(r.predicted)} | {cell(r.measured)} "
                     f"| {cell(r.tolerance)} " + (f"| {cell(budget_cell(r))} " if budgets else "") + f"| {status} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- machine-readable verdicts
# A row's status computed from explicit two-sided checks, kept in ``row.extra["check"]`` so that
# the tests (tests/verdicts) re-evaluate every row of ``scaleinv verify`` independently:
#   within(name, value, lo, hi)          lo <= value <= hi (elementwise; None = unbounded)
#   close(name, measured, predicted, rtol, atol)   |measured - predicted| <= atol + rtol |predicted|
# verdict(pass_checks, erratum=erratum_checks): "pass" if every pass check holds; else "erratum"
# if erratum checks are given and all hold (the measured discrepancy has its derived size); else
# "fail" -- an erratum row whose measurement is broken fails instead of reporting an erratum.


def _num(x):
    x = jsonable(x)
    return x


def within(name: str, value, lo: Optional[float] = None, hi: Optional[float] = None) -> Dict[str, Any]:
    """Check ``lo <= value <= hi`` (elementwise for a list; ``None`` = unbounded side)."""
    return {"name": name, "kind": "within", "value": _num(value), "lo": _num(lo), "hi": _num(hi)}


def close(name: str, measured, predicted, rtol: float = 0.0, atol: float = 0.0) -> Dict[str, Any]:
    """Check ``|measured - predicted| <= atol + rtol |predicted|`` (elementwise; two-sided)."""
    return {"name": name, "kind": "close", "measured": _num(measured), "predicted": _num(predicted),
            "rtol": float(rtol), "atol": float(atol)}


def _flat(x):
    if isinstance(x, (list, tuple)):
        return [v for e in x for v in _flat(e)]
    return [x]


def _as_float(v):
    if isinstance(v, str):
        return float(v)         # "inf" / "nan" as written by jsonable
    return float(v)


def check_holds(c: Dict[str, Any]) -> bool:
    """Evaluate one check dict (as produced by :func:`within` / :func:`close`, or read back from
    JSON). NaN never satisfies a check."""
    if c["kind"] == "within":
        vals = [_as_float(v) for v in _flat(c["value"])]
        lo = None if c["lo"] is None else _as_float(c["lo"])
        hi = None if c["hi"] is None else _as_float(c["hi"])
        return bool(vals) and all(v == v and (lo is None or v >= lo) and (hi is None or v <= hi) for v in vals)
    if c["kind"] == "close":
        m, p = [_as_float(v) for v in _flat(c["measured"])], [_as_float(v) for v in _flat(c["predicted"])]
        if len(p) == 1 and len(m) > 1:
            p = p * len(m)
        if len(m) != len(p) or not m:
            return False
        return all(abs(a - b) <= c["atol"] + c["rtol"] * abs(b) for a, b in zip(m, p))
    raise ValueError(f"check kind must be 'within' or 'close', got {c['kind']!r}")


class Verdict(str):
    """A status string that carries the checks it was computed from (see :func:`verdict`)."""

    checks: Dict[str, List[Dict[str, Any]]]


def verdict(checks: Sequence[Dict[str, Any]], erratum: Optional[Sequence[Dict[str, Any]]] = None) -> Verdict:
    """Status from explicit checks: "pass" if all ``checks`` hold, else "erratum" if ``erratum``
    checks are given and all hold, else "fail". Pass it as a :class:`Row`'s status."""
    checks = list(checks)
    if not checks:
        raise ValueError("verdict needs at least one check")
    if all(check_holds(c) for c in checks):
        status = "pass"
    elif erratum and all(check_holds(c) for c in erratum):
        status = "erratum"
    else:
        status = "fail"
    v = Verdict(status)
    v.checks = {"pass": checks, **({"erratum": list(erratum)} if erratum else {})}
    return v
