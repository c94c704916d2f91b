"""Report rows shared by ``scaleinv verify`` and ``scaleinv proofs`` (see DESIGN.md).

A row: id, source (seed file + slide/theorem), statement, predicted, measured, tolerance,
status in {"pass", "fail", "erratum"}. "erratum" means the seed's formula disagrees with the
derivation/measurement and a corrected form is given (a finding, not a tool failure).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List

STATUSES = ("pass", "fail", "erratum")
TALK = "seeds/001_24fe945a8688e821.txt"


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


def print_table(rows: Iterable[Row], title: str = "") -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title or None, show_lines=False)
    for col in ("id", "claim", "predicted", "measured", "tolerance", "status"):
        table.add_column(col, overflow="fold")
    colors = {"pass": "green", "fail": "red", "erratum": "yellow"}
    for r in rows:
        table.add_row(escape(r.id), escape(r.statement), escape(fmt(r.predicted)), escape(fmt(r.measured)),
                      escape(r.tolerance),
                      f"[{colors[r.status]}]{r.status}[/]")
    Console(width=160).print(table)


def write_json(rows: List[Row], path, meta: Dict[str, Any] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"meta": jsonable(meta or {}), "rows": [r.as_dict() for r in rows]}
    path.write_text(json.dumps(payload, indent=2))
    return path


def to_markdown(rows: Iterable[Row]) -> str:
    """The rows as a GitHub-markdown table (id, claim, predicted, measured, tolerance, status)."""
    def cell(x) -> str:
        return fmt(x).replace("|", "\\|").replace("\n", " ")

    lines = ["| id | claim | predicted | measured | tolerance | status |", "|---|---|---|---|---|---|"]
    for r in rows:
        status = f"**{r.status}**" if r.status != "pass" else r.status
        lines.append(f"| {cell(r.id)} | {cell(r.statement)} | {cell(r.predicted)} | {cell(r.measured)} "
                     f"| {cell(r.tolerance)} | {status} |")
    return "\n".join(lines) + "\n"
