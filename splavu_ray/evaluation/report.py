"""The results table, laid out like the paper's Table 1: rows raw / anonymized / relative change (and
chance), one column per task.

Each evaluation task declares its own columns (``EvalTask.columns``; the suite collects them in task
order), e.g. ``TableColumn("TAD mAP", "tad", "map", higher_is_better=True)`` reads
``results["tad"]["map_raw"]`` and ``results["tad"]["map_anonymized"]``. A column whose values are absent
from a results dict is left out of that table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from ..metrics.classification import relative_change


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


def present_columns(results: dict, columns: list[TableColumn]) -> list[TableColumn]:
    return [c for c in columns if c.values(results) is not None]


def _fmt(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.2f}"


def markdown_table(results: dict, columns: list[TableColumn]) -> str:
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
