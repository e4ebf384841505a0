"""The results table, laid out like the paper's Table 1: rows raw / anonymized / relative change,
one column per task.

Columns come from a registry, so a task module adds its own without touching this file::

    from splavu_ray.report import TableColumn, register_column
    register_column(TableColumn("TAD mAP", "tad", "map", higher_is_better=True))
    # reads results["tad"]["map_raw"] and results["tad"]["map_anonymized"]

A column whose values are absent from a results dict is left out of that table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from .metrics import relative_change


@dataclass(frozen=True)
class TableColumn:
    header: str
    section: str  # top-level key of results.json
    key: str  # results[section][f"{key}_raw"], [f"{key}_anonymized"], optional [f"{key}_chance"]
    higher_is_better: bool
    kind: Literal["privacy", "utility", "fairness"] = "utility"  # plots pair utility/fairness with privacy

    def values(self, results: dict) -> tuple[float, float] | None:
        sec = results.get(self.section)
        if not isinstance(sec, dict) or f"{self.key}_raw" not in sec or f"{self.key}_anonymized" not in sec:
            return None
        return float(sec[f"{self.key}_raw"]), float(sec[f"{self.key}_anonymized"])

    def chance(self, results: dict) -> float | None:
        value = (results.get(self.section) or {}).get(f"{self.key}_chance")
        return None if value is None else float(value)

    @property
    def title(self) -> str:
        return f"{self.header} ({'higher' if self.higher_is_better else 'lower'}=better)"


TABLE_COLUMNS: list[TableColumn] = [
    TableColumn("privacy cMAP, worst attacker", "privacy", "cmap_worst", False, "privacy"),
    TableColumn("privacy cMAP, paper MLP", "privacy", "cmap", False, "privacy"),
    TableColumn("action top-1", "action", "top1", True),
    TableColumn("bias gap NTU-Bias-F", "bias", "gap", False, "fairness"),
    TableColumn("subject re-id top-1", "reid", "top1", False, "privacy"),
    TableColumn("TAD mAP (THUMOS14 protocol)", "tad", "map", True),
    TableColumn("anomaly AUC (UCF-Crime protocol)", "anomaly", "auc", True),
]


def register_column(column: TableColumn) -> None:
    """Add (or replace, by header) a task column."""
    TABLE_COLUMNS[:] = [c for c in TABLE_COLUMNS if c.header != column.header] + [column]


def present_columns(results: dict, columns: list[TableColumn] | None = None) -> list[TableColumn]:
    return [c for c in (TABLE_COLUMNS if columns is None else columns) if c.values(results) is not None]


def _fmt(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.2f}"


def markdown_table(results: dict, columns: list[TableColumn] | None = None) -> str:
    """GitHub Markdown: raw, anonymized, relative change (and chance when a column knows it)."""
    cols = present_columns(results, columns)
    if not cols:
        raise ValueError("results hold no raw/anonymized pair for any table column")
    vals = [c.values(results) for c in cols]
    chance = [c.chance(results) for c in cols]
    rows = [["", *[c.title for c in cols]], ["---"] * (len(cols) + 1),
            ["raw", *[_fmt(v[0]) for v in vals]],
            ["anonymized", *[_fmt(v[1]) for v in vals]],
            ["relative change", *[f"{relative_change(*v):+.1f}%" if v[0] else "n/a" for v in vals]]]
    if any(x is not None for x in chance):
        rows.append(["chance", *["" if x is None else _fmt(x) for x in chance]])
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)
