"""Benchmark result rows: one ratio against one peer, measured in the same run.

A row holds both absolute figures (reported, not claimed: the machine is shared and noisy),
their ratio, what the ratio means, the target (if the issue sets one) and whether it is met.
``status``: ``met`` | ``missed`` (target set) | ``report`` (no target: the number is the finding)
| ``peer not installed`` (the peer's optional packages are missing; ratio is None).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from scaleinv.report import jsonable

STATUSES = ("met", "missed", "report", "peer not installed")

__all__ = ["BenchRow", "STATUSES", "print_rows", "to_markdown", "write_json"]


@dataclass
class BenchRow:
    id: str                 # e.g. "B1.loop"
    item: str               # what is measured
    ours: str               # our contestant
    peer: str               # the peer it is compared with
    ours_value: Optional[float]
    peer_value: Optional[float]
    unit: str               # unit of the two absolute values
    ratio: Optional[float]
    ratio_means: str        # e.g. "peer time / our time (speed-up)"
    target: str = ""        # e.g. ">= 50"; "" = no target
    status: str = "report"
    note: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    def as_dict(self):
        return jsonable(asdict(self))


def judged(ratio: float, lower: Optional[float] = None, upper: Optional[float] = None) -> str:
    """'met' if lower <= ratio (and ratio < upper) where given, else 'missed'."""
    ok = math.isfinite(ratio)
    if lower is not None:
        ok = ok and ratio >= lower
    if upper is not None:
        ok = ok and ratio < upper
    return "met" if ok else "missed"


def fmt(x, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def print_rows(rows: Iterable[BenchRow], title: str = "") -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title or None)
    for col in ("id", "ours", "peer", "ours", "peer", "unit", "ratio", "target", "status"):
        table.add_column(col, overflow="fold")
    colors = {"met": "green", "missed": "red", "report": "cyan", "peer not installed": "yellow"}
    for r in rows:
        table.add_row(escape(r.id), escape(r.ours), escape(r.peer), fmt(r.ours_value), fmt(r.peer_value),
                      escape(r.unit), fmt(r.ratio), escape(r.target or "-"), f"[{colors[r.status]}]{r.status}[/]")
    Console(width=200).print(table)


def to_markdown(rows: Iterable[BenchRow], machine: str = "") -> str:
    """GitHub-markdown table: id, measured, ratio (meaning), peer, absolute values, target, status,
    machine; then one note per row that has one."""
    rows = list(rows)
    def cell(x) -> str:
        return fmt(x).replace("|", "\\|").replace("\n", " ")

    lines = ["| id | ours | ratio | peer | ours / peer (abs.) | target | status | machine |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = "n/a" if r.ratio is None else f"{fmt(r.ratio, 3)} ({r.ratio_means})"
        absval = f"{fmt(r.ours_value)} / {fmt(r.peer_value)} {r.unit}"
        status = r.status if r.status in ("met", "report") else f"**{r.status}**"
        lines.append(f"| {cell(r.id)} | {cell(r.ours)} | {cell(ratio)} | {cell(r.peer)} | {cell(absval)} "
                     f"| {cell(r.target or '-')} | {status} | {cell(machine)} |")
    notes = [f"- **{r.id}** ({r.item}): {r.note}" for r in rows if r.note]
    if notes:
        lines += ["", "Notes:", ""] + notes
    return "\n".join(lines) + "\n"


def write_json(rows: List[BenchRow], path, meta: Dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": jsonable(meta), "rows": [r.as_dict() for r in rows]}, indent=2))
    return path
