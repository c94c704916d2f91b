"""The audit result: :class:`AuditRow`, :class:`AuditReport` (JSON, rich table, markdown)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from scaleinv.audit.fitting import Fit
from scaleinv.audit.signatures import Signature
from scaleinv.report import jsonable


@dataclass
class AuditRow:
    """One audited tensor: the loss, one output leaf of a module call, a sown value or aux leaf.

    degrees: in-situ output degree per group; in_degrees: in-situ degree (target group) of each
    float input of the call; signature: local Table-2 signature (target group); flags: "break",
    "first break", "mismatch", "intrinsic", "postnorm", "expect ok", "expect FAIL"."""

    name: str
    kind: str
    cls: str
    depth: int
    order: int
    end: int
    degrees: Dict[str, Fit]
    in_degrees: List[Fit] = field(default_factory=list)
    signature: Optional[Signature] = None
    flags: List[str] = field(default_factory=list)
    explanation: str = ""
    identity: bool = False
    call: Optional[int] = None

    def in_situ(self, group: str) -> str:
        """"(input degrees; output degree)" in ``group`` ("✗" = not homogeneous)."""
        out = self.degrees[group].label()
        if self.kind != "module":
            return out
        ins = ",".join(f.label() for f in self.in_degrees) if self.in_degrees else "0"
        return f"({ins};{out})"

    def as_dict(self):
        return {"name": self.name, "kind": self.kind, "class": self.cls, "depth": self.depth,
                "order": self.order, "degrees": {g: f.as_dict() for g, f in self.degrees.items()},
                "in_degrees": [f.as_dict() for f in self.in_degrees],
                "signature": self.signature.as_dict() if self.signature else None,
                "flags": self.flags, "explanation": self.explanation, "identity": self.identity}


@dataclass
class AuditReport:
    rows: List[AuditRow]
    groups: Dict[str, List[str]]
    target_group: str
    target_degree: Optional[int]
    scales: Tuple[float, ...]
    input_degrees: Tuple[int, ...]
    first_break: Optional[str]
    first_break_explanation: str
    expect: Dict[str, str]
    meta: Dict[str, Any] = field(default_factory=dict)

    @property
    def loss(self) -> AuditRow:
        return next(r for r in self.rows if r.kind == "loss")

    def row(self, name: str) -> AuditRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no audited tensor named {name!r}; names: {[r.name for r in self.rows]}")

    @property
    def breaks(self) -> List[AuditRow]:
        """Rows flagged as breaking homogeneity (first break, mismatch, intrinsic, PostNorm)."""
        keys = ("first break", "mismatch", "intrinsic", "postnorm", "expect FAIL")
        return [r for r in self.rows if any(f in keys for f in r.flags)]

    @property
    def target_met(self) -> Optional[bool]:
        """Loss homogeneous of ``target_degree`` in the target group and every expectation met
        (None when neither a target degree nor expectations were given)."""
        if self.target_degree is None and not self.expect:
            return None
        ok = all("expect FAIL" not in r.flags for r in self.rows)
        if self.target_degree is not None:
            f = self.loss.degrees[self.target_group]
            ok = ok and f.homogeneous and f.degree == self.target_degree
        return ok

    def as_dict(self):
        return jsonable({
            "target_group": self.target_group, "target_degree": self.target_degree,
            "target_met": self.target_met, "first_break": self.first_break,
            "first_break_explanation": self.first_break_explanation, "expect": self.expect,
            "scales": list(self.scales), "input_degrees": list(self.input_degrees),
            "groups": self.groups, "meta": self.meta,
            "breaks": [{"name": r.name, "flags": r.flags, "explanation": r.explanation} for r in self.breaks],
            "rows": [r.as_dict() for r in self.rows]})

    def write_json(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=2))
        return path

    # ---- presentation
    def table_groups(self, groups: Optional[Sequence[str]] = None, max_groups: int = 6) -> List[str]:
        if groups is not None:
            bad = [g for g in groups if g not in self.groups]
            if bad:
                raise ValueError(f"unknown group(s) {bad}; allowed: {list(self.groups)}")
            return list(groups)
        names = [self.target_group] + [g for g in self.groups if g != self.target_group]
        return names[:max_groups]

    def visible_rows(self, max_depth: Optional[int] = None, show_identity: bool = False) -> List[AuditRow]:
        return [r for r in self.rows
                if (show_identity or not r.identity) and (max_depth is None or r.depth <= max_depth
                                                          or r.kind == "loss" or r.flags)]

    def summary_lines(self) -> List[str]:
        tg = self.target_group
        lf = self.loss.degrees[tg]
        lines = [f"loss in group '{tg}': " + (f"{lf.degree}-homogeneous (residual {lf.residual:.1e})"
                                               if lf.homogeneous else
                                               f"not homogeneous (residual {lf.residual:.2g}, slope {lf.slope:.3g})")]
        if self.target_degree is not None:
            lines.append(f"target: loss {self.target_degree}-homogeneous in '{tg}' -> "
                         f"{'MET' if self.target_met else 'NOT MET'}")
        if self.first_break:
            lines.append(f"first break: {self.first_break}: {self.first_break_explanation}")
        else:
            lines.append("first break: none (every captured tensor is homogeneous in the target group)")
        seen = set()
        for r in self.breaks:
            key = (re.sub(r"\d+", "N", r.name), r.explanation)
            if r.name == self.first_break or key in seen:
                continue
            seen.add(key)
            lines.append(f"also flagged [{', '.join(f for f in r.flags if f not in ('break', 'expect ok'))}]: "
                         f"{r.name}: {r.explanation}")
        return lines

    def _cells(self, r: AuditRow, groups: Sequence[str]) -> List[str]:
        indent = "  " * max(r.depth - 1, 0) if r.kind == "module" else ""
        sig = r.signature.notation() if r.signature else ""
        flags = ", ".join(f for f in r.flags if f != "break")
        note = (flags + (": " if flags and r.explanation else "") + r.explanation) if (flags or r.explanation) else ""
        return [indent + r.name, r.cls, r.in_situ(self.target_group), sig] + \
               [r.degrees[g].label() for g in groups] + [note]

    def print_table(self, max_depth: Optional[int] = None, groups: Optional[Sequence[str]] = None,
                    show_identity: bool = False, console=None) -> None:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        gs = self.table_groups(groups)
        table = Table(title=f"homogeneity audit (target group '{self.target_group}'; "
                            f"c in [{min(self.scales):.0e}, {max(self.scales):.0e}])")
        for col in ["tensor", "class", f"(in;out) in {self.target_group}", "signature"] + \
                [f"deg {g}" for g in gs] + ["flag / explanation"]:
            table.add_column(escape(col), overflow="fold", no_wrap=(col == "tensor"))
        for r in self.visible_rows(max_depth, show_identity):
            cells = [escape(c) for c in self._cells(r, gs)]
            if "first break" in r.flags:
                cells = [f"[bold red]{c}[/]" for c in cells]
            elif any(f in ("mismatch", "intrinsic", "postnorm", "expect FAIL") for f in r.flags):
                cells = [f"[yellow]{c}[/]" for c in cells]
            table.add_row(*cells)
        console = console or Console(width=240)
        console.print(table)
        for line in self.summary_lines():
            console.print(escape(line))

    def to_markdown(self, max_depth: Optional[int] = None, groups: Optional[Sequence[str]] = None,
                    show_identity: bool = False) -> str:
        gs = self.table_groups(groups)
        head = ["tensor", "class", f"(in;out) in {self.target_group}", "signature"] + \
               [f"deg {g}" for g in gs] + ["flag / explanation"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.visible_rows(max_depth, show_identity):
            cells = [c.replace("|", "\\|") for c in self._cells(r, gs)]
            cells[0] = cells[0].replace("  ", "&nbsp;&nbsp;")
            if "first break" in r.flags:
                cells = [f"**{c}**" if c else c for c in cells]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n\n" + "\n".join(f"- {l}" for l in self.summary_lines()) + "\n"

