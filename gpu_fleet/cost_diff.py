"""The hourly cost change between two offline plans, as a markdown table for a pull request.

Input: two ``gpu-fleet plan --format json`` documents (the base branch and the change).
Each stack of a plan may carry ``cost.minHourlyUsd`` and ``cost.maxHourlyUsd``: what the
stack costs per hour with every pool at its minimum and at its maximum size. A stack only
one side has is added or removed; a plan without ``cost`` (a base branch from before cost
figures existed) or an empty file (a plan that failed) shows "n/a" rather than a guess.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

NA = "n/a"
#: The markdown heading; the preview comment is found by it.
HEADING = "#### Cost per hour (US$, on-demand)"

Figures = tuple[float, float]  # (min, max) US$ per hour


class PlanFileError(Exception):
    """A plan file that cannot be read or is not a plan (``file: message``)."""


def read_plan(path: Path) -> Optional[dict]:
    """The plan in ``path``; None when the file is empty (the plan produced nothing)."""
    try:
        text = path.read_text()
    except OSError as e:
        raise PlanFileError(f"{path}: cannot read: {e.strerror or e}") from None
    if not text.strip():
        return None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise PlanFileError(f"{path}: not JSON (line {e.lineno}): {e.msg}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("stacks"), list):
        raise PlanFileError(f"{path}: stacks: missing; expected the output of gpu-fleet plan --format json")
    return doc


def _number(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def stack_figures(plan: Optional[dict]) -> dict[str, Optional[Figures]]:
    """``{stack: (min, max)}``, None for a stack whose plan has no (complete) cost figures."""
    out: dict[str, Optional[Figures]] = {}
    for entry in (plan or {}).get("stacks", []):
        if not isinstance(entry, dict) or not isinstance(entry.get("stack"), str):
            continue
        cost = entry.get("cost")
        low, high = (_number(cost.get("minHourlyUsd")), _number(cost.get("maxHourlyUsd"))) \
            if isinstance(cost, dict) else (None, None)
        out[entry["stack"]] = (low, high) if low is not None and high is not None else None
    return out


@dataclass(frozen=True)
class Row:
    stack: str
    #: "changed", "unchanged", "added" or "removed".
    status: str
    before: Optional[Figures]
    after: Optional[Figures]


@dataclass(frozen=True)
class CostDiff:
    rows: list[Row]
    base_available: bool
    head_available: bool

    def total(self, side: str) -> Optional[Figures]:
        """Sum over the stacks present on ``side`` ("before"/"after"); None if any lacks figures."""
        present = [r for r in self.rows if r.status != ("added" if side == "before" else "removed")]
        figures = [getattr(r, side) for r in present]
        if not figures or any(f is None for f in figures):
            return None
        return sum(f[0] for f in figures), sum(f[1] for f in figures)


def diff(base: Optional[dict], head: Optional[dict], stacks: Optional[Sequence[str]] = None) -> CostDiff:
    """Rows in the head plan's stack order, then stacks the change removes."""
    before, after = stack_figures(base), stack_figures(head)
    names = [*after, *(s for s in before if s not in after)]
    if stacks:
        names = [s for s in names if s in stacks]
    rows = []
    for name in names:
        if name not in before:
            status = "added"
        elif name not in after:
            status = "removed"
        else:
            status = "unchanged" if before[name] == after[name] else "changed"
        rows.append(Row(name, status, before.get(name), after.get(name)))
    return CostDiff(rows, base is not None, head is not None)


def _money(value: Optional[float]) -> str:
    return NA if value is None else f"{value:,.2f}"


def _change(old: Optional[float], new: Optional[float]) -> str:
    if old is None or new is None:
        return NA
    delta = new - old
    text = f"{delta:+,.2f}"
    return f"{text} ({delta / old:+.1%})" if old else text


def _cells(before: Optional[Figures], after: Optional[Figures]) -> list[str]:
    cells = []
    for i in (0, 1):
        old = before[i] if before else None
        new = after[i] if after else None
        cells += [_money(old), _money(new), _change(old, new)]
    return cells


def render(d: CostDiff) -> str:
    """The markdown table: per stack, min and max US$/h before, after and the change."""
    lines = [
        HEADING,
        "",
        "| stack | min before | min after | min change | max before | max after | max change |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in d.rows:
        label = {"added": f"{row.stack} (new)", "removed": f"{row.stack} (removed)"}.get(row.status, row.stack)
        lines.append("| " + " | ".join([label, *_cells(row.before, row.after)]) + " |")
    if len(d.rows) > 1:
        lines.append("| " + " | ".join(["**total**", *_cells(d.total("before"), d.total("after"))]) + " |")
    lines += ["", "min: every pool at its minimum size (minimum replicas); max: every pool at its maximum."]
    if not d.base_available:
        lines.append("The base branch's plan produced nothing (it failed, or the stack is new): "
                     "before is n/a.")
    elif any(r.before is None and r.status != "added" for r in d.rows):
        lines.append("n/a before: the base branch's plan has no cost figures for that stack.")
    if not d.head_available:
        lines.append("This change's plan produced nothing (see the offline plan step): after is n/a.")
    return "\n".join(lines)
